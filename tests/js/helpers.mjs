// Test helpers for the JavaScript SDK: waiting without sleeps, a fake gateway for unit
// tests (an injected WebSocket and fetch), and a real `longlink serve` for end-to-end tests.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

import { decodeFrame, encodeFrame, Op } from "../../src/longlink/web/sdk/longlink.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SCALE = Number(process.env.LONGLINK_TEST_TIMEOUT_SCALE ?? "1");
/** Seconds to wait for any one event (the Python suite's WAIT). */
export const WAIT_MS = 5000 * SCALE;

const utf8 = new TextEncoder();
export const json = (value) => utf8.encode(JSON.stringify(value));
export const hex = (text) => Uint8Array.from(text.match(/../g) ?? [], (b) => parseInt(b, 16));
export const toHex = (bytes) => Buffer.from(bytes).toString("hex");

/**
 * Things that happen, recorded in order; `until(predicate)` resolves as soon as the
 * predicate holds (checked on every record), or rejects after WAIT_MS.
 */
export class Waiter {
  constructor() {
    this._waits = new Set();
  }

  until(predicate, what = "the condition", timeoutMs = WAIT_MS) {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const wait = { predicate, resolve, timer: null };
      wait.timer = setTimeout(() => {
        this._waits.delete(wait);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this._waits.add(wait);
    });
  }

  changed() {
    for (const wait of [...this._waits]) {
      if (wait.predicate()) {
        clearTimeout(wait.timer);
        this._waits.delete(wait);
        wait.resolve();
      }
    }
  }
}

/** Everything a Client emits, recorded. */
export class Recorder extends Waiter {
  constructor(client) {
    super();
    this.messages = [];
    this.events = [];
    this.online = [];
    this.states = [];
    this.errors = [];
    this.recoveries = [];
    client.on("message", (m) => this._add(this.messages, m));
    client.on("recovery", (r) => this._add(this.recoveries, r));
    client.on("event", (e) => this._add(this.events, e));
    client.on("online", (o) => this._add(this.online, o));
    client.on("state", (s, reason) => this._add(this.states, { state: s, reason }));
    client.on("error", (e) => this._add(this.errors, e));
  }

  _add(list, item) {
    list.push(item);
    this.changed();
  }

  /** Resolves once the client has been in `state` `times` times in all. */
  state(state, times = 1) {
    return this.until(() => this.states.filter((s) => s.state === state).length >= times, `state ${state} x${times}`);
  }
}

// ------------------------------------------------------------------ fake gateway

/**
 * A fake control API and gateway: `fetch` answers /v1/connect, `WebSocket` is the class
 * the client opens; each opened socket is a FakeSocket the test drives as the server.
 */
export class FakeGateway extends Waiter {
  constructor() {
    super();
    this.connectBodies = [];
    this.sockets = [];
    this.grant = (n) => ({
      token: `token-${n}`,
      expires_at: 0,
      heartbeat_s: 30,
      endpoints: [{ node: "g1", region: "local", ws: "ws://fake/ws" }],
    });
    /** Set to {status, body, headers} to answer /v1/connect with an error. */
    this.refuse = null;
    const gateway = this;
    this.fetch = async (url, init) => {
      gateway.connectBodies.push({ url, body: JSON.parse(init.body) });
      gateway.changed();
      if (gateway.refuse !== null) {
        const { status, body, headers } = gateway.refuse;
        return new Response(JSON.stringify(body), { status, headers });
      }
      return Response.json(gateway.grant(gateway.connectBodies.length));
    };
    this.WebSocket = class extends FakeSocket {
      constructor(url, protocol) {
        super(url, protocol);
        gateway.sockets.push(this);
        gateway.changed();
      }
    };
  }

  /** The `n`th socket opened (from 1), accepted and past its AUTH, once there is one. */
  async socket(n = 1) {
    await this.until(() => this.sockets.length >= n, `socket ${n}`);
    return this.sockets[n - 1];
  }

  /** Accept socket `n`, read its AUTH, answer AUTH_OK; returns [socket, AUTH body]. */
  async authenticate(n = 1, authOk = {}) {
    const socket = await this.socket(n);
    socket.accept();
    const auth = await socket.nextFrame();
    if (auth.op !== Op.AUTH) throw new Error(`expected AUTH, got op ${auth.op}`);
    const body = JSON.parse(new TextDecoder().decode(auth.body));
    socket.serve(Op.AUTH_OK, {
      conn_id: `c${n}`,
      user: "alice",
      device: "dev-1",
      node: "g1",
      heartbeat_s: 30,
      codec: "zlib",
      rooms: body.rooms,
      ...authOk,
    }, { seq: auth.seq });
    return [socket, body];
  }
}

/** The server's end of one WebSocket the client opened. */
export class FakeSocket extends Waiter {
  constructor(url, protocol) {
    super();
    this.url = url;
    this.protocol = protocol;
    this.readyState = 0;
    this.binaryType = "blob";
    this.frames = []; // decoded client frames
    this.read = 0;
    this.closedByClient = false;
  }

  accept() {
    this.readyState = 1;
    this.onopen?.({});
  }

  /** Deliver raw bytes to the client as one binary message. */
  deliver(bytes) {
    const copy = new Uint8Array(bytes).buffer;
    this.onmessage?.({ data: copy });
  }

  /** Send one frame to the client; a non-bytes body is sent as JSON. */
  serve(op, body = new Uint8Array(0), options = {}) {
    const bytes = body instanceof Uint8Array ? body : json(body);
    this.deliver(encodeFrame(op, bytes, options));
  }

  /** The client frames with op `op` so far (e.g. every REPORT), their JSON bodies parsed. */
  sent(op) {
    return this.frames.filter((f) => f.op === op).map((f) => (f.body.length ? JSON.parse(new TextDecoder().decode(f.body)) : null));
  }

  /** The server closes the connection. */
  drop(code = 1006) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }

  send(bytes) {
    if (this.readyState !== 1) throw new Error("not open");
    this.frames.push(decodeFrame(bytes));
    this.changed();
  }

  close() {
    if (this.readyState === 3) return;
    this.closedByClient = true;
    this.readyState = 3;
    this.changed();
    queueMicrotask(() => this.onclose?.({ code: 1000, reason: "" }));
  }

  /** The next client frame not read yet (skipping HEARTBEATs and REPORTs unless asked for). */
  async nextFrame({ heartbeats = false, reports = false } = {}) {
    const skipped = (op) => (op === Op.HEARTBEAT && !heartbeats) || (op === Op.REPORT && !reports);
    const skip = () => {
      while (this.read < this.frames.length && skipped(this.frames[this.read].op)) this.read += 1;
      return this.read < this.frames.length;
    };
    await this.until(skip, "a frame from the client");
    return this.frames[this.read++];
  }
}

// ------------------------------------------------------------------ real server

const READY = /^longlink ready http=(\d+) ws=(\d+) tcp=(\d+)$/;
export const API_KEY = "js-test-key-with-every-scope";

/**
 * A real `longlink serve` (demo mode, one all-scope API key, ports 0 or the given ones,
 * data in a temp dir) started from the repository's .venv; resolves once it printed
 * its ready line.
 */
export class Server {
  constructor() {
    this.dataDir = mkdtempSync(join(tmpdir(), "longlink-js-"));
    this.proc = null;
    this.ports = null;
  }

  async start(ports = { http: 0, ws: 0, tcp: 0 }, env = {}) {
    this.scheme = env.LONGLINK_TLS_CERT ? "https" : "http";
    const command = join(ROOT, ".venv", "bin", "longlink");
    if (!existsSync(command)) throw new Error(`${command} is missing: run make venv`);
    const proc = spawn(command, ["serve"], {
      env: {
        ...process.env,
        LONGLINK_DEMO: "1",
        LONGLINK_API_KEY: API_KEY,
        LONGLINK_HOST: "127.0.0.1",
        LONGLINK_HTTP_PORT: String(ports.http),
        LONGLINK_WS_PORT: String(ports.ws),
        LONGLINK_TCP_PORT: String(ports.tcp),
        LONGLINK_DATA_DIR: this.dataDir,
        LONGLINK_LOG_LEVEL: "warning",
        LONGLINK_DRAIN_TIMEOUT_S: "1",
        ...env,
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.proc = proc;
    const lines = createInterface({ input: proc.stdout });
    const line = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the server printed no ready line")), 4 * WAIT_MS);
      lines.once("line", (text) => {
        clearTimeout(timer);
        resolve(text);
      });
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the server exited with ${code} before its ready line`));
      });
    });
    const match = READY.exec(line.trim());
    if (!match) throw new Error(`unexpected first line ${JSON.stringify(line)}`);
    this.ports = { http: Number(match[1]), ws: Number(match[2]), tcp: Number(match[3]) };
    lines.on("line", () => {}); // keep draining stdout
    return this;
  }

  get base() {
    return `${this.scheme}://127.0.0.1:${this.ports.http}`;
  }

  /** Kill the process (SIGKILL: a crash, no drain) and wait for it to be gone. */
  async kill() {
    const proc = this.proc;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    proc.kill("SIGKILL");
    await exited;
  }

  async stop() {
    await this.kill();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** GET /v1/messages/{msgId}: the message's trace. */
  async trace(msgId) {
    const response = await fetch(`${this.base}/v1/messages/${msgId}`, {
      headers: { authorization: `Bearer ${API_KEY}` },
    });
    return response.json();
  }

  /** GET /v1/rooms/{room}/history until it holds `msgId` (each poll one request). */
  async keeps(room, msgId) {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const response = await fetch(`${this.base}/v1/rooms/${encodeURIComponent(room)}/history`, {
        headers: { authorization: `Bearer ${API_KEY}` },
      });
      const body = await response.json();
      if (body.messages?.some((m) => m.msg_id === msgId)) return body;
      if (Date.now() > deadline) throw new Error(`${room} never kept ${msgId}: ${JSON.stringify(body)}`);
    }
  }

  /** POST /v1/push; resolves with the msg_id string the API answered. */
  async push(to, data, extra = {}) {
    const response = await fetch(`${this.base}/v1/push`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ to, data, ...extra }),
    });
    const body = await response.json();
    if (response.status !== 202) throw new Error(`push answered ${response.status}: ${JSON.stringify(body)}`);
    return body.msg_id;
  }
}
