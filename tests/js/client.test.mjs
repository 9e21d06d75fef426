// The Client's logic against a fake gateway (injected WebSocket and fetch): AUTH, messages
// and their rooms, ACKs and dedup, requests, heartbeats and liveness, reconnects, limits.

import test from "node:test";
import assert from "node:assert/strict";
import { deflateSync, brotliCompressSync } from "node:zlib";

import {
  Backoff,
  Client,
  Codec,
  Flag,
  LonglinkError,
  Op,
  RecentIds,
  encodeFrame,
} from "../../src/longlink/web/sdk/longlink.js";
import { FakeGateway, Recorder, json } from "./helpers.mjs";

const BIG = "18446744073709551615"; // 2^64 - 1: no Number holds it
const text = (frame) => new TextDecoder().decode(frame.body);

function setup(options = {}) {
  const gateway = new FakeGateway();
  const client = new Client("http://fake/", {
    user: "alice",
    rooms: ["lobby"],
    WebSocket: gateway.WebSocket,
    fetch: gateway.fetch,
    backoffInitialMs: 5,
    backoffMaxMs: 20,
    ...options,
  });
  const rec = new Recorder(client);
  return { gateway, client, rec };
}

async function connected(options = {}, authOk = {}) {
  const env = setup(options);
  const connecting = env.client.connect();
  const [socket, auth] = await env.gateway.authenticate(1, authOk);
  env.authOkBody = await connecting;
  return { ...env, socket, auth };
}

function batch(frames, codec = Codec.NONE) {
  const payload = Buffer.concat(frames.map((f) => Buffer.from(f)));
  const body = codec === Codec.ZLIB ? deflateSync(payload) : codec === Codec.BROTLI ? brotliCompressSync(payload) : payload;
  return encodeFrame(Op.PUSH, body, { flags: Flag.BATCH, codec });
}

const push = (msgId, data, flags = 0) => encodeFrame(Op.PUSH, json(data), { msgId, flags });
const roomTag = (tag) => encodeFrame(Op.ROOM, json(tag));

// ------------------------------------------------------------------ connecting

test("connect: /v1/connect, WebSocket with longlink.v1, AUTH asking for zlib, resolves after AUTH_OK", async () => {
  const { gateway, client, rec, socket, auth, authOkBody } = await connected();
  assert.deepEqual(gateway.connectBodies, [{ url: "http://fake/v1/connect", body: { transports: ["ws", "stream"], user: "alice" } }]);
  assert.equal(socket.url, "ws://fake/ws");
  assert.equal(socket.protocol, "longlink.v1");
  assert.equal(socket.binaryType, "arraybuffer");
  assert.deepEqual(auth, { token: "token-1", rooms: ["lobby"], codecs: ["zlib"] });
  assert.equal(authOkBody.conn_id, "c1");
  assert.equal(client.state, "connected");
  assert.deepEqual(rec.states.map((s) => s.state), ["connecting", "connected"]);
  client.close();
  assert.equal(client.state, "closed");
  assert.ok(socket.closedByClient);
});

test("options are checked: credentials, a WebSocket, known transports and events", () => {
  const gateway = new FakeGateway();
  const base = { WebSocket: gateway.WebSocket, fetch: gateway.fetch };
  assert.throws(() => new Client("http://x", base), TypeError);
  assert.throws(() => new Client("http://x", { ...base, user: "u", WebSocket: "not a class", transports: ["ws"] }), /WebSocket/);
  assert.throws(() => new Client("http://x", { ...base, user: "u", transports: ["carrier-pigeon"] }), /transports/);
  const client = new Client("http://x", { ...base, user: "u", transports: ["stream", "ws", "carrier-pigeon"] });
  assert.deepEqual(client.transports, ["stream", "ws"]); // in the order given, known ones
  assert.throws(() => client.on("mesage", () => {}), /unknown event/);
});

test("a ticket goes to /v1/connect instead of a user", async () => {
  const { gateway, client } = setup({ user: undefined, ticket: "jwt" });
  const connecting = client.connect();
  await gateway.authenticate(1);
  await connecting;
  assert.deepEqual(gateway.connectBodies[0].body, { transports: ["ws", "stream"], ticket: "jwt" });
  client.close();
});

test("first connect fails: /v1/connect 401 rejects with its code and nothing retries", async () => {
  const { gateway, client, rec } = setup();
  gateway.refuse = { status: 401, body: { error: { code: "bad_ticket", message: "expired" } } };
  await assert.rejects(client.connect(), (e) => e instanceof LonglinkError && e.code === "bad_ticket" && e.status === 401);
  assert.equal(client.state, "disconnected");
  assert.equal(gateway.sockets.length, 0);
  assert.deepEqual(rec.states.map((s) => s.state), ["connecting", "disconnected"]);
  client.close();
});

test("ERROR auth_failed at AUTH rejects connect with that code", async () => {
  const { gateway, client } = setup();
  const connecting = client.connect();
  const socket = await gateway.socket(1);
  socket.accept();
  const auth = await socket.nextFrame();
  socket.serve(Op.ERROR, { code: "auth_failed", message: "bad token" }, { seq: auth.seq });
  socket.drop();
  await assert.rejects(connecting, (e) => e.code === "auth_failed");
  client.close();
});

test("token_expired at AUTH: one fresh grant, then connected", async () => {
  const { gateway, client } = setup();
  const connecting = client.connect();
  const first = await gateway.socket(1);
  first.accept();
  await first.nextFrame();
  first.serve(Op.ERROR, { code: "token_expired", message: "late" });
  first.drop();
  const [, auth] = await gateway.authenticate(2);
  await connecting;
  assert.equal(auth.token, "token-2");
  client.close();
});

test("server_busy on the first endpoint: the next endpoint is tried", async () => {
  const { gateway, client } = setup();
  gateway.grant = (n) => ({
    token: `t${n}`,
    endpoints: [
      { node: "g1", ws: "ws://one/ws" },
      { node: "g2", ws: "ws://two/ws" },
    ],
  });
  const connecting = client.connect();
  const busy = await gateway.socket(1);
  busy.accept();
  await busy.nextFrame();
  busy.serve(Op.ERROR, { code: "server_busy", message: "full" });
  busy.drop();
  const [second] = await gateway.authenticate(2, { node: "g2" });
  assert.equal(second.url, "ws://two/ws");
  assert.equal((await connecting).node, "g2");
  client.close();
});

test("close() during the handshake: connect rejects with closed and the socket is closed", async () => {
  const { gateway, client, rec } = setup();
  const connecting = client.connect();
  const socket = await gateway.socket(1);
  socket.accept();
  await socket.nextFrame(); // AUTH sent, no AUTH_OK yet
  client.close();
  await assert.rejects(connecting, (e) => e.code === "closed");
  assert.ok(socket.closedByClient);
  assert.equal(client.state, "closed");
  assert.deepEqual(rec.states.map((s) => s.state), ["connecting", "closed"]);
});

// ------------------------------------------------------------------ messages

test("messages: exact msgId strings, room from the ROOM tag (room or area), null without", async () => {
  const { client, rec, socket } = await connected();
  socket.deliver(push(BIG, { n: 1 }));
  socket.deliver(batch([roomTag({ room: "lobby" }), push("9007199254740993", { n: 2 }), push("9007199254740995", { n: 3 })]));
  socket.deliver(batch([roomTag({ area: "hall" }), push("5", { n: 4 })], Codec.ZLIB));
  socket.deliver(batch([push("6", { n: 5 })]));
  await rec.until(() => rec.messages.length === 5, "5 messages");
  assert.deepEqual(
    rec.messages.map((m) => [m.msgId, m.room, m.area, m.json().n]),
    [
      [BIG, null, false, 1],
      ["9007199254740993", "lobby", false, 2],
      ["9007199254740995", "lobby", false, 3],
      ["5", "hall", true, 4],
      ["6", null, false, 5],
    ],
  );
  assert.ok(rec.messages[0].data instanceof Uint8Array);
  assert.equal(rec.messages[0].text(), '{"n":1}');
  client.close();
});

test("order is kept across compressed and plain frames (inflating is asynchronous)", async () => {
  const { client, rec, socket } = await connected();
  for (let i = 1; i <= 60; i++) {
    const frame = push(String(i), { i });
    socket.deliver(i % 3 === 0 ? batch([roomTag({ room: "r" }), frame], Codec.ZLIB) : frame);
  }
  await rec.until(() => rec.messages.length === 60, "60 messages");
  assert.deepEqual(rec.messages.map((m) => m.json().i), Array.from({ length: 60 }, (_, i) => i + 1));
  client.close();
});

test("a brotli body (never asked for) is refused cleanly: an error, and the connection goes on", async () => {
  const { client, rec, socket } = await connected();
  socket.deliver(batch([roomTag({ room: "lobby" }), push("1", { n: 1 })], Codec.BROTLI));
  socket.deliver(push("2", { n: 2 }));
  await rec.until(() => rec.messages.length === 1, "the plain message");
  assert.equal(rec.errors[0].code, "bad_frame");
  assert.match(rec.errors[0].message, /brotli/);
  assert.equal(rec.messages[0].msgId, "2");
  assert.equal(client.state, "connected");
  client.close();
});

test("bounded inflate: a zlib bomb is too_large, and the connection goes on", async () => {
  const { client, rec, socket } = await connected({ maxInflate: 1 << 16 });
  socket.deliver(encodeFrame(Op.PUSH, deflateSync(Buffer.alloc((1 << 16) + 1)), { msgId: 1n, codec: Codec.ZLIB }));
  socket.deliver(push("2", { n: 2 }));
  await rec.until(() => rec.messages.length === 1, "the next message");
  assert.equal(rec.errors[0].code, "too_large");
  client.close();
});

test("a malformed header from the server drops the connection and reconnects", async () => {
  const { gateway, client, rec, socket } = await connected();
  const bad = push("1", {});
  bad[4] = 9; // version 9
  socket.deliver(bad);
  await gateway.authenticate(2);
  await rec.state("connected", 2);
  assert.match(rec.states.find((s) => s.state === "disconnected").reason, /unsupported version 9/);
  client.close();
});

test("events, online counts from HEARTBEAT_OK and JOIN_OK", async () => {
  const { client, rec, socket } = await connected();
  socket.serve(Op.EVENT, { type: "enter", room: "lobby", user: "bob" });
  socket.serve(Op.HEARTBEAT_OK, { online: { lobby: 4 } });
  await rec.until(() => rec.online.length === 1 && rec.events.length === 1, "event and online");
  assert.deepEqual(rec.events[0], { type: "enter", room: "lobby", user: "bob" });
  assert.deepEqual(rec.online[0], { lobby: 4 });
  assert.deepEqual(client.online, { lobby: 4 });
  client.close();
});

// ------------------------------------------------------------------ ACK and dedup

test("guaranteed messages are acked: one id in the header, a batch's ids as one exact JSON ACK", async () => {
  const { client, rec, socket } = await connected();
  socket.deliver(push(BIG, { n: 1 }, Flag.ACK_REQUIRED));
  const single = await socket.nextFrame();
  assert.equal(single.op, Op.ACK);
  assert.equal(single.msgId, BIG);
  assert.equal(single.body.length, 0);
  socket.deliver(batch([push("9007199254740993", {}, Flag.ACK_REQUIRED), push("3", {}), push("9007199254740995", {}, Flag.ACK_REQUIRED)]));
  const several = await socket.nextFrame();
  assert.equal(several.op, Op.ACK);
  assert.equal(text(several), '{"msg_ids":[9007199254740993,9007199254740995]}');
  assert.equal(rec.messages.length, 4);
  assert.deepEqual(
    rec.messages.map((m) => m.guaranteed),
    [true, true, false, true],
  );
  client.close();
});

test("duplicates are dropped by msgId and a guaranteed duplicate is acked again", async () => {
  const { client, rec, socket } = await connected();
  socket.deliver(push("7", { n: 1 }, Flag.ACK_REQUIRED));
  await socket.nextFrame();
  socket.deliver(push("7", { n: 1 }, Flag.ACK_REQUIRED)); // a retry racing the ACK
  const again = await socket.nextFrame();
  assert.equal(again.msgId, "7");
  socket.deliver(push("8", { n: 2 }));
  await rec.until(() => rec.messages.length === 2, "the next message");
  assert.deepEqual(rec.messages.map((m) => m.msgId), ["7", "8"]);
  client.close();
});

test("the dedup window is bounded", () => {
  const seen = new RecentIds(2);
  assert.deepEqual(["1", "1", "2", "3", "1"].map((id) => seen.add(id)), [true, false, true, true, true]);
  assert.equal(seen.length, 2);
  assert.throws(() => new RecentIds(-1), RangeError);
});

test("autoAck false: the application acks, and ids acked while disconnected go after the reconnect", async () => {
  const { gateway, client, rec, socket } = await connected({ autoAck: false });
  socket.deliver(push("11", {}, Flag.ACK_REQUIRED));
  await rec.until(() => rec.messages.length === 1, "the message");
  socket.deliver(push("11", {}, Flag.ACK_REQUIRED)); // owed by the app: not acked by the SDK
  socket.serve(Op.HEARTBEAT_OK, { online: {} });
  await rec.until(() => rec.online.length === 1, "a later frame");
  assert.equal(socket.frames.filter((f) => f.op === Op.ACK).length, 0);
  socket.drop();
  await rec.state("disconnected");
  client.ack("11");
  const [second] = await gateway.authenticate(2);
  const ack = await second.nextFrame();
  assert.equal(ack.op, Op.ACK);
  assert.equal(ack.msgId, "11");
  client.close();
});

// ------------------------------------------------------------------ requests

test("join resolves with the online count; an ERROR with the request's seq rejects", async () => {
  const { client, rec, socket } = await connected();
  const joining = client.join("news");
  const join = await socket.nextFrame();
  assert.equal(join.op, Op.JOIN);
  assert.deepEqual(JSON.parse(text(join)), { room: "news" });
  assert.ok(join.seq > 0);
  socket.serve(Op.JOIN_OK, { room: "news", online: 12 }, { seq: join.seq });
  assert.equal(await joining, 12);
  assert.deepEqual([...client.rooms].sort(), ["lobby", "news"]);
  assert.deepEqual(rec.online.at(-1), { news: 12 });

  const refused = client.join("tenth");
  const second = await socket.nextFrame();
  socket.serve(Op.ERROR, { code: "room_limit", message: "at most 8" }, { seq: second.seq });
  await assert.rejects(refused, (e) => e.code === "room_limit");
  assert.ok(!client.rooms.has("tenth"));

  const leaving = client.leave("news");
  const leave = await socket.nextFrame();
  assert.equal(leave.op, Op.LEAVE);
  socket.serve(Op.LEAVE_OK, { room: "news" }, { seq: leave.seq });
  await leaving;
  assert.deepEqual([...client.rooms], ["lobby"]);
  assert.equal(rec.errors.length, 0); // answered errors go to the caller only
  client.close();
});

test("upstream sends bytes and resolves on UPSTREAM_OK; a request times out", async () => {
  const { client, socket } = await connected({ requestTimeoutMs: 50 });
  const sending = client.upstream("弹幕");
  const up = await socket.nextFrame();
  assert.equal(up.op, Op.UPSTREAM);
  assert.equal(text(up), "弹幕");
  socket.serve(Op.UPSTREAM_OK, new Uint8Array(0), { seq: up.seq });
  await sending;
  await assert.rejects(client.join("silent"), (e) => e.code === "timeout");
  client.close();
});

test("requests while disconnected or closed reject at once; close rejects those in flight", async () => {
  const { client, socket } = await connected();
  const joining = client.join("news");
  await socket.nextFrame();
  client.close();
  await assert.rejects(joining, (e) => e.code === "disconnected");
  await assert.rejects(client.join("x"), (e) => e.code === "closed");
  await assert.rejects(client.connect(), (e) => e.code === "closed");
  client.close(); // idempotent
});

// ------------------------------------------------------------------ heartbeats and reconnects

test("heartbeats at AUTH_OK's interval; silence for 2.5 intervals drops and reconnects", async () => {
  const { gateway, client, rec, socket } = await connected({}, { heartbeat_s: 0.04 });
  const first = await socket.nextFrame({ heartbeats: true });
  assert.equal(first.op, Op.HEARTBEAT);
  socket.serve(Op.HEARTBEAT_OK, { online: {} });
  await gateway.authenticate(2); // the client gave up on the silent socket and came back
  const lost = rec.states.find((s) => s.state === "disconnected");
  assert.match(lost.reason, /nothing from the server/);
  assert.ok(socket.closedByClient);
  assert.ok(socket.frames.filter((f) => f.op === Op.HEARTBEAT).length >= 2);
  client.close();
});

test("reconnect: a fresh /v1/connect each time, the same device, AUTH with the rooms joined", async () => {
  const { gateway, client, rec, socket } = await connected();
  const joining = client.join("news");
  const join = await socket.nextFrame();
  socket.serve(Op.JOIN_OK, { room: "news", online: 1 }, { seq: join.seq });
  await joining;
  socket.drop();
  const [, auth] = await gateway.authenticate(2);
  await rec.state("connected", 2);
  assert.deepEqual(auth.rooms, ["lobby", "news"]);
  assert.equal(auth.token, "token-2");
  assert.deepEqual(gateway.connectBodies[1].body, { transports: ["ws", "stream"], user: "alice", device: "dev-1" });
  assert.deepEqual(rec.states.map((s) => s.state), ["connecting", "connected", "disconnected", "connecting", "connected"]);
  client.close();
});

test("recovery: the last msgId per room goes as since on every reconnect; recovery events come before the messages", async () => {
  const { gateway, client, rec, socket, auth } = await connected({ rooms: ["lobby", "quiet"] });
  assert.equal(auth.since, undefined); // nothing received yet: no since
  assert.deepEqual(rec.recoveries, []); // and nothing to recover at the first connection
  socket.deliver(batch([roomTag({ room: "lobby" }), push("41", 1), push("42", 2)]));
  socket.deliver(batch([roomTag({ room: "lobby" }), push("41", 1)])); // a duplicate: no effect
  socket.deliver(push("43", 3)); // no room
  await rec.until(() => rec.messages.length === 3, "3 messages");
  assert.deepEqual(client.lastIds, { lobby: "42" });
  socket.drop();
  const socket2 = await gateway.socket(2);
  const [, auth2] = await gateway.authenticate(2, { recovered: { lobby: true } });
  assert.deepEqual(auth2.since, { lobby: "42" });
  socket2.deliver(batch([roomTag({ room: "lobby" }), push("44", 4)])); // the replay
  await rec.until(() => rec.messages.length === 4, "the replayed message");
  // "quiet" could not be named: reported false by the SDK itself, so the app refreshes it.
  assert.deepEqual(rec.recoveries, [
    { room: "lobby", recovered: true },
    { room: "quiet", recovered: false },
  ]);
  assert.deepEqual(client.lastIds, { lobby: "44" });
  client.close();
});

test("recovery: join names the last msgId as since; JOIN_OK's recovered becomes an event; leave forgets it", async () => {
  const { client, rec, socket } = await connected();
  socket.deliver(batch([roomTag({ room: "stage" }), push("7", 1)])); // e.g. through an area
  await rec.until(() => rec.messages.length === 1, "a message tagged stage");
  const joining = client.join("stage");
  const join = await socket.nextFrame();
  assert.deepEqual(JSON.parse(text(join)), { room: "stage", since: "7" });
  socket.serve(Op.JOIN_OK, { room: "stage", online: 3, recovered: false }, { seq: join.seq });
  assert.equal(await joining, 3);
  assert.deepEqual(rec.recoveries, [{ room: "stage", recovered: false }]);
  const leaving = client.leave("stage");
  const leave = await socket.nextFrame();
  socket.serve(Op.LEAVE_OK, { room: "stage" }, { seq: leave.seq });
  await leaving;
  assert.deepEqual(client.lastIds, {});
  const again = client.join("stage");
  const join2 = await socket.nextFrame();
  assert.deepEqual(JSON.parse(text(join2)), { room: "stage" });
  socket.serve(Op.JOIN_OK, { room: "stage", online: 3 }, { seq: join2.seq });
  await again;
  assert.equal(rec.recoveries.length, 1); // no since, no recovered
  client.close();
});

test("connect() while reconnecting resolves with the next AUTH_OK", async () => {
  const { gateway, client, socket } = await connected();
  socket.drop();
  const again = client.connect();
  await gateway.authenticate(2);
  assert.equal((await again).conn_id, "c2");
  client.close();
});

test("reconnect attempts back off while /v1/connect fails (503), then succeed", async () => {
  const { gateway, client, rec, socket } = await connected();
  gateway.refuse = { status: 503, body: { error: { code: "no_nodes", message: "none" } } };
  socket.drop();
  await gateway.until(() => gateway.connectBodies.length >= 4, "three failed attempts");
  assert.ok(rec.errors.every((e) => e.code === "no_nodes"));
  gateway.refuse = null;
  await gateway.authenticate(2);
  await rec.state("connected", 2);
  client.close();
});

test("a 4xx from /v1/connect on reconnect stops the client", async () => {
  const { gateway, client, rec, socket } = await connected();
  gateway.refuse = { status: 401, body: { error: { code: "bad_ticket", message: "revoked" } } };
  socket.drop();
  await rec.state("closed");
  assert.match(rec.states.at(-1).reason, /bad_ticket/);
  assert.equal(client.state, "closed");
});

test("KICK drain reconnects; KICK for any other reason stops", async () => {
  const { gateway, client, rec, socket } = await connected();
  socket.serve(Op.KICK, { reason: "drain" });
  const [second] = await gateway.authenticate(2);
  await rec.state("connected", 2);
  second.serve(Op.KICK, { reason: "replaced" });
  await rec.state("closed");
  assert.equal(rec.states.at(-1).reason, "kicked: replaced");
  assert.deepEqual(rec.errors.map((e) => [e.code, e.detail]), [["kicked", "drain"], ["kicked", "replaced"]]);
  assert.equal(gateway.sockets.length, 2);
  client.close();
});

test("reconnect false: a loss closes the client", async () => {
  const { client, rec, socket } = await connected({ reconnect: false });
  socket.drop();
  await rec.state("closed");
  assert.equal(client.state, "closed");
});

test("the receive queue is bounded: past maxQueuedFrames the connection is dropped", async () => {
  const { gateway, client, rec, socket } = await connected({ maxQueuedFrames: 3 });
  const slow = encodeFrame(Op.PUSH, deflateSync(Buffer.from("{}")), { msgId: 1n, codec: Codec.ZLIB });
  for (let i = 0; i < 6; i++) socket.deliver(slow); // all in one tick: the first still inflating
  await rec.state("disconnected");
  assert.match(rec.states.at(-1).reason, /cannot keep up/);
  await gateway.authenticate(2);
  client.close();
});

test("a listener that throws does not break delivery (reported through reportError)", async (t) => {
  const { client, rec, socket } = await connected();
  const reported = [];
  const original = globalThis.reportError;
  globalThis.reportError = (error) => {
    reported.push(error);
    rec.changed();
  };
  t.after(() => {
    globalThis.reportError = original;
  });
  client.on("message", () => {
    throw new Error("listener bug");
  });
  socket.deliver(push("1", {}));
  socket.deliver(push("2", {}));
  await rec.until(() => rec.messages.length === 2 && reported.length === 2, "both messages");
  assert.equal(reported[0].message, "listener bug");
  client.close();
});

// ------------------------------------------------------------------ backoff

test("backoff: exponential caps with full jitter, reset after a connection that held", () => {
  let r = 1;
  const backoff = new Backoff(100, 1000, () => r);
  assert.deepEqual([0, 1, 2, 3, 4, 10].map((n) => backoff.cap(n)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([1, 2, 3, 4, 5].map(() => backoff.nextDelay()), [100, 200, 400, 800, 1000]);
  r = 0.5;
  backoff.reset();
  assert.equal(backoff.nextDelay(), 50);
  r = 0;
  assert.equal(backoff.nextDelay(), 0); // full jitter: anywhere from 0
  assert.throws(() => new Backoff(0, 10), RangeError);
});
