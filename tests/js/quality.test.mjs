// Connection quality in the JavaScript SDK (PROTOCOL.md §1.6): the REPORT after connecting
// (connect time by step, transport, reconnects, failed transports, network type), heartbeat
// round trips in the next one, the adaptive heartbeat; against a fake gateway, then against
// a real `longlink serve` whose /v1/quality shows what the SDK reported.

import test, { after, before } from "node:test";
import assert from "node:assert/strict";

import { Client, Op, QualityLog, networkType } from "../../src/longlink/web/sdk/longlink.js";
import { API_KEY, FakeGateway, Recorder, Server, WAIT_MS } from "./helpers.mjs";

const made = []; // every client, closed after the tests (a failed test leaves none running)

function setup(options = {}) {
  const gateway = new FakeGateway();
  const client = new Client("http://fake/", {
    user: "alice",
    WebSocket: gateway.WebSocket,
    fetch: gateway.fetch,
    backoffInitialMs: 5,
    backoffMaxMs: 20,
    ...options,
  });
  made.push(client);
  return { gateway, client, rec: new Recorder(client) };
}

/** The next REPORT body the client sends on `socket`. */
async function nextReport(socket) {
  await socket.until(() => socket.frames.slice(socket.read).some((f) => f.op === Op.REPORT), "a REPORT");
  const at = socket.frames.findIndex((f, i) => i >= socket.read && f.op === Op.REPORT);
  socket.read = at + 1;
  return JSON.parse(new TextDecoder().decode(socket.frames[at].body));
}

/** Answer every HEARTBEAT on `socket` (optionally granting what it asks for) until stopped. */
function answerHeartbeats(socket, { grant = false } = {}) {
  let seen = 0;
  let stopped = false;
  const answer = () => {
    if (stopped) return;
    const beats = socket.frames.filter((f) => f.op === Op.HEARTBEAT);
    for (; seen < beats.length; seen++) {
      const body = beats[seen].body.length ? JSON.parse(new TextDecoder().decode(beats[seen].body)) : {};
      const ok = { online: {} };
      if (grant && body.heartbeat_s != null) ok.heartbeat_s = body.heartbeat_s;
      queueMicrotask(() => socket.readyState === 1 && socket.serve(Op.HEARTBEAT_OK, ok));
    }
  };
  const wait = { predicate: () => (answer(), false), resolve() {}, timer: null };
  socket._waits.add(wait); // checked on every frame the client sends
  answer();
  return () => {
    stopped = true;
    socket._waits.delete(wait);
  };
}

// ------------------------------------------------------------------ against a fake gateway

test("REPORT right after AUTH_OK: transport, connect time and its steps, no reconnects", async () => {
  const { gateway, client } = setup({ network: "wifi" });
  const connecting = client.connect();
  const [socket] = await gateway.authenticate(1);
  await connecting;
  const report = await nextReport(socket);
  assert.equal(report.transport, "ws");
  assert.equal(report.reconnects, 0);
  assert.deepEqual(report.rtt_ms, []);
  assert.equal(report.network, "wifi");
  assert.equal(report.failed, undefined);
  assert.deepEqual(Object.keys(report.connect_steps).sort(), ["auth", "control", "transport"]);
  for (const ms of [report.connect_ms, ...Object.values(report.connect_steps)]) assert.ok(Number.isInteger(ms) && ms >= 0);
  assert.ok(report.connect_ms >= Math.max(...Object.values(report.connect_steps)));
  assert.equal(socket.frames[0].op, Op.AUTH);
  assert.equal(socket.frames[1].op, Op.REPORT); // before anything else of the connection
  client.close();
});

test("endpoints are tried in order; the ones that failed are named in the REPORT, once", async () => {
  const { gateway, client } = setup();
  gateway.grant = (n) => ({
    token: `t${n}`,
    endpoints: [
      { node: "g1", ws: "ws://one/ws" },
      { node: "g2", ws: "ws://two/ws" },
      { node: "g3", ws: "ws://three/ws" },
    ],
  });
  const connecting = client.connect();
  (await gateway.socket(1)).drop(); // g1 unreachable
  const closing = await gateway.socket(2); // g2 opens, then closes during AUTH
  closing.accept();
  await closing.nextFrame();
  closing.drop();
  const [third] = await gateway.authenticate(3, { node: "g3" });
  assert.deepEqual(gateway.sockets.map((s) => s.url), ["ws://one/ws", "ws://two/ws", "ws://three/ws"]);
  assert.equal((await connecting).node, "g3");
  const report = await nextReport(third);
  assert.deepEqual(report.failed, ["ws"]); // once for this attempt, though two endpoints failed
  // The next connection's REPORT does not repeat them.
  third.drop();
  const [fourth] = await gateway.authenticate(4);
  const again = await nextReport(fourth);
  assert.equal(again.failed, undefined);
  assert.equal(again.reconnects, 1);
  client.close();
});

test("heartbeat round trips go in the next REPORT (here: the one after a reconnect)", async () => {
  const { gateway, client } = setup();
  const connecting = client.connect();
  const [socket] = await gateway.authenticate(1, { heartbeat_s: 0.02 });
  await connecting;
  await nextReport(socket);
  const stop = answerHeartbeats(socket);
  await socket.until(() => socket.frames.filter((f) => f.op === Op.HEARTBEAT).length >= 3, "three heartbeats");
  stop();
  socket.drop();
  const [second] = await gateway.authenticate(2);
  const report = await nextReport(second);
  assert.ok(report.rtt_ms.length >= 2, JSON.stringify(report));
  assert.ok(report.rtt_ms.every((ms) => Number.isInteger(ms) && ms >= 0 && ms < WAIT_MS));
  assert.equal(report.reconnects, 1);
  assert.ok(client.heartbeatsSent >= 3);
  client.close();
});

test("adaptive heartbeat: asks for longer after three answers, takes the grant, falls back at once on a miss", async () => {
  const { gateway, client } = setup();
  const connecting = client.connect();
  const [socket] = await gateway.authenticate(1, { heartbeat_s: 0.02 });
  await connecting;
  assert.equal(client.heartbeatS, 0.02);
  const stop = answerHeartbeats(socket, { grant: true });
  const asking = () => socket.sent(Op.HEARTBEAT).filter((b) => b !== null);
  await socket.until(() => asking().length >= 1, "a HEARTBEAT asking for longer");
  assert.ok(socket.sent(Op.HEARTBEAT).findIndex((b) => b !== null) >= 3, "only after three answered");
  assert.deepEqual(asking()[0], { heartbeat_s: 1 }); // ceil(0.02 × 1.5), whole seconds
  await socket.until(() => client.heartbeatS === 1, "the granted interval");
  stop(); // the next heartbeat goes unanswered: after the reply timeout (1 s) the client falls back
  await socket.until(() => asking().some((b) => b.heartbeat_s === 0.02), "a HEARTBEAT asking for the base", 4 * WAIT_MS);
  assert.equal(client.heartbeatS, 0.02);
  assert.equal(client.state, "connected");
  client.close();
});

test("report false sends no REPORT; adaptiveHeartbeat false never asks", async () => {
  const { gateway, client } = setup({ report: false, adaptiveHeartbeat: false });
  const connecting = client.connect();
  const [socket] = await gateway.authenticate(1, { heartbeat_s: 0.01 });
  await connecting;
  const stop = answerHeartbeats(socket, { grant: true });
  await socket.until(() => socket.sent(Op.HEARTBEAT).length >= 6, "six heartbeats");
  stop();
  assert.deepEqual(socket.sent(Op.REPORT), []);
  assert.ok(socket.sent(Op.HEARTBEAT).every((b) => b === null));
  client.close();
});

test("QualityLog is bounded; networkType reads navigator.connection", () => {
  const log = new QualityLog();
  for (let i = 0; i < 100; i++) {
    log.rtt(i);
    log.failed("ws");
  }
  log.connected("ws", 10 ** 9, { control: -5, transport: 3.6 });
  const report = log.take("x".repeat(100));
  assert.equal(report.rtt_ms.length, 64);
  assert.equal(report.rtt_ms[0], 36); // the latest are kept
  assert.equal(report.failed.length, 64);
  assert.equal(report.connect_ms, 600000); // within the server's bounds
  assert.deepEqual(report.connect_steps, { control: 0, transport: 4 });
  assert.equal(report.network.length, 32);
  assert.deepEqual(log.take(), { rtt_ms: [], transport: "ws", reconnects: 0 });
  assert.equal(networkType({}), null);
  assert.equal(networkType({ connection: { type: "cellular", effectiveType: "3g" } }), "cellular");
  assert.equal(networkType({ connection: { type: "unknown", effectiveType: "4g" } }), "4g");
  assert.equal(networkType({ connection: { effectiveType: "slow-2g" } }), "slow-2g");
});

// ------------------------------------------------------------------ against a real server

const server = new Server();
const clients = [];
before(() => server.start(undefined, { LONGLINK_HEARTBEAT_S: "1", LONGLINK_MIN_HEARTBEAT_S: "1", LONGLINK_MAX_HEARTBEAT_S: "2" }));
after(async () => {
  for (const client of [...made, ...clients]) client.close();
  await server.stop();
});

async function api(path) {
  const response = await fetch(`${server.base}${path}`, { headers: { authorization: `Bearer ${API_KEY}` } });
  assert.equal(response.status, 200);
  return path === "/metrics" ? response.text() : response.json();
}

/** Poll `read` (one request per round) until `predicate` holds on its answer. */
async function until(read, predicate, what) {
  const deadline = Date.now() + 3 * WAIT_MS;
  for (;;) {
    const value = await read();
    if (predicate(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value).slice(0, 500)}`);
    await new Promise((resolve) => setTimeout(resolve, 100)); // the node report goes every second
  }
}

test("a real server: the REPORT arrives in /v1/quality, round trips after a reconnect, the interval grows", { timeout: 12 * WAIT_MS }, async () => {
  if (typeof globalThis.WebSocket !== "function") throw new Error("no global WebSocket: node --experimental-websocket");
  const client = new Client(server.base, { user: "reporter", WebSocket: globalThis.WebSocket, backoffMaxMs: 200 });
  clients.push(client);
  const rec = new Recorder(client);
  await client.connect();
  const wsRow = (quality) => quality.rows.find((r) => r.transport === "ws");
  const row = wsRow(await until(() => api("/v1/quality"), (q) => wsRow(q)?.connect_ms.p50 != null, "the connect time in /v1/quality"));
  assert.equal(row.connections, 1);
  assert.match(await api("/metrics"), /longlink_quality_reports_total\{outcome="accepted"\} [1-9]/);

  // Heartbeats every second; after three answers the client asks for 2 s and gets it.
  await rec.until(() => client.heartbeatS === 2, "the granted 2 s interval", 3 * WAIT_MS);
  client._link.transport.close(); // the connection drops (as a network loss looks to the SDK)
  await rec.state("connected", 2);
  const after = await until(() => api("/v1/quality"), (q) => wsRow(q)?.rtt_samples >= 3, "the round trips of the first connection");
  assert.ok(wsRow(after).rtt_ms.p50 !== null && wsRow(after).rtt_ms.p50 <= 1000);
  assert.ok(wsRow(after).reconnects_per_hour > 0);
  assert.equal(client.heartbeatS, 1); // a new connection starts again at AUTH_OK's interval
  client.close();
});
