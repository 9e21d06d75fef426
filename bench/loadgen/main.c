/* loadgen.c: the benchmark's load generator (docs/benchmarks.md, `make bench`).
 *
 * One process, one epoll loop, one core: N client connections to one server on
 * 127.0.0.1, and a publisher. Driven by one-line commands on stdin; each command
 * is answered by one JSON line on stdout (`run` also prints {"mark":1} and
 * {"mark":2} when it starts and stops counting, so the driver can read the
 * server's CPU at the same instants).
 *
 *   connect TOTAL RATE CONC   open subscribers until TOTAL are ready: RATE new
 *                             connections a second (0: as fast as they come), at
 *                             most CONC handshakes at once
 *   run RATE SECONDS WARMUP SAMPLES TARGET [DRAIN]
 *                             publish RATE messages/s (0: saturate, --window in
 *                             flight) to TARGET (room | users | none) for SECONDS;
 *                             count deliveries from WARMUP to SECONDS; SAMPLES
 *                             connections, spread over the join order, decode
 *                             everything and time each message from its push;
 *                             then wait up to DRAIN seconds for the rest
 *   readmit TIMEOUT           wait (TIMEOUT s at most) until every subscriber lost since
 *                             the last readmit is back (--reconnect 1): how many, how
 *                             fast, re-admissions per 100 ms
 *   close                     close every subscriber (RST)
 *   quit
 *
 * Protocols (--proto):
 *   ws        plain WebSocket: subscribers GET /sub, the publisher GET /pub and
 *             sends binary messages the server broadcasts to every subscriber
 *   socketio  engine.io v4 over WebSocket, namespace "/", subscribers emit
 *             join(room) with an ack, the publisher emits "pub" events; pings
 *             ("2") are answered ("3")
 *   longlink  WebSocket /ws (subprotocol longlink.v1), AUTH with a token from
 *             --tokens; the publisher is POST /v1/push/batch on --http-port
 *   longlink-tcp, longlink-stream
 *             the same over TCP or the HTTP stream (connect only: idle memory)
 *
 * Options: --port P (--alt-ports P2,P3: subscriber i starts on the (i mod n)-th),
 * --proto, --tokens FILE ("user token" lines), --codec br|zlib|none (longlink AUTH),
 * --http-port H (--http-alt-ports H2,...: the publisher's next connection goes to the
 * next), --api-key, --room, --window W (saturated: messages in flight), --per-request K
 * (saturated longlink: messages per request), --http-conns N, --lowat BYTES
 * (SO_RCVLOWAT of the counting connections), --reconnect 1 (a lost subscriber comes
 * back: reconnect.c).
 *
 * Every message carries its push time: "@" and 19 digits of CLOCK_MONOTONIC
 * nanoseconds, padded to 100 bytes. Counting: a sample connection decodes every
 * message (longlink: decompress the BATCH, walk the inner frames); the others
 * read only WebSocket frame headers and skip the payload, but for longlink, where
 * each connection counts the messages of its own BATCH frames: a compressed batch
 * is decompressed once and its count found again by the frame's fingerprint for
 * every other member that got the same bytes (wire.c, ll_count).
 *
 * Build: gcc -O2 -o loadgen main.c wire.c reconnect.c -lz -lbrotlidec
 */
#include "loadgen.h"

/* ---------------------------------------------------------------- options */
int opt_port, opt_proto = P_WS;
static int opt_window = 32, opt_per_request = 8;
static int opt_http_port, http_ports[MAX_PORTS], nhttp_ports, http_port_i;
static int opt_http_conns = 8, opt_lowat = 0;
const char *opt_room = "bench", *opt_codec = "none";
static const char *opt_tokens = NULL;
static const char *opt_api_key = "bench-key";

/* ---------------------------------------------------------------- state */
int ep;
uint8_t *rbuf, *zbuf;
size_t zcap = 8u << 20;
static conn **subs;
static uint32_t nsubs, subcap;
char **tokens;
static char **users;
uint32_t ntokens;
static conn *pubc;                   /* ws / socketio publisher */
static conn *httpc[MAX_HTTP];
static int nhttp;

uint32_t *lat;                /* push -> receipt, microseconds */
uint32_t nlat;
int recording_lat;
uint64_t lost;                /* ready connections that closed */
uint64_t rx_msgs;             /* messages counted on every subscriber (this run) */
uint64_t max_gap_ns;          /* longest silence between two messages at a sample */
static conn **samples;               /* this run's sample connections */
static uint32_t nsamples;
static uint64_t last_req_ns;

/* connect command */
static int connecting;
uint32_t conn_ready, conn_failed, conn_pending;
static uint32_t conn_target, conn_started, conn_conc;
static double conn_rate;
uint64_t conn_last_ns;
static uint64_t conn_begin_ns;
uint32_t *conn_ms;            /* connect latencies of this command, ms x 10 */
uint32_t nconn_ms;

/* run command */
enum phase { R_IDLE, R_PUBSETUP, R_RUN, R_DRAIN };
static int phase = R_IDLE;
static double run_rate, run_seconds, run_warmup, run_drain;
static int run_target, run_samples, marked;
uint64_t last_rx_ns, rx_total;
static uint64_t run_begin_ns, pub_setup_ns, drain_begin_ns;
uint64_t accepted, refused, http_errors;
static uint64_t published, skipped;
static uint64_t *m1_msgs, *m1_frames, *m2_msgs, *m2_frames;
static struct rusage ru1, ru2;
static uint64_t mark1_ns, mark2_ns;
uint32_t *rtt;                /* request round trips, microseconds */
uint32_t nrtt, rttcap;
static uint64_t user_cursor;

static int readmitting;
static uint64_t readmit_until_ns;
static const char *alt_ports, *http_alt_ports;

static char linebuf[4096];
static size_t linelen;
static int quitting;

/* ---------------------------------------------------------------- publisher */

static uint64_t min_sample_msgs(void) {
    uint64_t m = UINT64_MAX;
    for (uint32_t i = 0; i < nsamples; i++) {
        conn *c = samples[i];
        if (c->state == S_READY && c->msgs < m) m = c->msgs;
    }
    return m == UINT64_MAX ? published : m;
}

/* Messages published and not yet received (room: by the slowest sample; users: by anyone). */
static uint64_t inflight(void) {
    uint64_t have = run_target == T_USERS ? rx_msgs : min_sample_msgs();
    return published > have ? published - have : 0;
}

static void publish_ws(uint64_t count) {
    char payload[PAYLOAD], text[PAYLOAD + 64];
    for (uint64_t i = 0; i < count; i++) {
        make_payload(payload, now_ns());
        if (opt_proto == P_SOCKETIO) {
            int n = snprintf(text, sizeof text, "42[\"pub\",\"%.*s\"]", PAYLOAD, payload);
            ws_send(pubc, 1, text, (size_t)n);
        } else {
            ws_send(pubc, 2, payload, PAYLOAD);
        }
        published++;
    }
    flush_out(pubc);
}

static int publish_http(conn *h, uint64_t count) {
    static char *body;
    static size_t bodycap;
    size_t need = 64 + count * (PAYLOAD + 160);
    if (need > bodycap) {
        bodycap = need * 2;
        body = xrealloc(body, bodycap);
    }
    size_t n = (size_t)sprintf(body, "{\"messages\":[");
    char payload[PAYLOAD];
    for (uint64_t i = 0; i < count; i++) {
        make_payload(payload, now_ns());
        if (run_target == T_USERS) {
            const char *user = users[user_cursor++ % nsubs];
            n += (size_t)sprintf(body + n, "%s{\"to\":{\"users\":[\"%s\"]},\"data\":\"%.*s\"}",
                                 i ? "," : "", user, PAYLOAD, payload);
        } else {
            n += (size_t)sprintf(body + n, "%s{\"to\":{\"rooms\":[\"%s\"]},\"data\":\"%.*s\"}",
                                 i ? "," : "", opt_room, PAYLOAD, payload);
        }
    }
    n += (size_t)sprintf(body + n, "]}");
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "POST /v1/push/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      opt_api_key, n);
    out_append(h, head, (size_t)hl);
    out_append(h, body, n);
    h->req_msgs = (uint32_t)count;
    h->req_ns = now_ns();
    published += count;
    flush_out(h);
    return 1;
}

/* The API port for a new publisher connection: the next of --http-port, --http-alt-ports. */
static int next_http_port(void) {
    return http_ports[http_port_i++ % nhttp_ports];
}

/* Reopen the publisher's HTTP connections the server closed (keep-alive timeout). */
static void ensure_http(void) {
    while (nhttp < opt_http_conns) {
        httpc[nhttp] = conn_open(K_HTTP, next_http_port());
        if (!httpc[nhttp]) die("connect (http)");
        nhttp++;
    }
    for (int i = 0; i < nhttp; i++) {
        if (httpc[i]->state != S_CLOSED) continue;
        free(httpc[i]->out);
        free(httpc[i]);
        httpc[i] = conn_open(K_HTTP, next_http_port());
        if (!httpc[i]) die("connect (http)");
    }
}

static conn *idle_http(void) {
    for (int i = 0; i < nhttp; i++)
        if (httpc[i]->state == S_READY && httpc[i]->req_msgs == 0 && httpc[i]->outlen == 0)
            return httpc[i];
    ensure_http();
    return NULL;
}

static int longlink_proto(void) { return opt_proto >= P_LONGLINK; }

static void publish_tick(uint64_t now) {
    if (run_target == T_NONE) return;
    double elapsed = (double)(now - run_begin_ns) / 1e9;
    if (elapsed >= run_seconds) return;
    if (run_rate > 0) {
        uint64_t due = (uint64_t)(elapsed * run_rate) + 1;
        if (due <= published + skipped) return;
        uint64_t want = due - published - skipped;
        /* never more than a second of messages (or --window) in flight: past that the
           server cannot keep up, and the messages due are skipped (reported) */
        uint64_t cap = (uint64_t)run_rate > (uint64_t)opt_window ? (uint64_t)run_rate : (uint64_t)opt_window;
        if (inflight() > cap) {
            skipped += want;
            return;
        }
        if (longlink_proto()) {
            /* a request every 10 ms (rate / 100 messages), up to 1000 messages each */
            uint64_t per = (uint64_t)(run_rate / 100);
            if (per < 1) per = 1;
            while (want >= per || (want && now - last_req_ns >= 10000000ull)) {
                conn *h = idle_http();
                if (!h) return;
                uint64_t k = want < 1000 ? want : 1000;
                publish_http(h, k);
                last_req_ns = now;
                want -= k;
            }
        } else {
            if (pubc->outlen > 65536) return;
            publish_ws(want);
        }
        return;
    }
    /* saturate: keep --window messages in flight */
    uint64_t fl = inflight();
    if (fl >= (uint64_t)opt_window) return;
    uint64_t room = (uint64_t)opt_window - fl;
    if (longlink_proto()) {
        while (room > 0) {
            conn *h = idle_http();
            if (!h) return;
            uint64_t k = room < (uint64_t)opt_per_request ? room : (uint64_t)opt_per_request;
            publish_http(h, k);
            room -= k;
        }
    } else {
        if (pubc->outlen > 65536) return;
        publish_ws(room);
    }
}

/* ---------------------------------------------------------------- commands */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint32_t *v, uint32_t n, double q) {
    if (!n) return -1;
    uint32_t i = (uint32_t)(q * n);
    if (i >= n) i = n - 1;
    return v[i];
}

static conn *new_sub(void) {
    int i = nports ? (int)(nsubs % (uint32_t)nports) : 0;
    conn *c = conn_open(K_SUB, nports ? ports[i] : opt_port);
    if (!c) return NULL;
    c->port_i = (uint8_t)i;
    if (nsubs == subcap) {
        subcap = subcap ? subcap * 2 : 1024;
        subs = xrealloc(subs, subcap * sizeof *subs);
    }
    c->idx = nsubs;
    subs[nsubs++] = c;
    return c;
}

static void connect_tick(uint64_t now) {
    if (!connecting) return;
    double elapsed = (double)(now - conn_begin_ns) / 1e9;
    while (conn_started < conn_target && conn_pending < conn_conc) {
        if (conn_rate > 0 && (double)conn_started >= elapsed * conn_rate + 1) break;
        conn_started++;
        conn_pending++;
        if (!new_sub()) {
            conn_failed++;
            conn_pending--;
        }
    }
    if (conn_started >= conn_target && conn_pending == 0) {
        qsort(conn_ms, nconn_ms, sizeof *conn_ms, cmp_u32);
        double secs = (double)((conn_last_ns > conn_begin_ns ? conn_last_ns : now) - conn_begin_ns) / 1e9;
        uint32_t ready = 0;
        for (uint32_t i = 0; i < nsubs; i++) ready += subs[i]->state == S_READY;
        printf("{\"ok\":\"connect\",\"conns\":%u,\"new\":%u,\"failed\":%u,\"seconds\":%.3f,"
               "\"per_s\":%.1f,\"p50_ms\":%.1f,\"p99_ms\":%.1f,\"max_ms\":%.1f,\"lost\":%llu}\n",
               ready, conn_ready, conn_failed, secs, secs > 0 ? conn_ready / secs : 0.0,
               pct(conn_ms, nconn_ms, 0.5) / 10, pct(conn_ms, nconn_ms, 0.99) / 10,
               nconn_ms ? conn_ms[nconn_ms - 1] / 10.0 : -1.0, (unsigned long long)lost);
        fflush(stdout);
        free(conn_ms);
        conn_ms = NULL;
        connecting = 0;
    }
}

static void cmd_connect(uint32_t total, double rate, uint32_t conc) {
    connecting = 1;
    conn_target = total > nsubs ? total - nsubs : 0;
    conn_started = conn_ready = conn_failed = conn_pending = 0;
    conn_rate = rate;
    conn_conc = conc ? conc : 1;
    conn_begin_ns = conn_last_ns = now_ns();
    conn_ms = malloc((conn_target + 1) * sizeof *conn_ms);
    nconn_ms = 0;
}

/* messages a longlink connection has, from its frames and the best sample record */
static conn *reference(void) {
    conn *best = NULL;
    for (uint32_t i = 0; i < nsubs; i++) {
        conn *c = subs[i];
        if (c->recording && (!best || c->reclen > best->reclen)) best = c;
    }
    return best;
}

/* The messages a connection had (every connection counts its own; see ll_count). */
static uint64_t msgs_of(conn *c, uint64_t frames, uint64_t msgs, conn *ref) {
    (void)c, (void)frames, (void)ref;
    return msgs;
}

/* SO_RCVLOWAT on the connections that only count: the kernel reports one readable
   once this many bytes wait, so one read takes several messages (1: every byte). */
static void set_lowat(int bytes) {
    if (opt_lowat <= 0) return;
    int v = bytes > 0 ? bytes : 1;
    for (uint32_t i = 0; i < nsubs; i++) {
        conn *c = subs[i];
        if (!c->sample && c->state == S_READY) setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v);
    }
}

/* Read what waits on every counting connection, below SO_RCVLOWAT too (a read takes
   what is there): the counts at a mark are then what has arrived, not what was read. */
static void sweep(void) {
    if (opt_lowat <= 0) return;
    for (uint32_t i = 0; i < nsubs; i++) {
        conn *c = subs[i];
        if (!c->sample && c->state == S_READY) on_readable(c);
    }
}

static void snapshot(uint64_t *msgs, uint64_t *frames) {
    sweep();
    for (uint32_t i = 0; i < nsubs; i++) {
        msgs[i] = subs[i]->msgs;
        frames[i] = subs[i]->frames;
    }
}

static void start_counting(void) {
    max_gap_ns = 0;
    for (uint32_t i = 0; i < nsubs; i++) {
        conn *c = subs[i];
        c->last_msg_ns = 0;
        c->msgs = c->frames = 0;
        c->sample = c->recording = 0;
        c->reclen = 0;
    }
    /* samples spread over the join order: the servers write a room roughly in it */
    uint32_t s = run_target == T_USERS ? nsubs : (uint32_t)run_samples;
    if (s > nsubs) s = nsubs;
    free(samples);
    samples = calloc(s + 1, sizeof *samples);
    nsamples = s;
    for (uint32_t k = 0; k < s; k++) {
        conn *c = subs[(uint64_t)k * nsubs / s];
        samples[k] = c;
        c->sample = 1;
        c->recording = longlink_proto() && run_target == T_ROOM && k < 4;
    }
    nlat = 0;
    nrtt = 0;
    rx_msgs = 0;
    last_req_ns = 0;
    if (run_target != T_USERS) set_lowat(opt_lowat);
    published = accepted = refused = skipped = http_errors = 0;
    user_cursor = 0;
    marked = 0;
    recording_lat = 0;
    run_begin_ns = now_ns();
    phase = R_RUN;
}

static int pub_ready(void) {
    if (run_target == T_NONE) return 1;
    if (longlink_proto()) {
        for (int i = 0; i < nhttp; i++)
            if (httpc[i]->state != S_READY) return 0;
        return 1;
    }
    return pubc && pubc->state == S_READY;
}

static void cmd_run(double rate, double seconds, double warmup, int samples, int target, double drain) {
    run_rate = rate;
    run_seconds = seconds;
    run_warmup = warmup;
    run_samples = samples;
    run_target = target;
    run_drain = drain;
    free(m1_msgs), free(m1_frames), free(m2_msgs), free(m2_frames);
    m1_msgs = calloc(nsubs + 1, 8), m1_frames = calloc(nsubs + 1, 8);
    m2_msgs = calloc(nsubs + 1, 8), m2_frames = calloc(nsubs + 1, 8);
    if (target != T_NONE) {
        if (longlink_proto()) {
            ensure_http();
        } else if (!pubc || pubc->state == S_CLOSED) {
            pubc = conn_open(K_PUB, opt_port);
            if (!pubc) die("connect (publisher)");
        }
    }
    pub_setup_ns = now_ns();
    phase = R_PUBSETUP;
}

static void report(void) {
    conn *ref = reference();
    double window = (double)(mark2_ns - mark1_ns) / 1e9;
    uint64_t delivered = 0, final_total = 0, minw = UINT64_MAX, maxw = 0;
    uint32_t complete = 0, ready = 0;
    /* complete: every message the server took (longlink: answered 202) */
    uint64_t want = run_target == T_USERS ? 0 : longlink_proto() ? accepted : published;
    for (uint32_t i = 0; i < nsubs; i++) {
        conn *c = subs[i];
        uint64_t a = msgs_of(c, m1_frames[i], m1_msgs[i], ref);
        uint64_t b = msgs_of(c, m2_frames[i], m2_msgs[i], ref);
        uint64_t f = msgs_of(c, c->frames, c->msgs, ref);
        delivered += b - a;
        final_total += f;
        if (b - a < minw) minw = b - a;
        if (b - a > maxw) maxw = b - a;
        if (c->state == S_READY) ready++;
        if (want && f >= want) complete++;
    }
    uint64_t ref_frames = 0, ref_msgs = 0;
    if (ref) {
        ref_frames = ref->frames;
        ref_msgs = ref->msgs;
    } else {
        for (uint32_t i = 0; i < nsubs; i++)
            if (subs[i]->sample && subs[i]->frames > ref_frames) {
                ref_frames = subs[i]->frames;
                ref_msgs = subs[i]->msgs;
            }
    }
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    qsort(rtt, nrtt, sizeof *rtt, cmp_u32);
    double cpu_user = (double)(ru2.ru_utime.tv_sec - ru1.ru_utime.tv_sec) +
                      (double)(ru2.ru_utime.tv_usec - ru1.ru_utime.tv_usec) / 1e6;
    double cpu_sys = (double)(ru2.ru_stime.tv_sec - ru1.ru_stime.tv_sec) +
                     (double)(ru2.ru_stime.tv_usec - ru1.ru_stime.tv_usec) / 1e6;
    printf("{\"ok\":\"run\",\"conns\":%u,\"ready\":%u,\"lost\":%llu,\"window_s\":%.4f,"
           "\"delivered\":%llu,\"deliveries_s\":%.1f,\"min_conn\":%llu,\"max_conn\":%llu,"
           "\"published\":%llu,\"accepted\":%llu,\"refused\":%llu,\"skipped\":%llu,"
           "\"final_total\":%llu,\"complete\":%u,\"msgs_per_frame\":%.2f,"
           "\"latencies\":%u,\"p50_ms\":%.2f,\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
           "\"max_gap_ms\":%.2f,\"rtt_p50_ms\":%.2f,\"rtt_p99_ms\":%.2f,\"cpu\":%.4f,\"cpu_user\":%.4f,\"cpu_sys\":%.4f}\n",
           nsubs, ready, (unsigned long long)lost, window, (unsigned long long)delivered,
           window > 0 ? delivered / window : 0.0, (unsigned long long)(minw == UINT64_MAX ? 0 : minw),
           (unsigned long long)maxw, (unsigned long long)published, (unsigned long long)accepted,
           (unsigned long long)refused, (unsigned long long)skipped,
           (unsigned long long)final_total, want ? complete : 0,
           ref_frames ? (double)ref_msgs / ref_frames : 0.0, nlat, pct(lat, nlat, 0.5) / 1000,
           pct(lat, nlat, 0.9) / 1000, pct(lat, nlat, 0.99) / 1000,
           nlat ? lat[nlat - 1] / 1000.0 : -1.0, max_gap_ns / 1e6, pct(rtt, nrtt, 0.5) / 1000,
           pct(rtt, nrtt, 0.99) / 1000, window > 0 ? (cpu_user + cpu_sys) / window : 0.0,
           cpu_user, cpu_sys);
    fflush(stdout);
}

static void run_tick(uint64_t now) {
    if (phase == R_PUBSETUP) {
        if (pub_ready()) {
            start_counting();
        } else if (now - pub_setup_ns > 10000000000ull) {
            printf("{\"ok\":\"run\",\"error\":\"publisher did not connect\"}\n");
            fflush(stdout);
            phase = R_IDLE;
        }
        return;
    }
    if (phase == R_RUN) {
        double elapsed = (double)(now - run_begin_ns) / 1e9;
        if (marked == 0 && elapsed >= run_warmup) {
            getrusage(RUSAGE_SELF, &ru1);
            snapshot(m1_msgs, m1_frames);
            mark1_ns = now;
            marked = 1;
            recording_lat = 1;
            printf("{\"mark\":1}\n");
            fflush(stdout);
        }
        if (marked == 1 && elapsed >= run_seconds) {
            getrusage(RUSAGE_SELF, &ru2);
            snapshot(m2_msgs, m2_frames);
            mark2_ns = now;
            marked = 2;
            recording_lat = 0;
            printf("{\"mark\":2}\n");
            fflush(stdout);
            phase = R_DRAIN;
            drain_begin_ns = now;
            set_lowat(1);
            return;
        }
        publish_tick(now);
        return;
    }
    if (phase == R_DRAIN) {
        double waited = (double)(now - drain_begin_ns) / 1e9;
        int outstanding = 0;
        for (int i = 0; i < nhttp; i++) outstanding |= httpc[i]->req_msgs != 0;
        int caught_up = run_target == T_NONE || inflight() == 0;
        int quiet = now - last_rx_ns > 200000000ull;
        if ((!outstanding && quiet && (caught_up || waited > 0.5)) || waited >= run_drain) {
            report();
            phase = R_IDLE;
        }
    }
}

static void cmd_close(void) {
    struct linger lg = {1, 0};
    for (uint32_t i = 0; i < nsubs; i++) {
        conn *c = subs[i];
        if (c->fd >= 0) {  /* a deliberate close: not counted as lost */
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
        }
        free(c->in);
        free(c->out);
        free(c->rec);
        free(c);
    }
    nsubs = 0;
    free(samples);
    samples = NULL;
    nsamples = 0;
    conn *others[MAX_HTTP + 1];
    int nothers = 0;
    for (int i = 0; i < nhttp; i++) others[nothers++] = httpc[i];
    if (pubc) others[nothers++] = pubc;
    for (int i = 0; i < nothers; i++) {
        conn *c = others[i];
        if (c->fd >= 0) {
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
        }
        free(c->in);
        free(c->out);
        free(c);
    }
    nhttp = 0;
    pubc = NULL;
    reconnect_forget(1);
    printf("{\"ok\":\"close\"}\n");
    fflush(stdout);
}

static void readmit_tick(uint64_t now) {
    if (!readmitting) return;
    int all_back = rc_lost > 0 && rc_back >= rc_lost;
    if (!all_back && now < readmit_until_ns) return;
    uint32_t last = RC_BUCKETS;
    while (last > 0 && rc_timeline[last - 1] == 0) last--;
    printf("{\"ok\":\"readmit\",\"lost\":%u,\"back\":%u,\"attempts\":%u,\"seconds\":%.3f,"
           "\"bucket_ms\":100,\"timeline\":[",
           rc_lost, rc_back, rc_attempts,
           rc_last_ready_ns > rc_first_loss_ns ? (double)(rc_last_ready_ns - rc_first_loss_ns) / 1e9 : -1.0);
    for (uint32_t i = 0; i < last; i++) printf("%s%u", i ? "," : "", rc_timeline[i]);
    printf("]}\n");
    fflush(stdout);
    reconnect_forget(0);
    readmitting = 0;
}

static int target_of(const char *s) {
    if (strcmp(s, "room") == 0) return T_ROOM;
    if (strcmp(s, "users") == 0) return T_USERS;
    return T_NONE;
}

static void command(char *line) {
    char word[32] = "";
    sscanf(line, "%31s", word);
    if (strcmp(word, "connect") == 0) {
        unsigned total = 0, conc = 200;
        double rate = 0;
        sscanf(line, "%*s %u %lf %u", &total, &rate, &conc);
        if (total > ntokens && longlink_proto()) {
            printf("{\"ok\":\"connect\",\"error\":\"only %u tokens\"}\n", ntokens);
            fflush(stdout);
            return;
        }
        cmd_connect(total, rate, conc);
    } else if (strcmp(word, "run") == 0) {
        double rate = 0, seconds = 5, warmup = 1, drain = 5;
        int samples = 32;
        char target[32] = "room";
        sscanf(line, "%*s %lf %lf %lf %d %31s %lf", &rate, &seconds, &warmup, &samples, target, &drain);
        cmd_run(rate, seconds, warmup, samples, target_of(target), drain);
    } else if (strcmp(word, "readmit") == 0) {
        double timeout = 30;
        sscanf(line, "%*s %lf", &timeout);
        readmitting = 1;
        readmit_until_ns = now_ns() + (uint64_t)(timeout * 1e9);
    } else if (strcmp(word, "close") == 0) {
        cmd_close();
    } else if (strcmp(word, "quit") == 0) {
        quitting = 1;
    } else if (word[0]) {
        printf("{\"ok\":\"error\",\"error\":\"unknown command\"}\n");
        fflush(stdout);
    }
}

static void on_stdin(void) {
    ssize_t r = read(0, linebuf + linelen, sizeof linebuf - 1 - linelen);
    if (r <= 0) {
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) quitting = 1;
        return;
    }
    linelen += (size_t)r;
    char *nl;
    while ((nl = memchr(linebuf, '\n', linelen))) {
        *nl = 0;
        command(linebuf);
        size_t used = (size_t)(nl + 1 - linebuf);
        memmove(linebuf, nl + 1, linelen - used);
        linelen -= used;
    }
    if (linelen == sizeof linebuf - 1) linelen = 0;
}

static void load_tokens(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint32_t cap_t = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        char *space = strchr(line, ' ');
        if (!space) continue;
        *space = 0;
        if (ntokens == cap_t) {
            cap_t = cap_t ? cap_t * 2 : 1024;
            tokens = xrealloc(tokens, cap_t * sizeof *tokens);
            users = xrealloc(users, cap_t * sizeof *users);
        }
        users[ntokens] = strdup(line);
        tokens[ntokens++] = strdup(space + 1);
    }
    free(line);
    fclose(f);
}

static int proto_of(const char *s) {
    if (strcmp(s, "ws") == 0) return P_WS;
    if (strcmp(s, "socketio") == 0) return P_SOCKETIO;
    if (strcmp(s, "longlink") == 0) return P_LONGLINK;
    if (strcmp(s, "longlink-tcp") == 0) return P_LONGLINK_TCP;
    if (strcmp(s, "longlink-stream") == 0) return P_LONGLINK_STREAM;
    fprintf(stderr, "loadgen: unknown protocol %s\n", s);
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) opt_port = atoi(v);
        else if (!strcmp(k, "--http-port")) opt_http_port = atoi(v);
        else if (!strcmp(k, "--http-alt-ports")) http_alt_ports = v;
        else if (!strcmp(k, "--alt-ports")) alt_ports = v;
        else if (!strcmp(k, "--reconnect")) opt_reconnect = atoi(v);
        else if (!strcmp(k, "--proto")) opt_proto = proto_of(v);
        else if (!strcmp(k, "--room")) opt_room = v;
        else if (!strcmp(k, "--tokens")) opt_tokens = v;
        else if (!strcmp(k, "--codec")) opt_codec = v;
        else if (!strcmp(k, "--api-key")) opt_api_key = v;
        else if (!strcmp(k, "--window")) opt_window = atoi(v);
        else if (!strcmp(k, "--per-request")) opt_per_request = atoi(v);
        else if (!strcmp(k, "--lowat")) opt_lowat = atoi(v);
        else if (!strcmp(k, "--http-conns")) opt_http_conns = atoi(v) < MAX_HTTP ? atoi(v) : MAX_HTTP;
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", k);
            return 2;
        }
    }
    if (!opt_port) {
        fprintf(stderr, "usage: loadgen --port P [--proto ws|socketio|longlink|longlink-tcp|"
                        "longlink-stream] [--tokens FILE] [--http-port H] ...\n");
        return 2;
    }
    ports[0] = opt_port;
    nports = 1;
    if (alt_ports) parse_ports(alt_ports, ports, &nports);
    http_ports[0] = opt_http_port;
    nhttp_ports = 1;
    if (http_alt_ports) parse_ports(http_alt_ports, http_ports, &nhttp_ports);
    srand48((long)now_ns());
    if (opt_tokens) load_tokens(opt_tokens);
    rbuf = malloc(BUF_SIZE);
    zbuf = malloc(zcap);
    lat = malloc(MAX_LAT * sizeof *lat);
    if (!rbuf || !zbuf || !lat) die("out of memory");
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
    printf("{\"ok\":\"ready\"}\n");
    fflush(stdout);
    struct epoll_event evs[1024];
    while (!quitting) {
        int busy = connecting || phase != R_IDLE || readmitting || reconnect_pending();
        int n = epoll_wait(ep, evs, 1024, busy ? 1 : 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                on_stdin();
                continue;
            }
            if (c->fd < 0) continue;  /* closed in this batch */
            if (c->state == S_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
                continue;
            }
            if (evs[i].events & EPOLLOUT) flush_out(c);
            if (c->fd >= 0 && evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        }
        uint64_t now = now_ns();
        connect_tick(now);
        reconnect_tick(now);
        run_tick(now);
        readmit_tick(now);
    }
    return 0;
}
