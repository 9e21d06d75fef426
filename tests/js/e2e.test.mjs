// The JavaScript SDK from Node against a real `longlink serve` (demo mode, ports 0) that the
// tests start themselves: the acceptance of issue 12 for the JS SDK. Needs a WebSocket in
// Node 20: run with `node --experimental-websocket --test` (make jstest does).

import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { Client } from "../../src/longlink/web/sdk/longlink.js";
import { ROOT, Recorder, Server, WAIT_MS } from "./helpers.mjs";

const TEST_TIMEOUT = 12 * WAIT_MS;

if (typeof globalThis.WebSocket !== "function") {
  throw new Error("no global WebSocket: run node with --experimental-websocket (Node 20) or Node 22+");
}

const server = new Server();
const clients = [];

before(() => server.start());
after(async () => {
  for (const client of clients) client.close();
  await server.stop();
});

/** A connected client (demo-mode user) with everything it emits recorded. */
async function open(user, options = {}, ClientClass = Client, base = server.base) {
  const client = new ClientClass(base, { user, WebSocket: globalThis.WebSocket, backoffMaxMs: 1000, ...options });
  clients.push(client);
  const rec = new Recorder(client);
  await client.connect();
  return { client, rec };
}

test("the server serves this SDK at /sdk/longlink.js as JavaScript, and that module works", { timeout: TEST_TIMEOUT }, async () => {
  const response = await fetch(`${server.base}/sdk/longlink.js`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type"), /^text\/javascript\b/);
  const source = await response.text();
  assert.equal(source, readFileSync(join(ROOT, "src", "longlink", "web", "sdk", "longlink.js"), "utf8"));
  // Import the served bytes (Node cannot import http: URLs) and use its Client below.
  const served = await import(`data:text/javascript;base64,${Buffer.from(source).toString("base64")}`);
  const { client, rec } = await open("served-sdk", {}, served.Client);
  const msgId = await server.push({ users: ["served-sdk"] }, { hello: "from the served module" });
  await rec.until(() => rec.messages.length === 1, "the push");
  assert.equal(rec.messages[0].msgId, msgId);
  client.close();
});

test("a user push arrives with room null and msgId the exact string the API answered", { timeout: TEST_TIMEOUT }, async () => {
  const { client, rec } = await open("alice", { rooms: ["lobby"] });
  const msgId = await server.push({ users: ["alice"] }, { text: "hello alice" });
  assert.ok(BigInt(msgId) > BigInt(Number.MAX_SAFE_INTEGER), `ids exceed 2^53 (${msgId})`);
  await rec.until(() => rec.messages.length === 1, "the user push");
  const [message] = rec.messages;
  assert.equal(message.msgId, msgId);
  assert.equal(message.room, null);
  assert.deepEqual(message.json(), { text: "hello alice" });
  assert.equal(message.text(), '{"text":"hello alice"}');
  assert.ok(message.data instanceof Uint8Array);
  client.close();
});

test("300 room messages arrive in order, each with its room", { timeout: TEST_TIMEOUT }, async () => {
  const { client, rec } = await open("viewer-300", { rooms: ["stage-300"] });
  const sent = [];
  for (let i = 0; i < 300; i++) sent.push(await server.push({ rooms: ["stage-300"] }, { i }));
  await rec.until(() => rec.messages.length >= 300, "300 room messages");
  assert.equal(rec.messages.length, 300);
  assert.deepEqual(rec.messages.map((m) => m.msgId), sent);
  assert.deepEqual(rec.messages.map((m) => m.json().i), [...Array(300).keys()]);
  // PROTOCOL.md §1.4 rule 1: every room message comes in a BATCH led by a ROOM frame.
  assert.deepEqual(new Set(rec.messages.map((m) => m.room)), new Set(["stage-300"]));
  client.close();
});

test("join and leave change what arrives", { timeout: TEST_TIMEOUT }, async () => {
  const { client, rec } = await open("joiner");
  const { client: witness, rec: seen } = await open("witness", { rooms: ["hall-jl"] });
  assert.equal(await client.join("hall-jl"), 2);
  assert.deepEqual(rec.online.at(-1), { "hall-jl": 2 });
  const joinedId = await server.push({ rooms: ["hall-jl"] }, { n: "while joined" });
  await rec.until(() => rec.messages.length === 1, "the room message after join");
  assert.equal(rec.messages[0].msgId, joinedId);
  assert.equal(rec.messages[0].room, "hall-jl");

  await client.leave("hall-jl");
  assert.deepEqual([...client.rooms], []);
  const leftId = await server.push({ rooms: ["hall-jl"] }, { n: "after leave" });
  // Once the witness has it, anything the gateway wrote to the joiner for it went out
  // before the marker below, on the same connection.
  await seen.until(() => seen.messages.some((m) => m.msgId === leftId), "the witness's copy");
  const markerId = await server.push({ users: ["joiner"] }, { n: "marker" });
  await rec.until(() => rec.messages.length >= 2, "the marker");
  assert.deepEqual(rec.messages.map((m) => m.msgId), [joinedId, markerId]);
  client.close();
  witness.close();
});

test("a guaranteed push is acked by the SDK: the server's trace says acked, with no retry", { timeout: TEST_TIMEOUT }, async () => {
  const { client, rec } = await open("sure");
  const msgId = await server.push({ users: ["sure"] }, { n: 1 }, { guaranteed: true });
  await rec.until(() => rec.messages.length === 1, "the guaranteed push");
  assert.equal(rec.messages[0].guaranteed, true);
  // The ACK is not observable by the client: poll the trace (each poll one request) until it shows.
  const deadline = Date.now() + WAIT_MS;
  let acked;
  do {
    const trace = await server.trace(msgId);
    acked = trace.events?.find((e) => e.event === "acked");
    if (acked === undefined && Date.now() > deadline) assert.fail(`no ACK in ${JSON.stringify(trace)}`);
  } while (acked === undefined);
  assert.equal(acked.retries, 0);
  client.close();
});

test("reconnect after a server restart resumes delivery", { timeout: TEST_TIMEOUT }, async () => {
  const own = new Server();
  await own.start();
  try {
    const { client, rec } = await open("phoenix", { rooms: ["ashes"] }, Client, own.base);
    const before = await own.push({ users: ["phoenix"] }, { n: "before" });
    await rec.until(() => rec.messages.length === 1, "the push before the restart");
    assert.equal(rec.messages[0].msgId, before);

    await own.kill();
    await rec.state("disconnected");
    await own.start(own.ports); // the same ports: the client's base URL still holds
    await rec.until(() => rec.states.filter((s) => s.state === "connected").length >= 2, "the reconnect", 4 * WAIT_MS);

    const user = await own.push({ users: ["phoenix"] }, { n: "after" });
    const room = await own.push({ rooms: ["ashes"] }, { n: "room after" }); // re-joined at AUTH
    await rec.until(() => rec.messages.length >= 3, "both pushes after the restart");
    // A user push and a room push take different paths: their relative order is not fixed.
    const rooms = new Map(rec.messages.slice(1).map((m) => [m.msgId, m.room]));
    assert.deepEqual(
      rooms,
      new Map([
        [user, null],
        [room, "ashes"],
      ]),
    );
    assert.equal(client.state, "connected");
    client.close();
  } finally {
    await own.stop();
  }
});

test("a dropped connection: the missed room messages come first, in order, then live ones", { timeout: TEST_TIMEOUT }, async () => {
  // /v1/connect waits while `gate` is set: the messages below are pushed while the client is away.
  let gate = null;
  const gatedFetch = async (url, init) => {
    if (gate !== null) await gate.promise;
    return fetch(url, init);
  };
  const { client, rec } = await open("recovering", { rooms: ["rec-room"], backoffInitialMs: 20, fetch: gatedFetch });
  const before = [];
  for (let i = 0; i < 2; i++) before.push(await server.push({ rooms: ["rec-room"] }, { i }));
  await rec.until(() => rec.messages.length === 2, "the messages before the drop");
  assert.deepEqual(client.lastIds, { "rec-room": before[1] });

  let release;
  gate = { promise: new Promise((resolve) => (release = resolve)) };
  client._link.transport.close(); // the connection drops (as a network loss looks to the SDK)
  await rec.state("disconnected");
  const missed = [];
  for (let i = 2; i < 6; i++) missed.push(await server.push({ rooms: ["rec-room"] }, { i }));
  await server.keeps("rec-room", missed.at(-1));
  gate = null;
  release();
  await rec.until(() => rec.messages.length === 6, "the missed messages");
  assert.deepEqual(rec.recoveries, [{ room: "rec-room", recovered: true }]);
  assert.deepEqual(rec.messages.slice(2).map((m) => [m.room, m.msgId]), missed.map((id) => ["rec-room", id]));
  const live = await server.push({ rooms: ["rec-room"] }, { i: 6 });
  await rec.until(() => rec.messages.length === 7, "the live message");
  assert.equal(rec.messages[6].msgId, live);
  client.close();
});
