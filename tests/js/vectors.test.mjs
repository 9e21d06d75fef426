// The shared frame vectors (tests/vectors/frames.json) against the JavaScript SDK's codec.
// tests/protocol/test_vectors.py reads the same file for the Python codec.

import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import {
  Codec,
  Flag,
  LonglinkError,
  decodeFrame,
  decodePayload,
  encodeFrame,
  splitBatch,
  unpackPushes,
} from "../../src/longlink/web/sdk/longlink.js";
import { ROOT, hex, toHex } from "./helpers.mjs";

const doc = JSON.parse(readFileSync(join(ROOT, "tests", "vectors", "frames.json"), "utf8"));
const { max_frame: MAX_FRAME, max_inflate: MAX_INFLATE } = doc.limits;

function headerOf(frame, length) {
  return {
    length,
    version: 1,
    op: frame.op,
    flags: frame.flags,
    codec: frame.codec,
    seq: frame.seq,
    msg_id: frame.msgId,
  };
}

async function rejectsWith(promiseOrFn, code) {
  await assert.rejects(promiseOrFn, (error) => {
    assert.ok(error instanceof LonglinkError, `expected a LonglinkError, got ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

for (const vector of doc.valid) {
  test(`valid ${vector.name}: header, body, payload, inner frames`, async () => {
    const bytes = hex(vector.hex);
    const frame = decodeFrame(bytes, MAX_FRAME);
    assert.deepEqual(headerOf(frame, bytes.length), vector.header);
    assert.equal(toHex(frame.body), vector.body_hex);
    // Encoding the decoded fields gives the same bytes back (the header is written in one place).
    const again = encodeFrame(frame.op, frame.body, {
      flags: frame.flags,
      codec: frame.codec,
      seq: frame.seq,
      msgId: frame.msgId,
    });
    assert.equal(toHex(again), vector.hex);
    if (vector.needs === "brotli") {
      // This SDK asks for zlib only; a brotli body must be refused cleanly.
      await rejectsWith(decodePayload(frame, MAX_INFLATE), "bad_frame");
      return;
    }
    const payload = await decodePayload(frame, MAX_INFLATE);
    assert.equal(toHex(payload), vector.payload_hex);
    if ("json" in vector) {
      assert.deepEqual(JSON.parse(new TextDecoder().decode(payload)), vector.json);
    }
    if (frame.flags & Flag.BATCH) {
      const inner = splitBatch(payload).map((f) => ({
        op: f.op,
        flags: f.flags,
        codec: f.codec,
        seq: f.seq,
        msg_id: f.msgId,
        body_hex: toHex(f.body),
      }));
      assert.deepEqual(
        inner,
        vector.inner.map(({ json: _, ...rest }) => rest),
      );
    }
  });
}

for (const vector of doc.valid.filter((v) => "messages" in v)) {
  test(`valid ${vector.name}: the messages, with their room`, async () => {
    const frame = decodeFrame(hex(vector.hex), MAX_FRAME);
    if (vector.needs === "brotli") {
      await rejectsWith(unpackPushes(frame, MAX_INFLATE), "bad_frame");
      return;
    }
    const messages = (await unpackPushes(frame, MAX_INFLATE)).map((m) => ({
      msg_id: m.msgId,
      room: m.room,
      area: m.area,
      data_hex: toHex(m.data),
      guaranteed: m.guaranteed,
      high_priority: m.highPriority,
    }));
    assert.deepEqual(messages, vector.messages);
    for (const m of messages) assert.equal(typeof m.msg_id, "string"); // exact, never a Number
  });
}

for (const vector of doc.invalid) {
  test(`invalid ${vector.name}: ${vector.error}`, async () => {
    const bytes = hex(vector.hex);
    if (vector.stage === "frame") {
      assert.throws(
        () => decodeFrame(bytes, MAX_FRAME),
        (error) => error instanceof LonglinkError && error.code === vector.error,
      );
      return;
    }
    const frame = decodeFrame(bytes, MAX_FRAME);
    // JavaScript refuses every brotli body (never asked for): bad_frame, whatever is inside.
    const code = vector.needs === "brotli" ? "bad_frame" : vector.error;
    await rejectsWith(unpackPushes(frame, MAX_INFLATE), code);
  });
}

test("the vectors cover every codec, ROOM tags for rooms and areas, and both error codes", () => {
  assert.deepEqual(new Set(doc.valid.map((v) => v.header.codec)), new Set([Codec.NONE, Codec.ZLIB, Codec.BROTLI]));
  const tags = doc.valid.flatMap((v) => v.messages ?? []).filter((m) => m.room !== null);
  assert.ok(tags.some((m) => m.area) && tags.some((m) => !m.area));
  assert.deepEqual(new Set(doc.invalid.map((v) => v.error)), new Set(["bad_frame", "too_large"]));
});
