// longlink — the JavaScript SDK: one ES module, no dependencies, no build step.
//
// Served by `longlink serve` at /sdk/longlink.js and published as the npm
// package `longlink-client`. Runs in browsers and in Node 20+ (pass
// `WebSocket` in the options where the runtime has no global one).
//
//   import { Client } from "http://127.0.0.1:8080/sdk/longlink.js";
//   const client = new Client("http://127.0.0.1:8080", { user: "alice", rooms: ["lobby"] });
//   client.on("message", (m) => console.log(m.room, m.msgId, m.json()));
//   await client.connect();
//
// The wire protocol is docs/protocol.md (the contract: PROTOCOL.md §1 and §4).
// Layout of this file, from the bytes up:
//   1. constants and LonglinkError
//   2. the frame codec, pure: encodeFrame, decodeFrame, splitBatch
//   3. bodies: bounded zlib inflate, unpackPushes (BATCH + ROOM tag), Message
//   4. small policies: RecentIds (dedup window), Backoff (full jitter), AdaptiveHeartbeat
//      (PROTOCOL.md §1.6 rule 2), QualityLog (what the next REPORT says, §1.6 rule 1)
//   5. transports: "ws" (each binary message one frame), "stream" (HTTP: a fetch whose
//      streaming response carries the frames back to back, POSTs for the client's frames)
//   6. Client: /v1/connect, AUTH, heartbeats (adaptive) and liveness, REPORTs, requests,
//      ACKs, reconnects, room recovery (the last msgId per room as `since`, `recovery` events)

// ------------------------------------------------------------------ 1. constants

export const VERSION = 1;
export const HEADER_SIZE = 20;

/** Operations (PROTOCOL.md §1.2). */
export const Op = Object.freeze({
  AUTH: 1,
  AUTH_OK: 2,
  HEARTBEAT: 3,
  HEARTBEAT_OK: 4,
  PUSH: 5,
  ACK: 6,
  JOIN: 7,
  JOIN_OK: 8,
  LEAVE: 9,
  LEAVE_OK: 10,
  UPSTREAM: 11,
  UPSTREAM_OK: 12,
  EVENT: 13,
  ERROR: 14,
  KICK: 15,
  ROOM: 16,
  REPORT: 17,
});

/** Header flags; other bits must be 0. */
export const Flag = Object.freeze({ ACK_REQUIRED: 1, BATCH: 2, HIGH_PRIORITY: 4 });

/** Body codecs. This SDK asks for zlib only: browsers cannot decode brotli. */
export const Codec = Object.freeze({ NONE: 0, ZLIB: 1, BROTLI: 2 });

/** ERROR codes after which the server closes the connection. */
export const FATAL_CODES = new Set([
  "bad_frame",
  "too_large",
  "auth_required",
  "auth_failed",
  "token_expired",
  "server_busy",
]);

/** Largest frame and largest decoded body accepted from the server, by default. */
export const DEFAULT_MAX_FRAME = 16 * 1024 * 1024;
export const DEFAULT_MAX_INFLATE = 16 * 1024 * 1024;

const KNOWN_FLAGS = Flag.ACK_REQUIRED | Flag.BATCH | Flag.HIGH_PRIORITY;
const KNOWN_OPS = new Set(Object.values(Op));
const KNOWN_CODECS = new Set(Object.values(Codec));
const MAX_U64 = (1n << 64n) - 1n;
const MAX_SEQ = 0xffffffff;
const MAX_ACK_IDS = 1000;
const DEAD_AFTER_INTERVALS = 2.5; // PROTOCOL §1.3 rule 3
const SUBPROTOCOL = "longlink.v1";
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * Every error this SDK raises or emits. `code` is a protocol code of PROTOCOL.md §1.2
 * (`bad_frame`, `too_large`, `auth_failed`, `room_limit`, …), the code of an HTTP error
 * from /v1/connect, or one of the client's own: `closed` (close() was called),
 * `disconnected` (no connection right now), `timeout`, `connect_failed`, `kicked`.
 */
export class LonglinkError extends Error {
  constructor(code, message, { seq = 0, status = 0, retryAfterMs = 0, cause } = {}) {
    super(`${code}: ${message}`, cause === undefined ? undefined : { cause });
    this.name = "LonglinkError";
    this.code = code;
    this.detail = message;
    this.seq = seq;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }

  /** Whether the server closes the connection after an ERROR with this code. */
  get fatal() {
    return FATAL_CODES.has(this.code);
  }
}

function badFrame(message) {
  return new LonglinkError("bad_frame", message);
}

// ------------------------------------------------------------------ 2. frame codec

/**
 * One decoded frame. `body` is as on the wire (still encoded by `codec`);
 * `msgId` is the unsigned 64-bit id as an exact decimal string.
 */
export class Frame {
  constructor(op, body = EMPTY, flags = 0, codec = 0, seq = 0, msgId = "0") {
    this.op = op;
    this.body = body;
    this.flags = flags;
    this.codec = codec;
    this.seq = seq;
    this.msgId = msgId;
  }
}

/**
 * The bytes of one frame (PROTOCOL.md §1.1): the 20-byte big-endian header, then `body`
 * (a Uint8Array already encoded by `codec`, or a string sent as UTF-8). `msgId` may be
 * a bigint, a decimal string or a safe integer.
 */
export function encodeFrame(op, body = EMPTY, { flags = 0, codec = 0, seq = 0, msgId = 0n } = {}) {
  const bytes = typeof body === "string" ? utf8.encode(body) : asBytes(body);
  const id = BigInt(msgId);
  if (id < 0n || id > MAX_U64) throw new RangeError(`msgId ${msgId} is not an unsigned 64-bit integer`);
  if (!Number.isInteger(seq) || seq < 0 || seq > MAX_SEQ) throw new RangeError(`seq ${seq} is not a u32`);
  const out = new Uint8Array(HEADER_SIZE + bytes.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, out.length);
  view.setUint8(4, VERSION);
  view.setUint8(5, op);
  view.setUint8(6, flags);
  view.setUint8(7, codec);
  view.setUint32(8, seq);
  view.setBigUint64(12, id);
  out.set(bytes, HEADER_SIZE);
  return out;
}

/** Throws LonglinkError unless the header fields are valid; the same order as the server. */
function checkHeader(length, version, op, flags, codec, maxFrame) {
  if (version !== VERSION) throw badFrame(`unsupported version ${version}`);
  if (length < HEADER_SIZE) throw badFrame(`frame length ${length} < ${HEADER_SIZE}`);
  if (length > maxFrame) throw new LonglinkError("too_large", `frame of ${length} bytes > limit ${maxFrame}`);
  if (!KNOWN_OPS.has(op)) throw badFrame(`unknown op ${op}`);
  if (flags & ~KNOWN_FLAGS) throw badFrame(`unknown flags 0x${flags.toString(16)}`);
  if (!KNOWN_CODECS.has(codec)) throw badFrame(`unknown codec ${codec}`);
  if (flags & Flag.BATCH && op !== Op.PUSH) throw badFrame("BATCH flag on a frame that is not PUSH");
}

function frameAt(view, bytes, pos, length) {
  return new Frame(
    view.getUint8(pos + 5),
    bytes.subarray(pos + HEADER_SIZE, pos + length),
    view.getUint8(pos + 6),
    view.getUint8(pos + 7),
    view.getUint32(pos + 8),
    view.getBigUint64(pos + 12).toString(),
  );
}

/**
 * Decode exactly one frame occupying all of `data` (one WebSocket message): an
 * ArrayBuffer or a Uint8Array. Throws LonglinkError `bad_frame` or `too_large`.
 */
export function decodeFrame(data, maxFrame = DEFAULT_MAX_FRAME) {
  const bytes = asBytes(data);
  if (bytes.length < HEADER_SIZE) throw badFrame(`${bytes.length} bytes is shorter than a header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(0);
  checkHeader(length, view.getUint8(4), view.getUint8(5), view.getUint8(6), view.getUint8(7), maxFrame);
  if (length !== bytes.length) throw badFrame(`frame says ${length} bytes but the message has ${bytes.length}`);
  return frameAt(view, bytes, 0, length);
}

/** The inner frames of a decoded BATCH body (complete frames, codec 0, no BATCH). */
export function splitBatch(payload) {
  const bytes = asBytes(payload);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames = [];
  let pos = 0;
  while (pos < bytes.length) {
    if (bytes.length - pos < HEADER_SIZE) throw badFrame("batch ends inside a frame header");
    const length = view.getUint32(pos);
    const flags = view.getUint8(pos + 6);
    const codec = view.getUint8(pos + 7);
    checkHeader(length, view.getUint8(pos + 4), view.getUint8(pos + 5), flags, codec, Infinity);
    if (flags & Flag.BATCH || codec !== Codec.NONE) throw badFrame("batch holds a nested batch or encoded frame");
    if (bytes.length - pos < length) throw badFrame("batch ends inside a frame body");
    frames.push(frameAt(view, bytes, pos, length));
    pos += length;
  }
  return frames;
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("expected bytes: a Uint8Array or an ArrayBuffer");
}

// ------------------------------------------------------------------ 3. bodies

/**
 * Inflate a zlib (RFC 1950) body with DecompressionStream("deflate"), refusing to
 * produce more than `limit` bytes (`too_large`, the stream is cancelled at once);
 * a truncated or corrupt body, or bytes after its end, is `bad_frame`.
 */
export async function inflate(body, limit = DEFAULT_MAX_INFLATE) {
  const stream = new DecompressionStream("deflate");
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const writing = writer.write(asBytes(body)).then(() => writer.close());
  writing.catch(() => {}); // a failure shows on the reader too
  const chunks = [];
  let size = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        reader.cancel().catch(() => {});
        throw new LonglinkError("too_large", `body inflates past ${limit} bytes`);
      }
      chunks.push(value);
    }
    await writing;
  } catch (error) {
    if (error instanceof LonglinkError) throw error;
    throw new LonglinkError("bad_frame", `corrupt zlib body (${error?.message ?? error})`, { cause: error });
  }
  const out = concat(chunks, size);
  // A zlib stream ends with the Adler-32 of its output. Some runtimes (Node 20) ignore
  // bytes after the end of the stream; the server refuses them, so this SDK does too.
  const bytes = asBytes(body);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 6 || view.getUint32(bytes.length - 4) !== adler32(out)) {
    throw badFrame("bytes after the end of the zlib body");
  }
  return out;
}

/** Adler-32 (RFC 1950 §8.2) of `bytes`. */
export function adler32(bytes) {
  let a = 1;
  let b = 0;
  for (let i = 0; i < bytes.length; ) {
    const end = Math.min(i + 5552, bytes.length); // the most bytes before the sums can overflow
    for (; i < end; i++) {
      a += bytes[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}

function concat(chunks, size) {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let pos = 0;
  for (const chunk of chunks) {
    out.set(chunk, pos);
    pos += chunk.byteLength;
  }
  return out;
}

/**
 * The body of `frame` decoded by its codec. Only zlib is decoded: a brotli body is
 * refused with `bad_frame` (this SDK never asks for brotli, so the server never sends it).
 */
export async function decodePayload(frame, maxInflate = DEFAULT_MAX_INFLATE) {
  if (frame.codec === Codec.NONE) return frame.body;
  if (frame.codec === Codec.ZLIB) return inflate(frame.body, maxInflate);
  throw badFrame("brotli body: this client did not ask for brotli (browsers cannot decode it)");
}

/** One pushed message (PROTOCOL.md §1.2 op 5), as handed to `message` listeners. */
export class Message {
  constructor(msgId, data, { room = null, area = false, guaranteed = false, highPriority = false } = {}) {
    /** The message id, an exact decimal string (ids exceed 2^53). */
    this.msgId = msgId;
    /** The payload bytes: for a push made with JSON `data`, its UTF-8 JSON. */
    this.data = data;
    /** The room (or area, then `area` is true) it came through; null for user, device, broadcast. */
    this.room = room;
    this.area = area;
    /** Sent with ACK_REQUIRED: the client acks it (automatically unless autoAck is false). */
    this.guaranteed = guaranteed;
    this.highPriority = highPriority;
  }

  /** The payload as UTF-8 text. */
  text() {
    return utf8Decoder.decode(this.data);
  }

  /** The payload parsed as JSON (throws SyntaxError if it is not JSON). */
  json() {
    return JSON.parse(this.text());
  }
}

function messageOf(frame, data, room, area) {
  return new Message(frame.msgId, data, {
    room,
    area,
    guaranteed: Boolean(frame.flags & Flag.ACK_REQUIRED),
    highPriority: Boolean(frame.flags & Flag.HIGH_PRIORITY),
  });
}

/**
 * The messages of a PUSH frame in wire order: the frame itself, or a BATCH's inner
 * PUSH frames. A BATCH whose first inner frame is ROOM (op 16, PROTOCOL.md §1.4 rule 1)
 * tags every message with that room (`{"room": …}`) or area (`{"area": …}`, and
 * `area` true); other inner frames are skipped.
 */
export async function unpackPushes(frame, maxInflate = DEFAULT_MAX_INFLATE) {
  const payload = await decodePayload(frame, maxInflate);
  if (!(frame.flags & Flag.BATCH)) return [messageOf(frame, payload, null, false)];
  const inner = splitBatch(payload);
  let room = null;
  let area = false;
  if (inner.length > 0 && inner[0].op === Op.ROOM) {
    const tag = parseJson(inner[0].body, "ROOM");
    if (typeof tag.room === "string") room = tag.room;
    else if (typeof tag.area === "string") [room, area] = [tag.area, true];
    else throw badFrame('ROOM body has neither "room" nor "area"');
  }
  return inner.filter((f) => f.op === Op.PUSH).map((f) => messageOf(f, f.body, room, area));
}

function parseJson(body, what) {
  let value;
  try {
    value = JSON.parse(utf8Decoder.decode(body));
  } catch {
    throw badFrame(`${what} body is not JSON`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw badFrame(`${what} body is not a JSON object`);
  return value;
}

// ------------------------------------------------------------------ 4. policies

/**
 * The last `size` distinct message ids seen: `add` tells whether an id is new. Seeing
 * an id again makes it recent again, so a message the server keeps resending stays known.
 */
export class RecentIds {
  constructor(size = 10000) {
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`size must be an integer >= 0, not ${size}`);
    this.size = size;
    this._ids = new Map();
  }

  add(msgId) {
    if (this._ids.has(msgId)) {
      this._ids.delete(msgId);
      this._ids.set(msgId, true);
      return false;
    }
    if (this.size === 0) return true;
    this._ids.set(msgId, true);
    if (this._ids.size > this.size) this._ids.delete(this._ids.keys().next().value);
    return true;
  }

  has(msgId) {
    return this._ids.has(msgId);
  }

  get length() {
    return this._ids.size;
  }
}

/**
 * Reconnect delays: exponential backoff with full jitter. Attempt n (from 0) waits a
 * uniform random time in [0, min(maxMs, initialMs * 2^n)]; `reset()` after a connection
 * that held. `random` is a () => [0, 1) function (Math.random by default).
 */
export class Backoff {
  constructor(initialMs = 200, maxMs = 10000, random = Math.random) {
    if (!(initialMs > 0) || !(maxMs >= initialMs)) throw new RangeError(`need 0 < initialMs <= maxMs, got ${initialMs} and ${maxMs}`);
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.random = random;
    this.attempt = 0;
  }

  cap(attempt) {
    return Math.min(this.maxMs, this.initialMs * 2 ** Math.min(attempt, 64));
  }

  nextDelay() {
    return this.random() * this.cap(this.attempt++);
  }

  reset() {
    this.attempt = 0;
  }
}

/**
 * The adaptive heartbeat of one connection (PROTOCOL.md §1.6 rule 2), a pure state
 * machine in seconds; the same rules as the Python SDK's protocol/heartbeat.py:
 *
 *   start      interval = base (AUTH_OK's heartbeat_s)
 *   answered   one more in the streak; after `streak` in a row the next HEARTBEAT asks for
 *              ceil(interval × growth) (at most the ceiling); the server's answer (clamped)
 *              becomes the interval, and a clamped answer lowers the ceiling to it
 *   missed     (no HEARTBEAT_OK within replyTimeoutS) interval = base at once, streak 0;
 *              the next HEARTBEAT goes now and asks for base
 *
 * Invariants (tests/js/heartbeat.test.mjs checks them on random runs): the interval never
 * leaves [base, ceiling]; one miss brings it back to base; it only grows after `streak`
 * answers in a row.
 */
export class AdaptiveHeartbeat {
  constructor(base, { ceiling = 300, growth = 1.5, streak = 3, adaptive = true } = {}) {
    if (!(base > 0)) throw new RangeError(`base must be > 0, not ${base}`);
    this.base = base;
    /** The longest interval to ask for (lowered to what the server grants). */
    this.ceiling = adaptive ? Math.max(base, ceiling) : base;
    this.growth = growth;
    this.streak = streak;
    this.interval = base;
    this.run = 0; // heartbeats answered in a row
    this.asked = null; // the interval the heartbeat in flight asked for
    /** A reply later than this (seconds after the HEARTBEAT) counts as missed. */
    this.replyTimeoutS = Math.max(1, Math.min(10, base / 3));
  }

  /** The interval the next HEARTBEAT should ask for (its body), or null: ask nothing. */
  ask() {
    if (this.run >= this.streak && this.interval < this.ceiling) {
      const want = Math.min(this.ceiling, Math.ceil(this.interval * this.growth));
      return want > this.interval ? want : null;
    }
    return null;
  }

  /** A HEARTBEAT left asking for `asked` (null: nothing). */
  sent(asked) {
    this.asked = asked ?? null;
  }

  /** HEARTBEAT_OK came back in time; `granted` is its `heartbeat_s` (if asked). */
  answered(granted) {
    this.run += 1;
    const asked = this.asked;
    this.asked = null;
    if (asked === null || granted == null) return;
    const value = Math.max(this.base, Math.min(granted, this.ceiling));
    if (value < asked) this.ceiling = value; // the server's maximum: ask no further
    if (value !== this.interval) {
      this.interval = value;
      this.run = 0; // the new interval has to prove itself before the next step
    }
  }

  /** No HEARTBEAT_OK in time: back to base; returns what the next HEARTBEAT asks for. */
  missed() {
    this.run = 0;
    this.asked = null;
    const changed = this.interval !== this.base;
    this.interval = this.base;
    return changed ? this.base : null;
  }
}

/** Milliseconds between two REPORTs (the first goes right after connecting, §1.6 rule 1). */
export const REPORT_EVERY_MS = 60000;
/** Most RTT samples and failed transports one REPORT carries (the server's bound). */
export const MAX_REPORT_ITEMS = 64;
const MAX_REPORT_TEXT = 32;

/**
 * What the next REPORT (op 17, PROTOCOL.md §1.6 rule 1) says, gathered across connections:
 * heartbeat round trips, the last connect's time and steps, the transport, reconnects, the
 * transports that failed before it, the network type. `take()` makes the body and starts
 * over (the RTTs, connect time and failures are reported once). Bounded: the last
 * MAX_REPORT_ITEMS round trips and failures are kept.
 */
export class QualityLog {
  constructor() {
    this.rtts = [];
    this.failures = [];
    this.transport = "";
    this.connections = 0; // connections opened (reconnects = connections - 1)
    this.connectMs = null;
    this.steps = {};
  }

  /** A transport (by name: "ws", "stream", …) failed to reach an endpoint or authenticate. */
  failed(transport) {
    this.failures.push(String(transport).slice(0, MAX_REPORT_TEXT));
    if (this.failures.length > MAX_REPORT_ITEMS) this.failures.shift();
  }

  /**
   * A connection is up: its transport, the whole connect in ms (from the /v1/connect call
   * to AUTH_OK, failed endpoints included) and the ms of each step (control, transport, auth).
   */
  connected(transport, totalMs, steps) {
    this.connections += 1;
    this.transport = transport;
    this.connectMs = clampMs(totalMs);
    this.steps = Object.fromEntries(Object.entries(steps).map(([step, ms]) => [step, clampMs(ms)]));
  }

  /** One heartbeat round trip, in ms. */
  rtt(ms) {
    this.rtts.push(clampMs(ms));
    if (this.rtts.length > MAX_REPORT_ITEMS) this.rtts.shift();
  }

  /** The REPORT body for now (`network` where the platform tells it), and start over. */
  take(network = null) {
    const report = {
      rtt_ms: this.rtts,
      transport: this.transport || "unknown",
      reconnects: Math.max(0, this.connections - 1),
    };
    if (this.connectMs !== null) {
      report.connect_ms = this.connectMs;
      report.connect_steps = this.steps;
    }
    if (this.failures.length > 0) report.failed = this.failures;
    if (typeof network === "string" && network) report.network = network.slice(0, MAX_REPORT_TEXT);
    this.rtts = [];
    this.failures = [];
    this.connectMs = null; // a connection's connect time is reported once
    this.steps = {};
    return report;
  }
}

function clampMs(ms) {
  return Math.min(600000, Math.max(0, Math.round(Number(ms) || 0)));
}

/** The network type where the platform tells it (the Network Information API), else null. */
export function networkType(nav = globalThis.navigator) {
  const info = nav?.connection;
  if (info == null) return null;
  if (typeof info.type === "string" && info.type !== "unknown") return info.type;
  return typeof info.effectiveType === "string" ? info.effectiveType : null;
}

// ------------------------------------------------------------------ 5. transports

/**
 * How to reach a gateway, by the names of PROTOCOL.md §1.5 and /v1/connect. Each entry:
 *   key:  the endpoint field holding its address ("ws" → "ws://host:7000/ws")
 *   open(address, {WebSocket, fetch, token, maxFrame, timeoutMs, onFrame(bytes), onClose(reason)})
 *         → Promise of {send(bytes), close()}: a connection delivering whole frames' bytes,
 *         in order. The first send is the AUTH frame.
 */
export const TRANSPORTS = {
  ws: { key: "ws", open: openWebSocket },
  stream: { key: "stream", open: openStream },
};

/** The order transports are tried in when the options name none. */
const DEFAULT_TRANSPORTS = ["ws", "stream"];
/** Most bytes of client frames one POST of the HTTP stream carries. */
const STREAM_POST_BYTES = 64 * 1024;

function openWebSocket(address, { WebSocket, timeoutMs, onFrame, onClose }) {
  return new Promise((resolve, reject) => {
    let ws;
    try {
      ws = new WebSocket(address, SUBPROTOCOL);
    } catch (error) {
      reject(new LonglinkError("connect_failed", `${address}: ${error?.message ?? error}`, { cause: error }));
      return;
    }
    ws.binaryType = "arraybuffer";
    let open = false;
    let ended = false;
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
    const fail = (why) => {
      clearTimeout(timer);
      if (ended) return;
      ended = true;
      if (open) onClose(why);
      else reject(new LonglinkError("connect_failed", `${address}: ${why}`));
      try {
        ws.close();
      } catch {
        // already closing
      }
    };
    ws.onopen = () => {
      clearTimeout(timer);
      open = true;
      resolve({
        send(bytes) {
          if (ended || ws.readyState !== 1) throw new LonglinkError("disconnected", "the WebSocket is not open");
          ws.send(bytes);
        },
        close() {
          fail("closed by the client");
        },
      });
    };
    ws.onmessage = (event) => {
      if (ended) return;
      if (typeof event.data === "string") fail("text message: longlink frames are binary");
      else onFrame(asBytes(event.data));
    };
    ws.onerror = () => fail("WebSocket error");
    ws.onclose = (event) => fail(`WebSocket closed (${event.code}${event.reason ? " " + event.reason : ""})`);
  });
}

/**
 * The HTTP stream (PROTOCOL.md §1.5) for networks that break WebSocket: the first send
 * (AUTH) is the body of `POST {address}`, whose streaming response body carries the
 * server's frames back to back; later sends go as `POST {address}/{conn_id}` with the
 * connection token, one POST at a time (frames queued meanwhile travel together). The
 * conn_id is read from the AUTH_OK that comes first on the stream. It resolves at once:
 * a stream that cannot be opened ends before AUTH_OK (onClose), as a refused WebSocket.
 */
function openStream(address, { fetch, token, maxFrame, timeoutMs, onFrame, onClose }) {
  const abort = new AbortController();
  let ended = false;
  let opened = false; // the opening POST was sent
  let connId = null; // from AUTH_OK
  let posting = false;
  let queued = [];
  let queuedBytes = 0;
  const fail = (why) => {
    if (ended) return;
    ended = true;
    abort.abort();
    onClose(why);
  };
  const read = async (response) => {
    if (response.status !== 200 || response.body == null) {
      fail(`the stream was refused: HTTP ${response.status}`);
      return;
    }
    const reader = response.body.getReader();
    let buffer = EMPTY;
    for (;;) {
      const { done, value } = await reader.read();
      if (ended) return;
      if (done) {
        fail("the stream ended");
        return;
      }
      buffer = buffer.length ? concat([buffer, value], buffer.length + value.length) : value;
      let pos = 0;
      while (buffer.length - pos >= HEADER_SIZE) {
        const length = new DataView(buffer.buffer, buffer.byteOffset + pos, 4).getUint32(0);
        if (length < HEADER_SIZE || length > maxFrame) {
          fail(`bad frame length ${length} on the stream`);
          return;
        }
        if (buffer.length - pos < length) break;
        const frame = buffer.slice(pos, pos + length);
        pos += length;
        if (connId === null && frame[5] === Op.AUTH_OK) {
          try {
            connId = String(parseJson(frame.subarray(HEADER_SIZE), "AUTH_OK").conn_id ?? "") || null;
          } catch {
            // the client's own decoding reports the bad frame
          }
          if (connId !== null) queueMicrotask(post);
        }
        onFrame(frame);
        if (ended) return;
      }
      buffer = pos === buffer.length ? EMPTY : buffer.slice(pos);
    }
  };
  const post = async () => {
    if (posting || ended || connId === null || queued.length === 0) return;
    posting = true;
    const frames = [];
    let size = 0;
    while (queued.length && (size === 0 || size + queued[0].length <= STREAM_POST_BYTES)) {
      const frame = queued.shift();
      frames.push(frame);
      size += frame.length;
    }
    queuedBytes -= size;
    try {
      const response = await fetch(`${address}/${encodeURIComponent(connId)}`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream", authorization: `Bearer ${token}` },
        body: concat(frames, size),
        signal: AbortSignal.any ? AbortSignal.any([abort.signal, AbortSignal.timeout(3 * timeoutMs)]) : abort.signal,
      });
      await response.arrayBuffer().catch(() => {});
      if (response.status !== 204) {
        fail(`POST answered HTTP ${response.status}`);
        return;
      }
    } catch (error) {
      fail(`POST failed: ${error?.message ?? error}`);
      return;
    } finally {
      posting = false;
    }
    post();
  };
  return Promise.resolve({
    send(bytes) {
      if (ended) throw new LonglinkError("disconnected", "the stream is closed");
      const frame = asBytes(bytes);
      if (!opened) {
        opened = true;
        fetch(address, {
          method: "POST",
          headers: { "content-type": "application/octet-stream" },
          body: frame,
          signal: abort.signal,
        })
          .then(read)
          .catch((error) => fail(`stream: ${error?.message ?? error}`));
        return;
      }
      if (queuedBytes > 4 * STREAM_POST_BYTES) throw new LonglinkError("disconnected", "the stream's POSTs are not answered");
      queued.push(frame);
      queuedBytes += frame.length;
      post();
    },
    close() {
      if (ended) return;
      ended = true;
      abort.abort();
    },
  });
}

// ------------------------------------------------------------------ 6. Client

const EVENTS = ["message", "event", "online", "state", "error", "recovery"];
const now = () => globalThis.performance?.now() ?? Date.now();

/** One transport connection, from open to loss; frames are handled one at a time, in order. */
class Link {
  constructor(node) {
    this.node = node;
    this.transport = null;
    this.authOk = null;
    this.openedAt = now();
    this.lastRx = this.openedAt;
    this.errorCode = null; // the fatal ERROR the server sent before closing
    this.kind = ""; // the transport's name ("ws", …)
    this.started = this.openedAt; // when the connect began (before /v1/connect): REPORT
    this.steps = {}; // ms of each step of the connect: control, transport, auth
    this.authSent = 0;
    this.authOkAt = 0;
    this.interval = 0; // heartbeat interval in ms (0: none)
    this.beat = null; // the AdaptiveHeartbeat (null: no heartbeats)
    this.beatSent = null; // when the HEARTBEAT in flight left
    this.askNext = null; // a fall-back the next HEARTBEAT must carry (after a miss)
    this.span = 0; // the interval liveness is judged by, ms (the longest in flight)
    this.reportAt = Infinity; // when the next REPORT goes
    this.queue = [];
    this.head = 0;
    this.busy = false;
    this.ended = false;
    this.timer = null;
    this.nextBeat = Infinity;
    this.unnamed = []; // rooms of this AUTH with no since (a reconnect): not recoverable
    this.handshake = deferred(); // AUTH_OK or the reason there is none
    this.attached = deferred(); // the client took the link: later frames are its business
  }
}

function deferred() {
  const d = {};
  d.promise = new Promise((resolve, reject) => Object.assign(d, { resolve, reject }));
  d.promise.catch(() => {});
  return d;
}

/**
 * An end-user connection to longlink: pushes in, requests out, reconnects built in.
 * See longlink.d.ts for every option and event, and docs/protocol.md for the wire.
 */
export class Client {
  constructor(base, options = {}) {
    const o = options;
    if (o.ticket == null && o.user == null) throw new TypeError("give a ticket, or a user for a server in demo mode");
    this.base = String(base).replace(/\/+$/, "");
    this.options = {
      autoAck: true,
      reconnect: true,
      dedupSize: 10000,
      backoffInitialMs: 200,
      backoffMaxMs: 10000,
      connectTimeoutMs: 10000,
      requestTimeoutMs: 10000,
      maxFrame: DEFAULT_MAX_FRAME,
      maxInflate: DEFAULT_MAX_INFLATE,
      maxQueuedFrames: 10000,
      adaptiveHeartbeat: true,
      report: true,
      ...o,
    };
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    // By default WebSocket, then the HTTP stream; a runtime with no WebSocket, the stream alone.
    const fallback = typeof this._WebSocket === "function" ? DEFAULT_TRANSPORTS : ["stream"];
    this.transports = [...new Set(o.transports ?? fallback)].filter((name) => Object.hasOwn(TRANSPORTS, name));
    if (this.transports.length === 0) {
      throw new TypeError(`none of the transports ${JSON.stringify(o.transports)} is implemented (known: ${Object.keys(TRANSPORTS)})`);
    }
    if (this.transports.includes("ws") && typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket in this runtime: pass { WebSocket } (Node 20: node --experimental-websocket)");
    }
    /**
     * Transports that failed on every endpoint and have not worked since: reported to
     * /v1/connect (`failed`), whose advice then puts them last (PROTOCOL.md §1.5).
     */
    this.failedTransports = [];
    /** The transport of the current (or last) connection. */
    this.transport = null;
    this._fetch = o.fetch ?? globalThis.fetch?.bind(globalThis);
    if (typeof this._fetch !== "function") throw new TypeError("no fetch in this runtime: pass { fetch }");
    /** Rooms joined at every AUTH: those given, plus join()ed, minus leave()d. */
    this.rooms = new Set(o.rooms ?? []);
    /** Online counts per room, from HEARTBEAT_OK and JOIN_OK. */
    this.online = {};
    /**
     * The last msgId received from each room (PROTOCOL §1.4 rule 3): sent as `since` in
     * AUTH on every reconnect and in JOIN, so the server sends what was missed first.
     */
    this.lastIds = {};
    /** "connecting" | "connected" | "disconnected" | "closed" */
    this.state = "disconnected";
    /** The last AUTH_OK body (null before the first connection). */
    this.authOk = null;
    this._device = o.device ?? null;
    this._listeners = new Map(EVENTS.map((name) => [name, new Set()]));
    this._backoff = new Backoff(this.options.backoffInitialMs, this.options.backoffMaxMs, o.random ?? Math.random);
    this._seen = new RecentIds(this.options.dedupSize);
    this._owed = new Set(); // guaranteed ids delivered, not acked yet (autoAck false)
    this._ackQueue = new Set(); // ids to write in the next ACK
    this._ackScheduled = false;
    this._link = null;
    this._connecting = null;
    this._reconnecting = false;
    this._waiters = []; // connect() calls made while reconnecting
    this._handshaking = null; // the link between transport open and AUTH_OK
    this._closed = false;
    this._stopped = null;
    this._openedBefore = false; // a connection was up before: the next AUTH is a reconnect
    this._seq = 0;
    this._pending = new Map(); // seq → {resolve, reject, timer}
    this._sleep = null;
    this._quality = new QualityLog(); // what the next REPORT says (§1.6 rule 1)
    /** HEARTBEATs sent, on every connection. */
    this.heartbeatsSent = 0;
  }

  /** The heartbeat interval now, in seconds (it grows while healthy); null while disconnected. */
  get heartbeatS() {
    return this._link?.beat?.interval ?? null;
  }

  // -------------------------------------------------------------- events

  /** Listen to `message`, `event`, `online`, `state` or `error`; returns the client. */
  on(name, listener) {
    this._listenersOf(name).add(listener);
    return this;
  }

  /** Stop listening; returns the client. */
  off(name, listener) {
    this._listenersOf(name).delete(listener);
    return this;
  }

  _listenersOf(name) {
    const set = this._listeners.get(name);
    if (set === undefined) throw new TypeError(`unknown event ${JSON.stringify(name)}; events: ${EVENTS.join(", ")}`);
    return set;
  }

  _emit(name, ...args) {
    for (const listener of [...this._listeners.get(name)]) {
      try {
        listener(...args);
      } catch (error) {
        // A listener's bug must not break the connection: report it like EventTarget does
        // (browsers: reportError; elsewhere an uncaught exception, after this frame).
        if (typeof globalThis.reportError === "function") globalThis.reportError(error);
        else
          queueMicrotask(() => {
            throw error;
          });
      }
    }
  }

  _setState(state, reason = "") {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state, reason);
  }

  // -------------------------------------------------------------- public API

  /**
   * Connect and authenticate; resolves with the AUTH_OK body. Endpoints from /v1/connect
   * are tried in order. A failure of this first connection rejects (LonglinkError) and
   * is not retried; later losses reconnect by themselves (unless `reconnect: false`).
   */
  connect() {
    if (this._closed) return Promise.reject(new LonglinkError("closed", "the client is closed"));
    if (this._stopped !== null) return Promise.reject(new LonglinkError("closed", this._stopped));
    if (this._link !== null) return Promise.resolve(this.authOk);
    if (this._connecting !== null) return this._connecting;
    if (this._reconnecting) {
      const waiter = deferred();
      this._waiters.push(waiter);
      return waiter.promise;
    }
    this._connecting = (async () => {
      this._setState("connecting");
      try {
        const link = await this._establish();
        if (this._closed) {
          this._discard(link);
          throw new LonglinkError("closed", this._stopped ?? "the client is closed");
        }
        this._attach(link);
        return link.authOk;
      } catch (error) {
        if (!this._closed) this._setState("disconnected", error.message);
        throw error;
      } finally {
        this._connecting = null;
      }
    })();
    return this._connecting;
  }

  /**
   * Join `room`; resolves with its online count. The room is re-joined on every reconnect.
   * With a message received from it before, JOIN carries it as `since`: the missed ones
   * come first, and a `recovery` event says whether the server could recover them.
   */
  async join(room) {
    const body = { room: checkName(room) };
    if (Object.hasOwn(this.lastIds, room)) body.since = this.lastIds[room];
    const reply = await this._request(Op.JOIN, JSON.stringify(body));
    const ok = parseJson(reply.body, "JOIN_OK");
    this.rooms.add(room);
    return ok.online;
  }

  /** Leave `room`. It is dropped from `rooms` first: a reconnect will not re-join it. */
  async leave(room) {
    this.rooms.delete(checkName(room));
    delete this.online[room];
    delete this.lastIds[room];
    await this._request(Op.LEAVE, JSON.stringify({ room }));
  }

  /** Send bytes (or a string, as UTF-8) to the business backend; resolves on UPSTREAM_OK. */
  async upstream(data) {
    await this._request(Op.UPSTREAM, typeof data === "string" ? data : asBytes(data));
  }

  /**
   * Acknowledge guaranteed messages yourself (with `autoAck: false`). While disconnected
   * the ids are kept and sent after the reconnect.
   */
  ack(...msgIds) {
    for (const id of msgIds.flat()) {
      const key = String(BigInt(id));
      this._owed.delete(key);
      this._queueAck(key);
    }
  }

  /** Close the connection and stop for good (state "closed"); idempotent. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._stopped ??= "client closed";
    this._flushAcks();
    if (this._sleep !== null) this._sleep.wake();
    if (this._handshaking !== null) this._discard(this._handshaking);
    if (this._link !== null) this._detach(this._link, "client closed");
    this._settleWaiters(null, new LonglinkError("closed", "client closed"));
    this._setState("closed", "client closed");
  }

  // -------------------------------------------------------------- connecting

  async _grant() {
    const body = { transports: this.transports };
    if (this.failedTransports.length > 0) body.failed = [...this.failedTransports];
    if (this.options.ticket != null) body.ticket = this.options.ticket;
    else {
      body.user = this.options.user;
      if (this._device !== null) body.device = this._device;
    }
    if (this.options.region != null) body.region = this.options.region;
    const url = `${this.base}/v1/connect`;
    let response;
    try {
      response = await this._fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.connectTimeoutMs),
      });
    } catch (error) {
      throw new LonglinkError("connect_failed", `${url}: ${error?.message ?? error}`, { cause: error });
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      // reported below
    }
    if (!response.ok) {
      const detail = answer?.error ?? {};
      const retryAfter = Number(response.headers.get("retry-after"));
      throw new LonglinkError(detail.code ?? `http_${response.status}`, detail.message ?? url, {
        status: response.status,
        retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 0,
      });
    }
    if (typeof answer?.token !== "string" || !Array.isArray(answer?.endpoints)) {
      throw new LonglinkError("connect_failed", `${url} answered no token and endpoints`);
    }
    return answer;
  }

  /** A fresh grant, then the first endpoint that authenticates; token_expired gets one more grant. */
  async _establish() {
    let started = now(); // the connect time of REPORT counts from here
    try {
      const grant = await this._grant();
      return await this._tryEndpoints(grant, started, now() - started);
    } catch (error) {
      if (error.code !== "token_expired") throw error;
    }
    started = now();
    const grant = await this._grant(); // PROTOCOL §1.3 rule 2
    return this._tryEndpoints(grant, started, now() - started);
  }

  /**
   * The endpoints of `grant` in order (best first, §2.1) with each transport, until one
   * authenticates. `started` and `controlMs` time the connect for REPORT; a transport that
   * could not be opened, or closed before AUTH_OK, on any endpoint is named in the next
   * REPORT, once per attempt (a busy node is not the transport's failure).
   */
  async _tryEndpoints(grant, started = now(), controlMs = 0) {
    const failures = [];
    // Control's advice first (PROTOCOL.md §1.5), then the rest of the client's own order.
    const advised = Array.isArray(grant.transports) ? grant.transports.filter((k) => this.transports.includes(k)) : [];
    const order = [...new Set([...advised, ...this.transports])];
    for (const kind of order) {
      const { key, open } = TRANSPORTS[kind];
      let broken = false; // the transport itself failed somewhere (a busy node does not count)
      for (const endpoint of grant.endpoints) {
        const address = endpoint?.[key];
        if (!address) continue;
        const link = new Link(endpoint.node ?? "");
        link.kind = kind;
        link.started = started;
        const opening = now();
        try {
          link.transport = await open(address, {
            WebSocket: this._WebSocket,
            fetch: this._fetch,
            token: grant.token,
            maxFrame: this.options.maxFrame,
            timeoutMs: this.options.connectTimeoutMs,
            onFrame: (bytes) => this._received(link, bytes),
            onClose: (reason) => this._ended(link, reason),
          });
        } catch (error) {
          failures.push(error.message);
          broken = true;
          continue;
        }
        link.steps = { control: controlMs, transport: now() - opening };
        if (this._closed) {
          link.transport.close();
          throw new LonglinkError("closed", "the client is closed");
        }
        this._handshaking = link;
        try {
          link.authOk = await this._handshake(link, grant.token);
          if (broken) this._quality.failed(kind); // it failed on an endpoint before this one
          this.transport = kind;
          this.failedTransports = this.failedTransports.filter((k) => k !== kind);
          return link;
        } catch (error) {
          this._discard(link);
          if (error.code !== "server_busy" && error.code !== "connect_failed") throw error;
          failures.push(`${link.node} (${kind}): ${error.message}`);
          if (error.code !== "server_busy") broken = true;
        } finally {
          this._handshaking = null;
        }
      }
      // Failed on every endpoint that offers it: reported from now on, until it works.
      if (broken && !this.failedTransports.includes(kind)) this.failedTransports.push(kind);
      if (broken) this._quality.failed(kind); // the next REPORT names it (once per attempt)
    }
    throw new LonglinkError("connect_failed", `no endpoint could be reached (${failures.join("; ") || "none listed"})`);
  }

  async _handshake(link, token) {
    const rooms = [...this.rooms].sort();
    const auth = { token, rooms, codecs: ["zlib"] };
    // PROTOCOL §1.4 rule 3: the last message of each room, so the server sends what followed.
    const since = {};
    for (const room of rooms) if (Object.hasOwn(this.lastIds, room)) since[room] = this.lastIds[room];
    if (Object.keys(since).length > 0) auth.since = since;
    // A reconnect cannot name a position in a room it got nothing from: not recoverable.
    link.unnamed = this._openedBefore ? rooms.filter((room) => !Object.hasOwn(since, room)) : [];
    if (this.options.heartbeatS != null) auth.heartbeat_s = this.options.heartbeatS;
    link.authSent = now();
    try {
      link.transport.send(encodeFrame(Op.AUTH, JSON.stringify(auth)));
    } catch (error) {
      throw new LonglinkError("connect_failed", `AUTH not sent: ${error.message}`, { cause: error });
    }
    const timer = setTimeout(
      () => link.handshake.reject(new LonglinkError("connect_failed", `no AUTH_OK within ${this.options.connectTimeoutMs} ms`)),
      this.options.connectTimeoutMs,
    );
    try {
      return await link.handshake.promise;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The link authenticated: it is the client's connection from now on. */
  _attach(link) {
    if (link.ended) throw new LonglinkError("connect_failed", "the connection closed right after AUTH_OK");
    this._link = link;
    this.authOk = link.authOk;
    if (this.options.ticket == null && this._device === null) this._device = link.authOk.device;
    const t = now();
    const base = Number(link.authOk.heartbeat_s);
    if (base > 0) {
      // PROTOCOL §1.6 rule 2: from AUTH_OK's interval, longer while healthy.
      link.beat = new AdaptiveHeartbeat(base, { adaptive: this.options.adaptiveHeartbeat !== false });
      link.interval = link.span = base * 1000;
      link.nextBeat = t + link.interval;
    }
    link.steps.auth = (link.authOkAt || t) - link.authSent;
    this._quality.connected(link.kind, (link.authOkAt || t) - link.started, link.steps);
    if (this.options.report !== false) link.reportAt = t; // §1.6 rule 1: right after connecting
    this._schedule(link);
    this._setState("connected");
    this._openedBefore = true;
    // Before any message of the new connection (they wait for link.attached).
    const recovered = Object.fromEntries(link.unnamed.map((room) => [room, false]));
    Object.assign(recovered, link.authOk.recovered ?? {});
    for (const room of Object.keys(recovered).sort()) {
      this._emit("recovery", { room, recovered: recovered[room] === true });
    }
    link.attached.resolve();
    this._settleWaiters(link.authOk, null);
    this._flushAcks(); // ids acked while disconnected
  }

  /** Drop a link that was never attached. */
  _discard(link) {
    link.ended = true;
    const closed = new LonglinkError("closed", "the client is closed");
    link.handshake.reject(closed);
    link.attached.reject(closed);
    link.transport?.close();
  }

  /** Tear the current link down: timers, transport, requests in flight. */
  _detach(link, reason) {
    if (this._link === link) this._link = null;
    link.ended = true;
    clearTimeout(link.timer);
    link.attached.reject(new LonglinkError("closed", reason));
    link.transport?.close();
    for (const [seq, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new LonglinkError("disconnected", reason));
      this._pending.delete(seq);
    }
  }

  /** The connection is gone: reconnect, or stop for good. */
  _lost(link, reason, reconnect) {
    if (link.ended) return;
    if (this._link !== link) {
      // still in its handshake: the handshake fails, _tryEndpoints moves on
      link.ended = true;
      link.handshake.reject(new LonglinkError(link.errorCode ?? "connect_failed", reason));
      link.transport?.close();
      return;
    }
    this._detach(link, reason);
    if (now() - link.openedAt >= this._backoff.maxMs) this._backoff.reset(); // that one held
    if (!reconnect || !this.options.reconnect || this._closed) {
      this._stop(reason);
      return;
    }
    this._setState("disconnected", reason);
    this._reconnectLoop();
  }

  _stop(reason) {
    this._stopped = reason;
    this._closed = true;
    this._settleWaiters(null, new LonglinkError("closed", reason));
    this._setState("closed", reason);
  }

  _settleWaiters(authOk, error) {
    const waiters = this._waiters;
    this._waiters = [];
    for (const waiter of waiters) {
      if (error === null) waiter.resolve(authOk);
      else waiter.reject(error);
    }
  }

  async _reconnectLoop() {
    if (this._reconnecting) return;
    this._reconnecting = true;
    let notBefore = 0;
    try {
      while (!this._closed) {
        await this._pause(Math.max(this._backoff.nextDelay(), notBefore));
        if (this._closed) return;
        notBefore = 0;
        this._setState("connecting");
        try {
          const link = await this._establish();
          if (this._closed) {
            this._discard(link);
            return;
          }
          this._attach(link);
          // Lost again already (a send failed as it attached)? Then this loop goes on.
          if (this._link === link || this._closed) return;
        } catch (error) {
          if (this._closed) return;
          this._emit("error", error);
          if (terminal(error)) {
            this._stop(`reconnect refused: ${error.message}`);
            return;
          }
          notBefore = error.retryAfterMs ?? 0;
          this._setState("disconnected", error.message);
        }
      }
    } finally {
      this._reconnecting = false;
    }
  }

  _pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(wake, ms);
      function wake() {
        clearTimeout(timer);
        resolve();
      }
      this._sleep = { wake };
    }).finally(() => {
      this._sleep = null;
    });
  }

  // -------------------------------------------------------------- receiving

  _received(link, bytes) {
    if (link.ended) return;
    link.lastRx = now();
    if (link.queue.length - link.head >= this.options.maxQueuedFrames) {
      this._lost(link, `more than ${this.options.maxQueuedFrames} frames waiting: the client cannot keep up`, true);
      return;
    }
    link.queue.push(bytes);
    if (!link.busy) this._drain(link);
  }

  _ended(link, reason) {
    const code = link.errorCode;
    if (code === null) this._lost(link, reason, true);
    else this._lost(link, `closed after ERROR ${code}`, code !== "auth_failed");
  }

  /** Handle queued frames one at a time (inflating is asynchronous; order is kept). */
  async _drain(link) {
    link.busy = true;
    try {
      while (link.head < link.queue.length && !link.ended) {
        const bytes = link.queue[link.head];
        link.queue[link.head++] = undefined;
        if (link.head > 1024 && link.head * 2 > link.queue.length) {
          link.queue = link.queue.slice(link.head);
          link.head = 0;
        }
        let frame;
        try {
          frame = decodeFrame(bytes, this.options.maxFrame);
        } catch (error) {
          this._lost(link, `bad frame from the server: ${error.message}`, true);
          return;
        }
        if (link.authOk === null) await this._beforeAuthOk(link, frame);
        else await this._dispatch(link, frame);
      }
    } finally {
      link.busy = false;
    }
  }

  async _beforeAuthOk(link, frame) {
    if (frame.op === Op.AUTH_OK) {
      let body;
      try {
        body = parseJson(frame.body, "AUTH_OK");
      } catch (error) {
        link.handshake.reject(error);
        return;
      }
      link.authOk = body;
      link.authOkAt = now();
      link.handshake.resolve(body);
      await link.attached.promise.catch(() => {}); // frames after AUTH_OK wait for the client
    } else if (frame.op === Op.ERROR) {
      const { code, message } = errorOf(frame.body);
      link.errorCode = code;
      link.handshake.reject(new LonglinkError(code, message, { seq: frame.seq }));
    } else if (frame.op === Op.KICK) {
      link.handshake.reject(new LonglinkError("connect_failed", `kicked during AUTH: ${kickReason(frame.body)}`));
    } // nothing else may come before AUTH_OK (§1.3 rule 1): skipped
  }

  async _dispatch(link, frame) {
    try {
      switch (frame.op) {
        case Op.PUSH: {
          const messages = await unpackPushes(frame, this.options.maxInflate);
          for (const message of messages) {
            if (link.ended || this._closed) return; // e.g. a listener called close()
            this._deliver(message);
          }
          return;
        }
        case Op.HEARTBEAT_OK: {
          const body = parseJson(frame.body, "HEARTBEAT_OK");
          this._heartbeatAnswered(link, body.heartbeat_s);
          const online = body.online ?? {};
          Object.assign(this.online, online);
          this._emit("online", { ...online });
          return;
        }
        case Op.JOIN_OK: {
          const { room, online, recovered } = parseJson(frame.body, "JOIN_OK");
          this.online[room] = online;
          if (typeof recovered === "boolean") this._emit("recovery", { room, recovered });
          this._reply(frame);
          this._emit("online", { [room]: online });
          return;
        }
        case Op.LEAVE_OK:
        case Op.UPSTREAM_OK:
          this._reply(frame);
          return;
        case Op.EVENT:
          this._emit("event", parseJson(frame.body, "EVENT"));
          return;
        case Op.ERROR: {
          const { code, message } = errorOf(frame.body);
          const error = new LonglinkError(code, message, { seq: frame.seq });
          if (FATAL_CODES.has(code)) link.errorCode = code; // the server closes next
          const pending = frame.seq ? this._pending.get(frame.seq) : undefined;
          if (pending !== undefined) this._settle(frame.seq, null, error);
          else this._emit("error", error);
          return;
        }
        case Op.KICK: {
          const reason = kickReason(frame.body);
          this._emit("error", new LonglinkError("kicked", reason));
          // A draining node sheds its clients: go elsewhere. Any other kick is final.
          this._lost(link, `kicked: ${reason}`, reason === "drain");
          return;
        }
        default: // AUTH_OK again, a stray ROOM: nothing to do
      }
    } catch (error) {
      if (!(error instanceof LonglinkError)) throw error;
      // One bad body does not break the stream; a guaranteed message is resent.
      this._emit("error", error);
    }
  }

  _deliver(message) {
    const id = message.msgId;
    if (id !== "0" && !this._seen.add(id)) {
      // PROTOCOL §1.3 rule 5: a duplicate is dropped, and acked again unless the app owes it.
      if (message.guaranteed && !this._owed.has(id)) this._queueAck(id);
      return;
    }
    if (message.room !== null && id !== "0") this.lastIds[message.room] = id; // since, §1.4 rule 3
    if (message.guaranteed && id !== "0") {
      if (this.options.autoAck) this._queueAck(id);
      else {
        this._owed.add(id);
        if (this._owed.size > this.options.dedupSize) this._owed.delete(this._owed.values().next().value);
      }
    }
    this._emit("message", message);
  }

  // -------------------------------------------------------------- sending

  _queueAck(id) {
    this._ackQueue.add(id);
    while (this._ackQueue.size > Math.max(this.options.dedupSize, MAX_ACK_IDS)) {
      this._ackQueue.delete(this._ackQueue.values().next().value); // resent, then acked again
    }
    if (!this._ackScheduled) {
      this._ackScheduled = true;
      queueMicrotask(() => this._flushAcks()); // a whole batch's acks go as one frame
    }
  }

  _flushAcks() {
    this._ackScheduled = false;
    const link = this._link;
    if (link === null || this._ackQueue.size === 0) return;
    const ids = [...this._ackQueue];
    try {
      for (const frame of ackFrames(ids)) link.transport.send(frame);
      this._ackQueue.clear();
    } catch (error) {
      this._lost(link, error.message, true); // the ids stay queued for the next connection
    }
  }

  _send(link, bytes) {
    try {
      link.transport.send(bytes);
      return true;
    } catch (error) {
      this._lost(link, error.message, true);
      return false;
    }
  }

  _request(op, body) {
    if (this._closed) return Promise.reject(new LonglinkError("closed", this._stopped ?? "the client is closed"));
    const link = this._link;
    if (link === null) return Promise.reject(new LonglinkError("disconnected", "not connected (reconnecting)"));
    this._seq = (this._seq % MAX_SEQ) + 1; // 1, 2, … never 0
    const seq = this._seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this._settle(seq, null, new LonglinkError("timeout", `no answer within ${this.options.requestTimeoutMs} ms`)),
        this.options.requestTimeoutMs,
      );
      this._pending.set(seq, { resolve, reject, timer });
      this._send(link, encodeFrame(op, body, { seq }));
    });
  }

  _reply(frame) {
    this._settle(frame.seq, frame, null);
  }

  _settle(seq, frame, error) {
    const pending = this._pending.get(seq);
    if (pending === undefined) return;
    this._pending.delete(seq);
    clearTimeout(pending.timer);
    if (error === null) pending.resolve(frame);
    else pending.reject(error);
  }

  // -------------------------------------------------------------- heartbeats and REPORT

  /**
   * One timer per link: the next HEARTBEAT, the reply deadline of the one in flight, the
   * liveness deadline or the next REPORT, whichever is first.
   */
  _schedule(link) {
    clearTimeout(link.timer);
    if (link.ended) return;
    let wake = link.reportAt;
    const beat = link.beat;
    if (beat !== null) {
      wake = Math.min(wake, link.nextBeat, link.lastRx + DEAD_AFTER_INTERVALS * link.span);
      if (link.beatSent !== null) wake = Math.min(wake, link.beatSent + beat.replyTimeoutS * 1000);
    }
    if (wake === Infinity) return;
    link.timer = setTimeout(() => this._tick(link), Math.max(0, wake - now()));
  }

  _tick(link) {
    if (link.ended) return;
    const t = now();
    const beat = link.beat;
    if (beat !== null) {
      const silent = t - link.lastRx;
      if (silent >= DEAD_AFTER_INTERVALS * link.span) {
        this._lost(link, `nothing from the server for ${Math.round(silent)} ms`, true); // PROTOCOL §1.3 rule 3
        return;
      }
      if (link.beatSent !== null && t - link.beatSent >= beat.replyTimeoutS * 1000) {
        // Missed (§1.6 rule 2): back to the base interval at once, and beat again now.
        link.beatSent = null;
        link.askNext = beat.missed();
        link.interval = beat.interval * 1000;
        link.nextBeat = t;
      }
      if (t >= link.nextBeat) {
        const ask = link.askNext ?? beat.ask();
        link.askNext = null;
        beat.sent(ask);
        const frame = ask === null ? HEARTBEAT : encodeFrame(Op.HEARTBEAT, JSON.stringify({ heartbeat_s: ask }));
        if (!this._send(link, frame)) return;
        this.heartbeatsSent += 1;
        link.beatSent = t;
        link.span = Math.max(link.span, beat.interval * 1000);
        link.nextBeat = t + beat.interval * 1000;
      }
    }
    if (t >= link.reportAt) {
      const report = this._quality.take(this.options.network ?? networkType());
      if (!this._send(link, encodeFrame(Op.REPORT, JSON.stringify(report)))) return;
      link.reportAt = t + REPORT_EVERY_MS;
    }
    this._schedule(link);
  }

  /** HEARTBEAT_OK: the round trip for REPORT, and the interval the server granted. */
  _heartbeatAnswered(link, granted) {
    const beat = link.beat;
    const sent = link.beatSent;
    if (beat === null || sent === null || link.ended) return; // a late answer after a miss
    link.beatSent = null;
    this._quality.rtt(now() - sent);
    beat.answered(Number.isInteger(granted) ? granted : null);
    link.interval = link.span = beat.interval * 1000;
    link.nextBeat = sent + link.interval;
    this._schedule(link);
  }
}

const HEARTBEAT = encodeFrame(Op.HEARTBEAT);

/** ACK frames for `ids` (decimal strings): the header for one id, JSON bodies for more. */
export function ackFrames(ids) {
  if (ids.length === 1) return [encodeFrame(Op.ACK, EMPTY, { msgId: ids[0] })];
  const frames = [];
  for (let i = 0; i < ids.length; i += MAX_ACK_IDS) {
    // Decimal strings are JSON numbers already: exact, where JSON.stringify of a Number is not.
    const chunk = ids.slice(i, i + MAX_ACK_IDS).map((id) => BigInt(id).toString());
    frames.push(encodeFrame(Op.ACK, `{"msg_ids":[${chunk.join(",")}]}`));
  }
  return frames;
}

function errorOf(body) {
  try {
    const value = parseJson(body, "ERROR");
    return { code: String(value.code ?? "bad_frame"), message: String(value.message ?? "") };
  } catch {
    return { code: "bad_frame", message: utf8Decoder.decode(body.subarray(0, 200)) };
  }
}

function kickReason(body) {
  try {
    return String(parseJson(body, "KICK").reason ?? "");
  } catch {
    return "";
  }
}

function terminal(error) {
  // Credentials refused, or a request /v1/connect will never accept: retrying cannot help.
  if (error.code === "auth_failed" || error.code === "room_limit") return true;
  const status = error.status ?? 0;
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

function checkName(room) {
  if (typeof room !== "string" || room.length === 0) throw new TypeError("a room is a non-empty string");
  return room;
}
