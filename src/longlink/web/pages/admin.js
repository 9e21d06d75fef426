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
    const [nodes, online, stats, reach, quality] = await Promise.all([
      api("/v1/nodes"),
      api("/v1/online"),
      api("/v1/stats"),
      api("/v1/stats/reach"),
      api("/v1/quality"),
    ]);
    renderNodes(nodes.nodes);
    renderOnline(online);
    renderStats(stats, previous);
    renderReach(reach);
    renderQuality(quality, stats);
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

// ------------------------------------------------------------------ connection quality

// Round trips (p90) above this are ranked down by /v1/connect (LONGLINK_QUALITY_BAD_RTT_MS's
// default, docs/quality.md); the panel marks them.
const BAD_RTT_MS = 300;
const WARN_RTT_MS = 100;

/** GET /v1/quality (the last minute, per node and transport) and the REPORT counters. */
function renderQuality(quality, stats) {
  const rows = quality.rows;
  $("quality-window").textContent = `· last ${Math.round(quality.window_s)} s, every node`;
  const reports = stats.quality_reports ?? { accepted: 0, dropped: 0 };
  $("q-reports").textContent = `${reports.accepted} · ${reports.dropped}`;
  $("q-reports-detail").textContent = `accepted · dropped; ${stats.kernel_samples ?? 0} TCP_INFO samples`;
  const body = $("quality").tBodies[0];
  if (rows.length === 0) {
    for (const id of ["q-rtt", "q-connect", "q-reconnects", "q-failures"]) $(id).textContent = "–";
    body.replaceChildren(row(["no measurements yet: clients report right after connecting", ""]));
    return;
  }
  // Every node and transport together: the bucket counts add up, the quantiles are read off.
  const rtt = sumCounts(rows.map((r) => r.rtt_counts));
  const connect = sumCounts(rows.map((r) => r.connect_counts));
  const connections = rows.reduce((sum, r) => sum + r.connections, 0);
  const reconnects = rows.reduce((sum, r) => sum + r.reconnects_per_hour, 0);
  $("q-rtt").textContent = pair(quantile(rtt, quality.rtt_bounds_ms, 0.5), quantile(rtt, quality.rtt_bounds_ms, 0.9));
  $("q-connect").textContent = pair(
    quantile(connect, quality.connect_bounds_ms, 0.5),
    quantile(connect, quality.connect_bounds_ms, 0.9),
  );
  $("q-reconnects").textContent = connections > 0 ? (reconnects / connections).toFixed(2) : "–";
  $("q-failures").textContent = rows.reduce((sum, r) => sum + r.failures_per_hour, 0).toFixed(1);
  body.replaceChildren(
    ...rows.map((r) => {
      const tr = row(
        [
          r.node,
          r.region,
          r.transport,
          r.connections,
          [r.rtt_ms.p50, r.rtt_ms.p90, r.rtt_ms.p99].map(ms).join(" · ") + (kernelOnly(r) ? " *" : ""),
          "",
          [r.kernel_rtt_ms.p50, r.kernel_rtt_ms.p90].map(ms).join(" · "),
          [r.connect_ms.p50, r.connect_ms.p90].map(ms).join(" · "),
          "",
          r.reconnects_per_hour.toFixed(1),
          r.failures_per_hour.toFixed(1),
          `${r.rtt_samples} · ${r.kernel_samples}`,
        ],
        { 3: "num", 4: `num ${rttClass(r.rtt_ms.p90)}`, 6: "num", 7: "num", 9: "num", 10: "num", 11: "num" },
      );
      tr.dataset.node = r.node;
      tr.dataset.transport = r.transport;
      tr.cells[5].append(histogram(r.rtt_counts, quality.rtt_bounds_ms, rttClass));
      tr.cells[8].append(histogram(r.connect_counts, quality.connect_bounds_ms, () => ""));
      tr.cells[11].title = "client round trips · kernel (TCP_INFO) samples";
      if (kernelOnly(r)) tr.cells[4].title = "no client round trip in the window: the kernel's (TCP_INFO)";
      return tr;
    }),
  );
}

/** No client reported a round trip in the window: the row's RTT is the kernel's (TCP_INFO). */
const kernelOnly = (r) => r.rtt_samples === 0 && r.kernel_samples > 0;

function sumCounts(lists) {
  const total = [];
  for (const counts of lists) counts.forEach((n, i) => (total[i] = (total[i] ?? 0) + n));
  return total;
}

/** The `q` quantile of bucket counts: the bucket's upper bound (the overflow: twice the last). */
function quantile(counts, bounds, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= rank) return i < bounds.length ? bounds[i] : bounds.at(-1) * 2;
  }
  return bounds.at(-1) * 2;
}

const ms = (value) => (value == null ? "–" : String(Math.round(value)));
const pair = (a, b) => `${ms(a)} · ${ms(b)}`;
const rttClass = (value) => (value == null ? "" : value > BAD_RTT_MS ? "bad" : value > WARN_RTT_MS ? "warn" : "good");

/** A bar per bucket, heights relative to the fullest; the title says "≤ bound ms: count". */
function histogram(counts, bounds, classOf) {
  const box = document.createElement("span");
  box.className = "hist";
  const top = Math.max(1, ...counts);
  const total = counts.reduce((a, b) => a + b, 0);
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", `${total} samples`);
  counts.forEach((n, i) => {
    const bar = document.createElement("i");
    const label = i < bounds.length ? `≤ ${bounds[i]} ms` : `> ${bounds.at(-1)} ms`;
    bar.title = `${label}: ${n}`;
    bar.style.height = n > 0 ? `${Math.max(8, Math.round((100 * n) / top))}%` : "0";
    const kind = classOf(i < bounds.length ? bounds[i] : bounds.at(-1) * 2);
    if (kind) bar.className = kind;
    box.append(bar);
  });
  return box;
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
