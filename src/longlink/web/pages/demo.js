// longlink live-room demo: danmaku over the JavaScript SDK served by this server.
//
// Each tab is a viewer with a made-up name (or ?user=NAME). What it sends goes up as UPSTREAM;
// in demo mode the server pushes it back to the room (web/echo.py), so every tab in the room
// sees it fly across the stage. Pushes from the HTTP API to the room (or to this user) fly too.
// Enter/exit notices are the room's EVENT frames; the online count comes with each heartbeat.

import { Client } from "/sdk/longlink.js";

/** The demo rooms (web/echo.py DEMO_ROOMS) and their labels. */
const ROOMS = new Map([
  ["demo-lobby", "Lobby"],
  ["demo-music", "Music"],
]);
const HEARTBEAT_S = 3; // the online count refreshes with every heartbeat
const MAX_TEXT = 200;
const MAX_FLYING = 60; // danmaku on the stage at once; the oldest go first
const MAX_LOG = 80; // room log entries kept
const RATE_WINDOW_MS = 5000; // messages per second: averaged over this window
const CROSSING_MS = 8000; // time for a point to cross the stage: every danmaku has one speed
const LANE_GAP_PX = 48; // space between two danmaku of a lane

const $ = (id) => document.getElementById(id);
const stage = $("stage");
const log = $("log");
const input = $("text");
const sendButton = $("send-button");
const roomButtons = [...document.querySelectorAll("#rooms button")];

const params = new URLSearchParams(location.search);
const me = cleanName(params.get("user")) ?? `viewer-${1000 + Math.floor(Math.random() * 9000)}`;
let room = ROOMS.has(params.get("room")) ? params.get("room") : ROOMS.keys().next().value;
let switching = false;
const arrivals = []; // arrival times (ms) of recent messages
const laneFreeAt = []; // per lane: when its last danmaku has moved far enough right to left

$("me").textContent = me;

const client = new Client(location.origin, { user: me, heartbeatS: HEARTBEAT_S });

client.on("state", (state, reason) => {
  document.body.dataset.state = state;
  $("state").textContent = state;
  const ready = state === "connected";
  input.disabled = sendButton.disabled = !ready;
  if (state === "disconnected" && client.authOk !== null) {
    notice(`connection lost${reason ? ` (${reason})` : ""}; reconnecting…`, "error");
  }
  if (ready) notice(`connected to node ${client.authOk?.node ?? "?"}`);
});

client.on("message", (message) => {
  if (message.room !== null && message.room !== room) return; // a room just left
  const { user, text } = describe(message);
  arrivals.push(performance.now());
  fly(text, user, message.msgId);
  addLog(text, user, message.msgId);
});

client.on("event", (event) => {
  if (event?.room !== room || (event.type !== "enter" && event.type !== "exit")) return;
  const who = event.user === me ? "you" : event.user;
  notice(`${who} ${event.type === "enter" ? "entered" : "left"} the room`, event.type);
});

client.on("online", (counts) => {
  if (Object.hasOwn(counts, room)) setOnline(counts[room]);
});

client.on("error", (error) => notice(`${error.code ?? "error"}: ${error.message}`, "error"));

// ------------------------------------------------------------------ sending

$("send").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const text = input.value.trim().slice(0, MAX_TEXT);
  if (!text) return;
  input.value = "";
  try {
    await client.upstream(text);
  } catch (error) {
    input.value ||= text;
    notice(
      error.code === "rate_limited"
        ? "slow down: the demo echoes a couple of messages a second per viewer"
        : `not sent: ${error.message}`,
      "error",
    );
  }
});

// ------------------------------------------------------------------ rooms

for (const button of roomButtons) {
  button.addEventListener("click", () => switchTo(button.dataset.room));
}

async function switchTo(next) {
  if (next === room || switching || !ROOMS.has(next)) return;
  switching = true;
  const previous = room;
  room = next;
  showRoom();
  clearStage();
  setOnline(null);
  notice(`you moved to ${ROOMS.get(next)}`);
  try {
    await client.leave(previous).catch(() => {}); // leave() forgets the room even offline
    setOnline(await client.join(next));
  } catch (error) {
    client.rooms.add(next); // offline: joined at the next AUTH
    notice(`join: ${error.message}`, "error");
  } finally {
    switching = false;
    showRoom();
  }
}

function showRoom() {
  for (const button of roomButtons) {
    button.setAttribute("aria-pressed", String(button.dataset.room === room));
    button.disabled = switching;
  }
  document.title = `longlink · ${ROOMS.get(room)}`;
  const url = new URL(location.href);
  url.searchParams.set("room", room);
  history.replaceState(null, "", url);
}

// ------------------------------------------------------------------ rendering

/** The text (and sender) of a message: the echo's {user, text}, a JSON value, or raw text. */
function describe(message) {
  let value;
  try {
    value = message.json();
  } catch {
    return { user: null, text: clip(message.text()) };
  }
  if (value !== null && typeof value === "object" && typeof value.text === "string") {
    return { user: typeof value.user === "string" ? value.user : null, text: clip(value.text) };
  }
  return { user: null, text: clip(typeof value === "string" ? value : JSON.stringify(value)) };
}

function fly(text, user, msgId) {
  const flying = stage.querySelectorAll(".danmaku");
  if (flying.length >= MAX_FLYING) flying[0].remove();
  const item = document.createElement("div");
  item.className = `danmaku${user === me ? " mine" : user === null ? " server" : ""}`;
  item.dataset.msgId = msgId;
  if (user !== null && user !== me) {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = user;
    item.append(who);
  }
  item.append(text);
  const lane = pickLane();
  item.style.top = `calc(${lane} * var(--lane) + 8px)`;
  stage.append(item);
  // One speed for all, so a later danmaku never catches up with the one before it in its lane.
  const speed = stage.clientWidth / CROSSING_MS; // px per ms
  const distance = stage.clientWidth + item.offsetWidth;
  item.style.setProperty("--distance", `-${distance}px`);
  item.style.setProperty("--duration", `${Math.round(distance / speed)}ms`);
  // The lane is free again once the item's tail has entered the stage, plus a gap.
  laneFreeAt[lane] = performance.now() + (item.offsetWidth + LANE_GAP_PX) / speed;
  item.addEventListener("animationend", () => item.remove());
}

/** A free lane at random (the stage fills evenly), or the one that frees first. */
function pickLane() {
  const lanes = Math.max(1, Math.floor((stage.clientHeight - 40) / 34));
  const now = performance.now();
  const free = [];
  let first = 0;
  for (let lane = 0; lane < lanes; lane++) {
    if ((laneFreeAt[lane] ?? 0) <= now) free.push(lane);
    else if (laneFreeAt[lane] < (laneFreeAt[first] ?? 0)) first = lane;
  }
  return free.length ? free[Math.floor(Math.random() * free.length)] : first;
}

function clearStage() {
  for (const item of stage.querySelectorAll(".danmaku")) item.remove();
  laneFreeAt.length = 0;
}

function addLog(text, user, msgId) {
  const entry = document.createElement("li");
  entry.className = user === me ? "message mine" : "message";
  entry.dataset.msgId = msgId;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = user ?? "server";
  entry.append(who, text);
  append(entry);
}

function notice(text, kind = "") {
  const entry = document.createElement("li");
  entry.className = `notice ${kind}`.trim();
  entry.textContent = text;
  append(entry);
}

function append(entry) {
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
  log.append(entry);
  while (log.children.length > MAX_LOG) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function setOnline(count) {
  $("online").textContent = count == null ? "–" : String(count);
}

function clip(text) {
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT - 1)}…` : text;
}

function cleanName(name) {
  const clean = (name ?? "").trim().slice(0, 40);
  return clean && !/[\u0000-\u001f\u007f]/.test(clean) ? clean : null;
}

setInterval(() => {
  const since = performance.now() - RATE_WINDOW_MS;
  while (arrivals.length && arrivals[0] < since) arrivals.shift();
  $("rate").textContent = (arrivals.length / (RATE_WINDOW_MS / 1000)).toFixed(1);
}, 500);

// ------------------------------------------------------------------ start

async function start() {
  showRoom();
  // The first connection is not retried by the SDK (later losses are): retry it here.
  for (let attempt = 0; ; attempt++) {
    try {
      await client.connect();
      break;
    } catch (error) {
      document.body.dataset.state = "failed";
      $("state").textContent = "failed";
      const hint = error.status === 400 ? " (is the server in demo mode? make run starts it so)" : "";
      notice(`cannot connect: ${error.message}${hint}`, "error");
      if (error.status >= 400 && error.status < 500) return; // retrying will not help
      await new Promise((resolve) => setTimeout(resolve, Math.min(10000, 1000 * 2 ** attempt)));
    }
  }
  try {
    setOnline(await client.join(room));
  } catch (error) {
    client.rooms.add(room);
    notice(`join: ${error.message}`, "error");
  }
}

start();
