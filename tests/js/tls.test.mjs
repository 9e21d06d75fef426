// The JavaScript SDK over TLS (PROTOCOL.md §1.5): https:// for /v1/connect, then the
// wss:// endpoint it advertises (or the https:// HTTP stream), with a private CA given to Node by NODE_EXTRA_CA_CERTS.
// Node reads that variable at start, so the client runs in a child process.

import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { API_KEY, ROOT, Server, WAIT_MS } from "./helpers.mjs";

const dir = mkdtempSync(join(tmpdir(), "longlink-tls-"));
const cert = join(dir, "cert.pem");
const key = join(dir, "key.pem");
const server = new Server();

before(async () => {
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { stdio: "ignore" });
  await server.start(undefined, { LONGLINK_TLS_CERT: cert, LONGLINK_TLS_KEY: key });
});

after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const CHILD = `
const { Client } = await import(process.env.SDK);
const base = process.env.BASE;
const transports = JSON.parse(process.env.TRANSPORTS);
const client = new Client(base, { user: "tls-user", WebSocket: globalThis.WebSocket, reconnect: false, transports });
const got = new Promise((resolve) => client.on("message", (m) => resolve(m.json())));
const ok = await client.connect();
const push = await fetch(base + "/v1/push", {
  method: "POST",
  headers: { authorization: "Bearer " + process.env.KEY, "content-type": "application/json" },
  body: JSON.stringify({ to: { users: ["tls-user"] }, data: "over tls" }),
});
console.log(JSON.stringify({ status: push.status, message: await got, conn: ok.conn_id !== undefined, transport: client.transport }));
client.close();
`;

for (const transport of ["ws", "stream"]) test(`the SDK connects over https and ${transport} with a CA from NODE_EXTRA_CA_CERTS`, async () => {
  assert.match(server.base, /^https:/);
  // The child needs a WebSocket as this process has one (Node 20: behind a flag).
  const flags = process.execArgv.filter((arg) => arg === "--experimental-websocket");
  const child = spawn(process.execPath, [...flags, "--input-type=module", "-e", CHILD], {
    env: {
      ...process.env,
      NODE_EXTRA_CA_CERTS: cert,
      SDK: join(ROOT, "src", "longlink", "web", "sdk", "longlink.js"),
      BASE: server.base,
      KEY: API_KEY,
      TRANSPORTS: JSON.stringify([transport]),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk) => (out += chunk));
  child.stderr.on("data", (chunk) => (err += chunk));
  const code = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill(); reject(new Error(`child timed out: ${err}`)); }, 3 * WAIT_MS);
    child.once("exit", (c) => { clearTimeout(timer); resolve(c); });
  });
  assert.equal(code, 0, err);
  const line = out.trim().split("\n").pop();
  assert.deepEqual(JSON.parse(line), { status: 202, message: "over tls", conn: true, transport });
});
