// The HTTP stream transport of the JavaScript SDK (PROTOCOL.md §1.5) against a real
// `longlink serve`: a client on the stream alone, and a client whose WebSocket fails
// that falls back to the stream, reports the failure and is advised the stream first.

import test, { after, before } from "node:test";
import assert from "node:assert/strict";

import { Client } from "../../src/longlink/web/sdk/longlink.js";
import { Recorder, Server, WAIT_MS } from "./helpers.mjs";

const TEST_TIMEOUT = 12 * WAIT_MS;
const server = new Server();
const clients = [];

before(() => server.start());
after(async () => {
  for (const client of clients) client.close();
  await server.stop();
});

/** A WebSocket whose every connection fails, as on a network that blocks upgrades. */
class BlockedWebSocket {
  constructor() {
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 3;
      this.onerror?.({});
      this.onclose?.({ code: 1006, reason: "" });
    }, 0);
  }

  close() {}
}

function open(user, options) {
  const client = new Client(server.base, { user, backoffMaxMs: 500, ...options });
  clients.push(client);
  return { client, rec: new Recorder(client) };
}

test("over the stream alone: pushes, JOIN and LEAVE by POST, heartbeats", { timeout: TEST_TIMEOUT }, async () => {
  const { client, rec } = open("streamer", { transports: ["stream"], rooms: ["lobby"], heartbeatS: 1 });
  const authOk = await client.connect();
  assert.equal(client.transport, "stream");
  const msgId = await server.push({ rooms: ["lobby"] }, { text: "over the stream" });
  await rec.until(() => rec.messages.length === 1, "the room push");
  assert.equal(rec.messages[0].msgId, msgId);
  assert.equal(rec.messages[0].room, "lobby");
  assert.equal(await client.join("news"), 1);
  await client.leave("news");
  // Heartbeats travel as POSTs; their answers keep the connection (2.5 intervals of silence
  // would end it): still the same connection after three intervals.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assert.equal(client.state, "connected");
  assert.equal(client.authOk.conn_id, authOk.conn_id);
  client.close();
});

test("WebSocket blocked: the client falls back to the stream and control advises it first", { timeout: TEST_TIMEOUT }, async () => {
  const bodies = [];
  const recordingFetch = (url, init) => {
    if (String(url).endsWith("/v1/connect")) bodies.push(JSON.parse(init.body));
    return fetch(url, init);
  };
  const { client, rec } = open("blocked", { WebSocket: BlockedWebSocket, fetch: recordingFetch, rooms: ["lobby"] });
  await client.connect();
  assert.equal(client.transport, "stream");
  assert.deepEqual(client.failedTransports, ["ws"]);
  assert.deepEqual(bodies[0], { transports: ["ws", "stream"], user: "blocked" });
  const first = await server.push({ rooms: ["lobby"] }, "one");
  await rec.until(() => rec.messages.some((m) => m.msgId === first), "the first push");
  // The server drops the stream (a proxy's timeout, say): the reconnect reports ws failed.
  const answer = await fetch(`${server.base}/v1/connect`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: "probe", failed: ["ws"] }),
  });
  assert.deepEqual((await answer.json()).transports, ["stream", "tcp", "ws"]);
  client._link.transport.close(); // as if the network cut it
  client._ended(client._link, "cut");
  await rec.state("connected", 2);
  assert.deepEqual(bodies[1].failed, ["ws"]);
  assert.equal(client.transport, "stream");
  const second = await server.push({ rooms: ["lobby"] }, "two");
  await rec.until(() => rec.messages.some((m) => m.msgId === second), "the push after the reconnect");
  client.close();
});
