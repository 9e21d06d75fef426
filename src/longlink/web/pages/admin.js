// longlink admin dashboard: the HTTP API read every POLL_MS with the operator's API key.
//
// The key lives in this module's memory only: never in storage, a cookie or a URL, and it is
// sent only to this server's own API (same origin, Authorization header). Reloading forgets it.

const POLL_MS = 1500;

const $ = (id) => document.getElementById(id);
let key = null; // the API key, only here
let timer = null;
let previous = null; // the last /v1/stats answer, for rates

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { method = "GET", body } = {}) {
  if (key === null) throw new ApiError(401, "unauthorized", "no API key");
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    // reported below
  }
  if (!response.ok) {
    const error = answer?.error ?? {};
    throw new ApiError(response.status, error.code ?? `http_${response.status}`, error.message ?? response.statusText);
  }
  return answer;
}

// ------------------------------------------------------------------ signing in and out

$("login-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const field = $("key");
  key = field.value.trim();
  field.value = "";
  $("login-error").textContent = "";
  try {
    previous = await api("/v1/stats");
  } catch (error) {
    key = null;
    $("login-error").textContent = error.status === 401 ? "That key is not accepted." : error.message;
    return;
  }
  show("dashboard");
  poll();
});

$("signout").addEventListener("click", () => {
  key = null;
  previous = null;
  clearTimeout(timer);
  show("login");
});

function show(view) {
  document.body.dataset.view = view;
  $("login").hidden = view !== "login";
  $("dashboard").hidden = view !== "dashboard";
  $("signout").hidden = view !== "dashboard";
  status(view === "dashboard" ? "connecting…" : "");
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

// ------------------------------------------------------------------ polling

async function poll() {
  clearTimeout(timer);
  if (key === null) return;
  try {
    const [nodes, online, stats, reach] = await Promise.all([
      api("/v1/nodes"),
      api("/v1/online"),
      api("/v1/stats"),
      api("/v1/stats/reach"),
    ]);
    renderNodes(nodes.nodes);
    renderOnline(online);
    renderStats(stats, previous);
    renderReach(reach);
    previous = stats;
    status(`live · updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.polls = String(Number(document.body.dataset.polls ?? 0) + 1);
  } catch (error) {
    if (error.status === 401) {
      $("signout").click();
      $("login-error").textContent = "The key is no longer accepted.";
      return;
    }
    status(`cannot read the API: ${error.message}`, true);
  }
  if (key !== null) timer = setTimeout(poll, POLL_MS);
}

// ------------------------------------------------------------------ rendering

function renderNodes(nodes) {
  const now = Date.now();
  const rows = nodes
    .slice()
    .sort((a, b) => a.node.localeCompare(b.node))
    .map((node) => {
      const state = node.draining ? "draining" : node.healthy ? "healthy" : "stale";
      const age = node.reported_ms ? `${Math.max(0, (now - node.reported_ms) / 1000).toFixed(1)} s ago` : "–";
      return row(
        [node.node, node.region, node.connections, node.load.toFixed(2), state, age, node.ws ?? "–"],
        { 2: "num", 3: "num", 4: state },
      );
    });
  $("nodes").tBodies[0].replaceChildren(...rows);
  $("connections").textContent = String(nodes.reduce((sum, node) => sum + node.connections, 0));
}

function renderOnline(online) {
  $("online-total").textContent = `· ${online.total} connections online`;
  $("rooms").tBodies[0].replaceChildren(...countRows(online.rooms));
  $("areas").tBodies[0].replaceChildren(...countRows(online.areas));
}

function countRows(counts) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const rows = entries.slice(0, 50).map(([name, n]) => row([name, n], { 1: "num" }));
  if (entries.length > 50) rows.push(row([`… ${entries.length - 50} more`, ""]));
  if (rows.length === 0) rows.push(row(["none", ""]));
  return rows;
}

function renderStats(stats, before) {
  const seconds = before ? (stats.at_ms - before.at_ms) / 1000 : 0;
  const rate = (name) => (seconds > 0 ? ((stats[name] - before[name]) / seconds).toFixed(1) : "–");
  $("in-rate").textContent = rate("messages_in");
  $("out-rate").textContent = rate("deliveries");
  $("frame-rate").textContent = rate("frames_written");
  const batches = before ? stats.room_batches - before.room_batches : 0;
  const ratio =
    batches > 0
      ? (stats.batched_messages - before.batched_messages) / batches
      : stats.room_batches > 0
        ? stats.batched_messages / stats.room_batches
        : null;
  $("aggregation").textContent = ratio === null ? "–" : ratio.toFixed(1);
  const raw = stats.batch_bytes.none;
  const share = (bytes) => (raw > 0 ? `${Math.round((100 * bytes) / raw)}%` : "–");
  $("compression").textContent = `${share(stats.batch_bytes.zlib)} · ${share(stats.batch_bytes.br)}`;
  $("queues").textContent = `${stats.queue_depth.low} · ${stats.queue_depth.high}`;
}

function renderReach(reach) {
  const percent = (value) => (value === null ? "–" : `${(100 * value).toFixed(1)}%`);
  $("reach").textContent = `${percent(reach.first_try_reach)} · ${percent(reach.final_reach)}`;
  $("reach-detail").textContent =
    `${reach.deliveries} guaranteed deliveries in ${reach.window_s} s: ${reach.acked} acked, ${reach.retries} retries`;
}

function row(cells, classes = {}) {
  const tr = document.createElement("tr");
  cells.forEach((cell, index) => {
    const td = document.createElement("td");
    td.textContent = String(cell);
    if (classes[index]) td.className = classes[index];
    tr.append(td);
  });
  return tr;
}

// ------------------------------------------------------------------ push

$("push-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const result = $("push-result");
  const kind = $("push-kind").value;
  const ids = $("push-ids")
    .value.split(",")
    .map((id) => id.trim())
    .filter(Boolean);
  if (kind !== "all" && ids.length === 0) {
    result.textContent = "Name at least one target.";
    return;
  }
  const raw = $("push-data").value;
  let data;
  try {
    data = JSON.parse(raw);
  } catch {
    data = raw; // plain text goes as a JSON string
  }
  const body = {
    to: kind === "all" ? { all: true } : { [kind]: ids },
    data,
    priority: $("push-priority").value,
    guaranteed: $("push-guaranteed").checked,
  };
  try {
    const { msg_id: msgId } = await api("/v1/push", { method: "POST", body });
    result.replaceChildren(`Queued as ${msgId}`);
    const trace = document.createElement("button");
    trace.type = "button";
    trace.textContent = "trace it";
    trace.addEventListener("click", () => lookUp(msgId));
    result.append(trace);
  } catch (error) {
    result.textContent = `Refused: ${error.code}: ${error.message}`;
  }
});

// ------------------------------------------------------------------ trace

$("trace-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  lookUp($("trace-id").value.trim());
});

async function lookUp(msgId) {
  $("trace-id").value = msgId;
  const result = $("trace-result");
  const body = $("trace-events").tBodies[0];
  body.replaceChildren();
  if (!/^[0-9]{1,20}$/.test(msgId)) {
    result.textContent = "A message id is a decimal number.";
    return;
  }
  try {
    const trace = await api(`/v1/messages/${msgId}`);
    const start = trace.events[0]?.at_ms ?? 0;
    body.replaceChildren(
      ...trace.events.map(({ at_ms: at, event, ...detail }) =>
        row([at - start, event, Object.keys(detail).length ? JSON.stringify(detail) : ""], { 0: "num", 2: "detail" }),
      ),
    );
    const dropped = trace.dropped_events ? ` (${trace.dropped_events} more not kept)` : "";
    result.textContent = `${trace.events.length} events for ${trace.msg_id}${dropped}`;
  } catch (error) {
    result.textContent = error.status === 404 ? `No trace of ${msgId}: unknown, or past retention.` : error.message;
  }
}
