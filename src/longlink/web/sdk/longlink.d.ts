// Type declarations of longlink.js, written by hand (the module has no build step).
// The wire protocol: docs/protocol.md in the longlink repository.

/** Frame header version (PROTOCOL.md §1.1). */
export const VERSION: 1;
/** Bytes in a frame header. */
export const HEADER_SIZE: 20;

/** Operations (PROTOCOL.md §1.2). */
export const Op: Readonly<{
  AUTH: 1;
  AUTH_OK: 2;
  HEARTBEAT: 3;
  HEARTBEAT_OK: 4;
  PUSH: 5;
  ACK: 6;
  JOIN: 7;
  JOIN_OK: 8;
  LEAVE: 9;
  LEAVE_OK: 10;
  UPSTREAM: 11;
  UPSTREAM_OK: 12;
  EVENT: 13;
  ERROR: 14;
  KICK: 15;
  ROOM: 16;
  REPORT: 17;
}>;

/** Header flags. */
export const Flag: Readonly<{ ACK_REQUIRED: 1; BATCH: 2; HIGH_PRIORITY: 4 }>;

/** Body codecs. The SDK asks for zlib only and refuses brotli bodies (`bad_frame`). */
export const Codec: Readonly<{ NONE: 0; ZLIB: 1; BROTLI: 2 }>;

/** ERROR codes after which the server closes the connection. */
export const FATAL_CODES: ReadonlySet<string>;

/** Default largest frame accepted from the server (16 MiB). */
export const DEFAULT_MAX_FRAME: number;
/** Default largest decoded (inflated) body accepted from the server (16 MiB). */
export const DEFAULT_MAX_INFLATE: number;

/** Protocol error codes of PROTOCOL.md §1.2. */
export type ProtocolErrorCode =
  | "bad_frame"
  | "too_large"
  | "auth_required"
  | "auth_failed"
  | "token_expired"
  | "not_allowed"
  | "room_limit"
  | "rate_limited"
  | "server_busy";

/** The client's own codes. */
export type ClientErrorCode = "closed" | "disconnected" | "timeout" | "connect_failed" | "kicked";

/**
 * Every error the SDK throws, rejects with or emits. `code` is a protocol code, the code of
 * an HTTP error from `/v1/connect` (e.g. `bad_ticket`, `no_nodes`, with `status`), or one of
 * the client's own codes.
 */
export class LonglinkError extends Error {
  constructor(
    code: string,
    message: string,
    options?: { seq?: number; status?: number; retryAfterMs?: number; cause?: unknown },
  );
  readonly name: "LonglinkError";
  readonly code: ProtocolErrorCode | ClientErrorCode | (string & {});
  /** The message without the code. */
  readonly detail: string;
  /** The seq of the request an ERROR frame answered (0: none). */
  readonly seq: number;
  /** HTTP status of a `/v1/connect` failure (0 otherwise). */
  readonly status: number;
  /** `Retry-After` of a `/v1/connect` failure, in ms (0: none). */
  readonly retryAfterMs: number;
  /** Whether the server closes the connection after an ERROR with this code. */
  readonly fatal: boolean;
}

/** One decoded frame; `body` is still encoded by `codec`. */
export class Frame {
  constructor(op: number, body?: Uint8Array, flags?: number, codec?: number, seq?: number, msgId?: string);
  op: number;
  body: Uint8Array;
  flags: number;
  codec: number;
  seq: number;
  /** Unsigned 64-bit message id as an exact decimal string ("0": not a message). */
  msgId: string;
}

/** The bytes of one frame; a string body is sent as UTF-8. */
export function encodeFrame(
  op: number,
  body?: Uint8Array | ArrayBuffer | string,
  options?: { flags?: number; codec?: number; seq?: number; msgId?: bigint | string | number },
): Uint8Array;

/** Decode exactly one frame (one WebSocket message); throws LonglinkError `bad_frame` / `too_large`. */
export function decodeFrame(data: Uint8Array | ArrayBuffer, maxFrame?: number): Frame;

/** The inner frames of a decoded BATCH body; throws LonglinkError `bad_frame`. */
export function splitBatch(payload: Uint8Array | ArrayBuffer): Frame[];

/** Inflate a zlib body, refusing output past `limit` bytes (`too_large`); corrupt is `bad_frame`. */
export function inflate(body: Uint8Array | ArrayBuffer, limit?: number): Promise<Uint8Array>;

/** Adler-32 checksum (RFC 1950). */
export function adler32(bytes: Uint8Array): number;

/** The body of `frame` decoded by its codec (none or zlib; brotli is refused with `bad_frame`). */
export function decodePayload(frame: Frame, maxInflate?: number): Promise<Uint8Array>;

/** One pushed message. */
export class Message {
  constructor(
    msgId: string,
    data: Uint8Array,
    options?: { room?: string | null; area?: boolean; guaranteed?: boolean; highPriority?: boolean },
  );
  /** The message id: an exact decimal string (ids exceed 2^53; compare with BigInt if needed). */
  readonly msgId: string;
  /** The payload; for a push made with JSON `data`, its UTF-8 JSON encoding. */
  readonly data: Uint8Array;
  /**
   * The room it came through, from the ROOM frame leading its BATCH (PROTOCOL.md §1.4 rule 1);
   * for an area push the area's name (then `area` is true); null for user, device and
   * broadcast pushes.
   */
  readonly room: string | null;
  /** True when `room` names an area. */
  readonly area: boolean;
  /** Sent with ACK_REQUIRED: acked by the client (automatically unless `autoAck: false`). */
  readonly guaranteed: boolean;
  readonly highPriority: boolean;
  /** The payload as UTF-8 text. */
  text(): string;
  /** The payload parsed as JSON. */
  json<T = unknown>(): T;
}

/** The messages of a PUSH frame (itself, or a BATCH's inner PUSH frames) with their room. */
export function unpackPushes(frame: Frame, maxInflate?: number): Promise<Message[]>;

/** ACK frames for the given ids: the header for one, JSON `{"msg_ids": [...]}` bodies for more. */
export function ackFrames(ids: string[]): Uint8Array[];

/** The last `size` distinct ids seen. */
export class RecentIds {
  constructor(size?: number);
  readonly size: number;
  /** Record `msgId`; true if new, false if seen recently. */
  add(msgId: string): boolean;
  has(msgId: string): boolean;
  readonly length: number;
}

/** Exponential backoff with full jitter: attempt n waits uniform [0, min(maxMs, initialMs·2^n)]. */
export class Backoff {
  constructor(initialMs?: number, maxMs?: number, random?: () => number);
  initialMs: number;
  maxMs: number;
  attempt: number;
  cap(attempt: number): number;
  /** The delay before the next attempt, in ms; counts the attempt. */
  nextDelay(): number;
  reset(): void;
}

/**
 * The adaptive heartbeat of one connection (PROTOCOL.md §1.6 rule 2), in seconds: from
 * `base` (AUTH_OK's interval) the interval grows ×`growth` after every `streak` answered
 * heartbeats, up to `ceiling` (lowered to what the server grants), and falls back to
 * `base` at once on a missed reply. The Client uses one per connection.
 */
export class AdaptiveHeartbeat {
  constructor(base: number, options?: { ceiling?: number; growth?: number; streak?: number; adaptive?: boolean });
  readonly base: number;
  ceiling: number;
  readonly growth: number;
  readonly streak: number;
  /** The interval now, seconds. */
  interval: number;
  /** Heartbeats answered in a row. */
  run: number;
  /** What the heartbeat in flight asked for. */
  asked: number | null;
  /** A reply later than this many seconds counts as missed. */
  readonly replyTimeoutS: number;
  /** The interval the next HEARTBEAT asks for (`{"heartbeat_s": n}`), or null. */
  ask(): number | null;
  /** A HEARTBEAT left asking for `asked`. */
  sent(asked: number | null): void;
  /** HEARTBEAT_OK came back in time, with the `heartbeat_s` it granted (if asked). */
  answered(granted: number | null | undefined): void;
  /** No HEARTBEAT_OK in time: back to `base`; returns what the next HEARTBEAT asks for. */
  missed(): number | null;
}

/** Milliseconds between two REPORTs (60000); the first goes right after connecting. */
export const REPORT_EVERY_MS: number;
/** Most round trips and failed transports one REPORT carries (64). */
export const MAX_REPORT_ITEMS: number;

/** The REPORT body (op 17, PROTOCOL.md §1.2 and §1.6 rule 1). */
export interface QualityReport {
  /** Heartbeat round trips since the last REPORT, ms. */
  rtt_ms: number[];
  /** The transport of this connection ("ws", …). */
  transport: string;
  /** Reconnects since the client was made. */
  reconnects: number;
  /** Only in the first REPORT of a connection: ms from the /v1/connect call to AUTH_OK. */
  connect_ms?: number;
  /** Its steps, ms: `control` (/v1/connect), `transport` (opening it), `auth` (AUTH → AUTH_OK). */
  connect_steps?: Record<string, number>;
  /** Transports that failed (could not open, or closed before AUTH_OK) since the last REPORT. */
  failed?: string[];
  /** The network type, where the platform tells it (`navigator.connection`). */
  network?: string;
}

/** What the next REPORT says, across connections (bounded); `take()` makes it and starts over. */
export class QualityLog {
  constructor();
  rtts: number[];
  failures: string[];
  transport: string;
  connections: number;
  connectMs: number | null;
  steps: Record<string, number>;
  failed(transport: string): void;
  connected(transport: string, totalMs: number, steps: Record<string, number>): void;
  rtt(ms: number): void;
  take(network?: string | null): QualityReport;
}

/** The network type from the Network Information API (`type`, else `effectiveType`), or null. */
export function networkType(nav?: unknown): string | null;

/** A connection delivering whole frames' bytes in order. */
export interface TransportConnection {
  send(bytes: Uint8Array): void;
  close(): void;
}

/** How to reach a gateway with one transport (PROTOCOL.md §1.5). */
export interface Transport {
  /** The field of a `/v1/connect` endpoint holding this transport's address. */
  key: string;
  open(
    address: string,
    options: {
      WebSocket: WebSocketConstructor;
      fetch: typeof fetch;
      /** The connection token (the HTTP stream's POSTs carry it). */
      token: string;
      maxFrame: number;
      timeoutMs: number;
      onFrame(bytes: Uint8Array): void;
      onClose(reason: string): void;
    },
  ): Promise<TransportConnection>;
}

/**
 * The transports this SDK implements, by name (PROTOCOL.md §1.5): `"ws"` (WebSocket) and
 * `"stream"` (the HTTP stream: a `fetch` whose streaming response body carries the server's
 * frames, POSTs for the client's; for networks that block WebSocket).
 */
export const TRANSPORTS: Record<string, Transport>;

/** The WebSocket class (the browser's, Node's global, or e.g. the `ws` package's). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocket;

/** The AUTH_OK body (PROTOCOL.md §1.2 op 2). */
export interface AuthOk {
  conn_id: string;
  user: string;
  device: string;
  node: string;
  heartbeat_s: number;
  codec: "br" | "zlib" | "none";
  rooms: string[];
  /** Answers AUTH's `since`, room by room (PROTOCOL.md §1.4 rule 3). */
  recovered?: Record<string, boolean>;
  [extension: string]: unknown;
}

/**
 * Whether the messages a room sent while the client was away were recovered
 * (PROTOCOL.md §1.4 rule 3). `recovered: false`: the server's history no longer held
 * the last message the client had (or the client had none from that room yet), it
 * sent what it keeps; refresh the room's state from your backend.
 */
export interface RecoveryResult {
  room: string;
  recovered: boolean;
}

/** An EVENT frame's JSON body, e.g. `{"type": "enter", "room": "lobby", "user": "bob"}`. */
export interface ServerEvent {
  type: string;
  room?: string;
  user?: string;
  [field: string]: unknown;
}

export type State = "connecting" | "connected" | "disconnected" | "closed";

export interface ClientOptions {
  /** A user name: servers in demo mode only. Give this or `ticket`. */
  user?: string;
  /** A JWT signed by your backend (PROTOCOL.md §2.1). */
  ticket?: string;
  /** Demo mode: the device id (default: the one the server picks first, kept on reconnects). */
  device?: string;
  /** Region preference sent to `/v1/connect`. */
  region?: string;
  /** Rooms joined at AUTH (and re-joined on every reconnect). */
  rooms?: Iterable<string>;
  /**
   * Transports to try, in order (control's advice first); names this SDK does not implement
   * are skipped. Default `["ws", "stream"]` (`["stream"]` where there is no WebSocket).
   */
  transports?: string[];
  /** Reconnect after a loss (default true). */
  reconnect?: boolean;
  /** The WebSocket class; default `globalThis.WebSocket` (Node 20: `--experimental-websocket`). */
  WebSocket?: WebSocketConstructor;
  /** The fetch function; default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Ack guaranteed messages once the `message` listeners ran (default true). */
  autoAck?: boolean;
  /** Heartbeat interval to ask for, in seconds (the server clamps it). */
  heartbeatS?: number;
  /**
   * Lengthen the heartbeat interval step by step while every heartbeat is answered, up to
   * the server's maximum; back to AUTH_OK's interval at once on a missed reply (default true).
   */
  adaptiveHeartbeat?: boolean;
  /** Send a connection-quality REPORT after connecting and then once a minute (default true). */
  report?: boolean;
  /** The network type to report (default: from `navigator.connection` where there is one). */
  network?: string;
  /** Message ids remembered to drop duplicates (default 10000). */
  dedupSize?: number;
  /** First reconnect delay cap in ms (default 200); doubles per attempt up to `backoffMaxMs`. */
  backoffInitialMs?: number;
  /** Largest reconnect delay in ms (default 10000). */
  backoffMaxMs?: number;
  /** Bound on `/v1/connect`, the WebSocket opening and AUTH, in ms (default 10000). */
  connectTimeoutMs?: number;
  /** Bound on join, leave and upstream, in ms (default 10000). */
  requestTimeoutMs?: number;
  /** Largest frame accepted from the server (default 16 MiB). */
  maxFrame?: number;
  /** Largest inflated body accepted from the server (default 16 MiB). */
  maxInflate?: number;
  /** Frames waiting to be handled past which the connection is dropped (default 10000). */
  maxQueuedFrames?: number;
  /** Random source of the backoff jitter, `() => [0, 1)` (default Math.random). */
  random?: () => number;
}

export interface ClientEvents {
  /** A pushed message, deduplicated by msgId, in arrival order. */
  message: (message: Message) => void;
  /** An EVENT frame. */
  event: (event: ServerEvent) => void;
  /** Online counts per room from HEARTBEAT_OK or JOIN_OK (the rooms that frame named). */
  online: (counts: Record<string, number>) => void;
  /** The connection state changed; `reason` says why it was lost or closed. */
  state: (state: State, reason: string) => void;
  /**
   * An ERROR frame answering no request, a body that could not be decoded, a KICK
   * (code `kicked`), or a failed reconnect attempt. The client goes on unless `state` says so.
   */
  error: (error: LonglinkError) => void;
  /**
   * After each reconnect, per room re-joined, before any message of the new connection
   * (and after a `join()` that named a `since`): whether what was missed was recovered.
   */
  recovery: (result: RecoveryResult) => void;
}

/**
 * An end-user connection to longlink. `connect()` asks `/v1/connect` for a token and
 * endpoints, opens the first endpoint that answers and authenticates; then heartbeats,
 * acks, drops duplicates and reconnects (exponential backoff, full jitter, a fresh
 * `/v1/connect`, AUTH with `rooms` and their `since`: the missed room messages come
 * first, and a `recovery` event says whether they could be) by itself.
 */
export class Client {
  constructor(base: string, options: ClientOptions);
  /** The HTTP base URL (without a trailing slash). */
  readonly base: string;
  /** The transports that will be tried, in order (control's advice goes first). */
  readonly transports: string[];
  /** The transport of the current (or last) connection: `"ws"` or `"stream"`; null before. */
  readonly transport: string | null;
  /**
   * Transports that failed on every endpoint and have not worked since: reported to
   * `/v1/connect` as `failed`, which then advises the others first.
   */
  readonly failedTransports: string[];
  /** Rooms sent in every AUTH: those given, plus join()ed, minus leave()d. */
  readonly rooms: Set<string>;
  /** Online counts per room, from HEARTBEAT_OK and JOIN_OK. */
  readonly online: Record<string, number>;
  /** The last msgId received from each room: `since` of AUTH (every reconnect) and JOIN. */
  readonly lastIds: Record<string, string>;
  readonly state: State;
  /** The last AUTH_OK (null before the first connection). */
  readonly authOk: AuthOk | null;
  /** The heartbeat interval now, seconds (adaptive: it grows while healthy); null while disconnected. */
  readonly heartbeatS: number | null;
  /** HEARTBEATs sent, over every connection. */
  readonly heartbeatsSent: number;

  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): this;
  off<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): this;

  /**
   * Connect and authenticate; resolves with AUTH_OK. A failure of the first connection
   * rejects with a LonglinkError (not retried); called while reconnecting, resolves with
   * the next AUTH_OK.
   */
  connect(): Promise<AuthOk>;
  /** Join a room; resolves with its online count. Rejects with `room_limit`, `not_allowed`, … */
  join(room: string): Promise<number>;
  /** Leave a room. */
  leave(room: string): Promise<void>;
  /** Send bytes (a string goes as UTF-8) to the business backend; resolves on UPSTREAM_OK. */
  upstream(data: Uint8Array | ArrayBuffer | string): Promise<void>;
  /** Acknowledge guaranteed messages yourself (with `autoAck: false`). */
  ack(...msgIds: Array<string | bigint | Array<string | bigint>>): void;
  /** Close for good (state "closed"); idempotent. */
  close(): void;
}
