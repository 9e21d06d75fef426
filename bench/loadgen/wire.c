/* wire.c: the load generator's connections: connecting, writing (WebSocket frames,
 * longlink frames, the publisher's payloads), reading and decoding each protocol
 * (WebSocket, engine.io / socket.io, longlink over WebSocket, TCP or the HTTP stream,
 * the publisher's HTTP answers). main.c has the commands, the publisher and the loop.
 */
#include "loadgen.h"

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q && n) die("out of memory");
    return q;
}

/* ---------------------------------------------------------------- output buffers */

void out_append(conn *c, const void *data, size_t n) {
    if (c->outlen + n > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 256;
        while (cap < c->outlen + n) cap *= 2;
        c->out = xrealloc(c->out, cap);
        c->outcap = (uint32_t)cap;
    }
    memcpy(c->out + c->outlen, data, n);
    c->outlen += (uint32_t)n;
}

static void conn_close(conn *c, int failed);

static void set_events(conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

void flush_out(conn *c) {
    while (c->outpos < c->outlen) {
        ssize_t n = write(c->fd, c->out + c->outpos, c->outlen - c->outpos);
        if (n > 0) {
            c->outpos += (uint32_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, EPOLLIN | EPOLLOUT);
            return;
        }
        conn_close(c, 1);
        return;
    }
    if (c->outlen) {
        c->outlen = c->outpos = 0;
        if (c->outcap > 65536) {  /* a large publisher burst: give the memory back */
            free(c->out);
            c->out = NULL;
            c->outcap = 0;
        }
        set_events(c, EPOLLIN);
    }
}

/* A masked client WebSocket frame (RFC 6455 5.3); the mask key is fixed. */
void ws_send(conn *c, int opcode, const void *payload, size_t n) {
    static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t head[14];
    size_t h = 0;
    head[h++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        head[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        head[h++] = 0x80 | 126;
        head[h++] = (uint8_t)(n >> 8);
        head[h++] = (uint8_t)n;
    } else {
        head[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) head[h++] = (uint8_t)(n >> (8 * i));
    }
    memcpy(head + h, mask, 4);
    h += 4;
    out_append(c, head, h);
    size_t at = c->outlen;
    out_append(c, payload, n);
    for (size_t i = 0; i < n; i++) c->out[at + i] ^= mask[i & 3];
}

void ws_text(conn *c, const char *s) { ws_send(c, 1, s, strlen(s)); }

/* A longlink frame: 20-byte header (PROTOCOL.md 1.1) and body. */
static size_t ll_frame(uint8_t *dst, int op, const void *body, size_t n) {
    uint32_t len = (uint32_t)(20 + n);
    memset(dst, 0, 20);
    dst[0] = (uint8_t)(len >> 24);
    dst[1] = (uint8_t)(len >> 16);
    dst[2] = (uint8_t)(len >> 8);
    dst[3] = (uint8_t)len;
    dst[4] = 1;
    dst[5] = (uint8_t)op;
    memcpy(dst + 20, body, n);
    return len;
}

void make_payload(char *p, uint64_t t) {
    /* "@" + 19 digits of push time in ns + " " + padding: PAYLOAD bytes */
    char head[32];
    snprintf(head, sizeof head, "@%019llu ", (unsigned long long)t);
    memcpy(p, head, 21);
    memset(p + 21, 'x', PAYLOAD - 21);
}

/* ---------------------------------------------------------------- connecting */

/* Source addresses the connections are spread over: 127.0.0.2 to 127.0.0.(1 + SOURCES).
 * With one source address every connection to the server's port needs its own ephemeral
 * port, and as the 28k of them fill up (19k connections, plus TIME_WAIT and whatever
 * else runs on the machine) the kernel's search for a free one in connect() grows: the
 * connect rate at 19,000 connections fell to a third of the rate at 5,000, on the load
 * generator's side. Each source address has a port space of its own; the port is picked
 * at connect() (IP_BIND_ADDRESS_NO_PORT), so bind() reserves nothing. */
#define SOURCES 16
static uint32_t next_source;

/* A non-blocking connect to 127.0.0.1:port for `c` (new or lost): 0 if it failed at once. */
int conn_reopen(conn *c, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + next_source++ % SOURCES);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
        close(fd);
        return 0;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return 0;
    }
    c->fd = fd;
    c->state = S_CONNECTING;
    c->started_ns = now_ns();
    c->skip = 0;
    c->inlen = 0;
    c->outlen = c->outpos = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    return 1;
}

conn *conn_open(int kind, int port) {
    conn *c = calloc(1, sizeof *c);
    if (!c) die("out of memory");
    c->kind = (uint8_t)kind;
    c->fd = -1;
    if (!conn_reopen(c, port)) {
        free(c);
        return NULL;
    }
    return c;
}

static void send_auth(conn *c) {
    char body[2048];
    const char *token = c->idx < ntokens ? tokens[c->idx] : "";
    const char *codecs = strcmp(opt_codec, "none") == 0 ? "" : opt_codec;
    int n = snprintf(body, sizeof body,
                     "{\"token\":\"%s\",\"rooms\":[\"%s\"],\"codecs\":[%s%s%s],\"heartbeat_s\":3600}",
                     token, opt_room, *codecs ? "\"" : "", codecs, *codecs ? "\"" : "");
    uint8_t frame[2100];
    size_t len = ll_frame(frame, OP_AUTH, body, (size_t)n);
    if (opt_proto == P_LONGLINK) {
        ws_send(c, 2, frame, len);
    } else if (opt_proto == P_LONGLINK_TCP) {
        out_append(c, frame, len);
    } else {  /* HTTP stream: the request body is the AUTH frame */
        char head[256];
        int h = snprintf(head, sizeof head,
                         "POST /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                         len);
        out_append(c, head, (size_t)h);
        out_append(c, frame, len);
    }
}

void on_connected(conn *c) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
        conn_close(c, 1);
        return;
    }
    if (c->kind == K_HTTP) {
        c->state = S_READY;
        set_events(c, EPOLLIN);
        return;
    }
    if (opt_proto == P_LONGLINK_TCP || opt_proto == P_LONGLINK_STREAM) {
        c->state = opt_proto == P_LONGLINK_TCP ? S_AUTH : S_UPGRADE;
        send_auth(c);
        flush_out(c);
        if (c->fd >= 0 && c->outlen == 0) set_events(c, EPOLLIN);
        return;
    }
    const char *path = "/sub", *proto_header = "";
    if (opt_proto == P_LONGLINK) {
        path = "/ws";
        proto_header = "Sec-WebSocket-Protocol: longlink.v1\r\n";
    } else if (opt_proto == P_SOCKETIO) {
        path = "/socket.io/?EIO=4&transport=websocket";
    } else if (c->kind == K_PUB) {
        path = "/pub";
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, opt_port, proto_header);
    c->state = S_UPGRADE;
    out_append(c, req, (size_t)n);
    flush_out(c);
    if (c->fd >= 0 && c->outlen == 0) set_events(c, EPOLLIN);
}

static void became_ready(conn *c) {
    c->state = S_READY;
    if (c->kind != K_SUB) return;
    if (c->reconnecting) {
        back_ready(c, now_ns());
        return;
    }
    conn_ready++;
    conn_pending--;
    uint64_t t = now_ns();
    conn_last_ns = t;
    if (conn_ms) conn_ms[nconn_ms++] = (uint32_t)((t - c->started_ns) / 100000);
}

static void conn_close(conn *c, int failed) {
    if (c->fd < 0) return;  /* closed already (or waiting to reconnect) */
    int was = c->state;
    c->state = S_CLOSED;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    free(c->in);
    c->in = NULL;
    c->inlen = c->incap = 0;
    if (c->kind == K_HTTP && c->req_msgs) {
        refused += c->req_msgs;  /* the server closed it with the request unanswered */
        http_errors++;
        c->req_msgs = 0;
    }
    if (c->kind == K_SUB) {
        if (opt_reconnect && (was == S_READY || c->reconnecting)) {
            if (was == S_READY) lost++;
            lost_conn(c, was == S_READY, now_ns());
        } else if (was == S_READY) {
            lost++;
        } else if (failed) {
            conn_failed++;
            conn_pending--;
        }
    }
}

/* ---------------------------------------------------------------- decoding */

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The push time in a message: "@" and 19 digits; 0 if none. */
static uint64_t find_stamp(const uint8_t *p, size_t n) {
    const uint8_t *at = memchr(p, '@', n);
    while (at) {
        size_t off = (size_t)(at - p);
        if (off + 20 <= n) {
            uint64_t t = 0;
            int ok = 1;
            for (int i = 1; i <= 19; i++) {
                uint8_t d = at[i];
                if (d < '0' || d > '9') {
                    ok = 0;
                    break;
                }
                t = t * 10 + (d - '0');
            }
            if (ok) return t;
        }
        at = memchr(at + 1, '@', n - off - 1);
    }
    return 0;
}

static void got(conn *c) {
    c->msgs++;
    rx_msgs++;
}

/* A sample's messages arrived now: the longest silence between two, while counting. */
static void gap(conn *c, uint64_t now) {
    if (recording_lat && c->last_msg_ns && now - c->last_msg_ns > max_gap_ns)
        max_gap_ns = now - c->last_msg_ns;
    c->last_msg_ns = now;
}

static void stamp(const uint8_t *p, size_t n, uint64_t now) {
    if (!recording_lat || nlat >= MAX_LAT) return;
    uint64_t t = find_stamp(p, n);
    if (t && now > t) lat[nlat++] = (uint32_t)((now - t) / 1000);
}

static void record(conn *c) {
    if (!c->recording) return;
    if (c->reclen == c->reccap) {
        if (c->reccap >= MAX_REC) return;
        c->reccap = c->reccap ? c->reccap * 2 : 1024;
        c->rec = xrealloc(c->rec, c->reccap * sizeof *c->rec);
    }
    c->rec[c->reclen++] = (uint32_t)c->msgs;
}

/* A whole longlink frame at a sample (or during AUTH): count and time its messages. */
static void ll_decode(conn *c, const uint8_t *f, size_t n, uint64_t now) {
    if (n < 20) return;
    int op = f[5], flags = f[6], codec = f[7];
    if (c->state == S_AUTH) {
        if (op == OP_AUTH_OK) became_ready(c);
        else if (op == OP_ERROR) conn_close(c, 1);
        return;
    }
    if (op != OP_PUSH) return;
    c->frames++;
    gap(c, now);
    const uint8_t *body = f + 20;
    size_t blen = n - 20;
    if (!(flags & FLAG_BATCH)) {
        got(c);
        stamp(body, blen, now);
        record(c);
        return;
    }
    if (codec == 1) {
        uLongf out = (uLongf)zcap;
        if (uncompress(zbuf, &out, body, (uLong)blen) != Z_OK) return;
        body = zbuf;
        blen = out;
    } else if (codec == 2) {
        size_t out = zcap;
        if (BrotliDecoderDecompress(blen, body, &out, zbuf) != BROTLI_DECODER_RESULT_SUCCESS) return;
        body = zbuf;
        blen = out;
    }
    size_t at = 0;
    while (at + 20 <= blen) {
        uint32_t len = be32(body + at);
        if (len < 20 || at + len > blen) break;
        if (body[at + 5] == OP_PUSH) {
            got(c);
            stamp(body + at + 20, len - 20, now);
        }
        at += len;
    }
    record(c);
}

/* Messages in a compressed BATCH, by the frame's fingerprint: every member of a room
 * gets the same bytes (the gateway builds a batch once), so each distinct frame is
 * decompressed once and the others look its count up. Not a mapping of one
 * connection's stream onto another's: a member that gets its batches merged or cut
 * differently (it joined during a window, or the gateway coalesced two) is counted from
 * its own frames. A direct-mapped cache keyed by (length, FNV-1a of the first and last
 * 64 bytes); a collision costs one more decompression. */
#define FP_SLOTS (1u << 16)
typedef struct { uint64_t key; uint32_t len, msgs; } fp_slot;
static fp_slot fp_cache[FP_SLOTS];

static uint64_t fingerprint(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull ^ n;
    size_t head = n < 64 ? n : 64;
    for (size_t i = 0; i < head; i++) h = (h ^ p[i]) * 1099511628211ull;
    for (size_t i = n > 64 ? n - 64 : n; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Inner PUSH frames of a BATCH body (decoded). */
static uint32_t count_inner(const uint8_t *body, size_t blen) {
    uint32_t n = 0;
    size_t at = 0;
    while (at + 20 <= blen) {
        uint32_t len = be32(body + at);
        if (len < 20 || at + len > blen) break;
        n += body[at + 5] == OP_PUSH;
        at += len;
    }
    return n;
}

/* Messages in a whole longlink PUSH frame `f` (n bytes), without timing them. */
static uint32_t ll_count(const uint8_t *f, size_t n) {
    int flags = f[6], codec = f[7];
    if (!(flags & FLAG_BATCH)) return 1;
    const uint8_t *body = f + 20;
    size_t blen = n - 20;
    if (codec == 0) return count_inner(body, blen);
    uint64_t key = fingerprint(f, n);
    fp_slot *slot = &fp_cache[key & (FP_SLOTS - 1)];
    if (slot->key == key && slot->len == n) return slot->msgs;
    if (codec == 1) {
        uLongf out = (uLongf)zcap;
        if (uncompress(zbuf, &out, body, (uLong)blen) != Z_OK) return 0;
        blen = out;
    } else {
        size_t out = zcap;
        if (BrotliDecoderDecompress(blen, body, &out, zbuf) != BROTLI_DECODER_RESULT_SUCCESS) return 0;
        blen = out;
    }
    uint32_t msgs = count_inner(zbuf, blen);
    *slot = (fp_slot){key, (uint32_t)n, msgs};
    return msgs;
}

/* How many payload bytes of a frame are needed to count it. */
static uint64_t need_of(conn *c, int op, uint64_t len) {
    if (op >= 8 || c->sample || c->state != S_READY || c->kind != K_SUB) return len;
    switch (opt_proto) {
    case P_WS: return 0;
    case P_SOCKETIO: return len < 2 ? len : 2;
    case P_LONGLINK_STREAM: return 0;
    default: return len;  /* longlink: the whole frame (its batch is counted) */
    }
}

static void pong_eio(conn *c) { ws_text(c, "3"); }

/* A data message (or its first `have` bytes of `len`) of a ready connection. */
static void on_message(conn *c, int op, const uint8_t *p, uint64_t have, uint64_t len,
                       uint64_t now) {
    switch (opt_proto) {
    case P_WS:
        if (op == 1 || op == 2 || op == 0) {
            got(c);
            c->frames++;
            if (c->sample && have == len) {
                stamp(p, len, now);
                gap(c, now);
            }
        }
        return;
    case P_SOCKETIO:
        if (len == 1 && have == 1 && p[0] == '2') {
            pong_eio(c);
        } else if (have >= 2 && p[0] == '4' && p[1] == '2') {
            got(c);
            c->frames++;
            if (c->sample && have == len) {
                stamp(p, len, now);
                gap(c, now);
            }
        }
        return;
    default:
        if (have < len || len < 20) return;
        if (c->sample) {
            ll_decode(c, p, len, now);
        } else if (p[5] == OP_PUSH) {
            c->frames++;
            uint32_t k = ll_count(p, len);
            c->msgs += k;
            rx_msgs += k;
        }
        return;
    }
}

/* A whole frame before the connection is ready: the protocol's handshake steps. */
static void on_handshake_frame(conn *c, int op, const uint8_t *p, uint64_t len, uint64_t now) {
    if (opt_proto == P_LONGLINK || opt_proto == P_LONGLINK_TCP) {
        ll_decode(c, p, len, now);
        return;
    }
    if (opt_proto != P_SOCKETIO || op != 1) return;
    if (len == 1 && p[0] == '2') {
        pong_eio(c);
    } else if (c->state == S_EIO_OPEN && len >= 1 && p[0] == '0') {
        ws_text(c, "40");
        c->state = S_EIO_CONNECT;
    } else if (c->state == S_EIO_CONNECT && len >= 2 && p[0] == '4' && p[1] == '0') {
        if (c->kind == K_PUB) {
            became_ready(c);
        } else {
            char join[256];
            snprintf(join, sizeof join, "420[\"join\",\"%s\"]", opt_room);
            ws_text(c, join);
            c->state = S_JOIN;
        }
    } else if (c->state == S_JOIN && len >= 3 && memcmp(p, "430", 3) == 0) {
        became_ready(c);
    } else if (len >= 2 && p[0] == '4' && p[1] == '4') {
        conn_close(c, 1);
    }
}

static void carry(conn *c, const uint8_t *p, size_t n) {
    if (n > BUF_SIZE / 2) {
        fprintf(stderr, "loadgen: frame too large (%zu bytes)\n", n);
        conn_close(c, 1);
        return;
    }
    if (n > c->incap) {
        c->incap = (uint32_t)(n < 256 ? 256 : n);
        c->in = xrealloc(c->in, c->incap);
    }
    memmove(c->in, p, n);
    c->inlen = (uint32_t)n;
}

/* Parse b[0..n): WebSocket frames, or longlink frames (TCP). Leaves the rest carried. */
static void parse_frames(conn *c, uint8_t *b, size_t n, uint64_t now) {
    size_t pos = 0;
    if (c->skip) {
        uint64_t k = c->skip < n ? c->skip : n;
        pos += k;
        c->skip -= k;
    }
    int tcp = opt_proto == P_LONGLINK_TCP;
    while (pos < n && c->fd >= 0) {
        const uint8_t *h = b + pos;
        size_t avail = n - pos;
        uint64_t len;
        size_t hl;
        int op = 2;
        if (tcp) {
            if (avail < 20) break;
            len = be32(h);
            if (len < 20) {
                conn_close(c, 1);
                return;
            }
            hl = 0;
        } else {
            if (avail < 2) break;
            op = h[0] & 0x0f;
            len = h[1] & 0x7f;
            hl = 2;
            if (len == 126) {
                if (avail < 4) break;
                len = (uint64_t)h[2] << 8 | h[3];
                hl = 4;
            } else if (len == 127) {
                if (avail < 10) break;
                len = 0;
                for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
                hl = 10;
            }
            if (h[1] & 0x80) hl += 4;  /* a masked server frame: never sent, but skip it */
            if (avail < hl) break;
        }
        const uint8_t *p = h + hl;
        uint64_t have = avail - hl;
        if (have >= len) {
            if (op == 8) {  /* close */
                conn_close(c, 1);
                return;
            }
            if (op == 9) {  /* ping: pong with the same payload */
                ws_send(c, 10, p, len);
            } else if (op != 10) {
                if (c->state == S_READY) on_message(c, op, p, len, len, now);
                else on_handshake_frame(c, op, p, len, now);
            }
            pos += hl + len;
            continue;
        }
        uint64_t need = need_of(c, op, len);
        if (need <= have && need < len) {
            on_message(c, op, p, have, len, now);
            c->skip = len - have;
            pos = n;
            break;
        }
        break;  /* incomplete: carried */
    }
    if (pos < n && c->fd >= 0) carry(c, b + pos, n - pos);
}

/* The HTTP answer head in b[0..n): returns its length, 0 if incomplete, -1 if refused. */
static long http_head(conn *c, uint8_t *b, size_t n, int want) {
    uint8_t *end = memmem(b, n, "\r\n\r\n", 4);
    if (!end) return 0;
    int status = 0;
    if (n > 12 && memcmp(b, "HTTP/1.1 ", 9) == 0) status = atoi((char *)b + 9);
    static int told;
    if (status != want) {
        if (told++ < 3)
            fprintf(stderr, "loadgen: handshake answered %.*s\n", (int)(memchr(b, '\r', n) ? (uint8_t *)memchr(b, '\r', n) - b : 40), b);
        conn_close(c, 1);
        return -1;
    }
    return (long)(end + 4 - b);
}

static void http_answer(conn *c, uint8_t *b, size_t n, uint64_t now) {
    /* one request outstanding per connection: the answer is head + Content-Length */
    uint8_t *end = memmem(b, n, "\r\n\r\n", 4);
    if (!end) {
        carry(c, b, n);
        return;
    }
    size_t head = (size_t)(end + 4 - b);
    size_t clen = 0;
    uint8_t *cl = memmem(b, head, "ontent-Length:", 14);
    if (!cl) cl = memmem(b, head, "ontent-length:", 14);
    if (cl) clen = (size_t)strtoul((char *)cl + 14, NULL, 10);
    if (n < head + clen) {
        carry(c, b, n);
        return;
    }
    int status = n > 12 ? atoi((char *)b + 9) : 0;
    if (status == 202) {
        accepted += c->req_msgs;
    } else {
        refused += c->req_msgs;
        http_errors++;
        if (http_errors <= 3)
            fprintf(stderr, "loadgen: push answered %.*s\n", (int)(n < 300 ? n : 300), b);
    }
    if (nrtt == rttcap) {
        rttcap = rttcap ? rttcap * 2 : 4096;
        rtt = xrealloc(rtt, rttcap * sizeof *rtt);
    }
    rtt[nrtt++] = (uint32_t)((now - c->req_ns) / 1000);
    c->req_msgs = 0;
    if (n > head + clen) carry(c, b + head + clen, n - head - clen);
}

void on_readable(conn *c) {
    size_t off = c->inlen;
    if (off) memcpy(rbuf, c->in, off);
    c->inlen = 0;
    ssize_t r = read(c->fd, rbuf + off, BUF_SIZE - off);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c, 1);
        return;
    }
    if (r < 0) {
        if (off) carry(c, rbuf, off);
        return;
    }
    uint64_t now = now_ns();
    c->nbytes += (uint64_t)r;
    rx_total += (uint64_t)r;
    last_rx_ns = now;
    size_t n = off + (size_t)r;
    uint8_t *b = rbuf;
    if (c->kind == K_HTTP) {
        http_answer(c, b, n, now);
        return;
    }
    if (c->state == S_UPGRADE) {
        long h = http_head(c, b, n, opt_proto == P_LONGLINK_STREAM ? 200 : 101);
        if (h < 0) return;
        if (h == 0) {
            carry(c, b, n);
            return;
        }
        b += h;
        n -= (size_t)h;
        if (opt_proto == P_LONGLINK_STREAM) {
            c->state = S_STREAM_BODY;
        } else if (opt_proto == P_LONGLINK) {
            c->state = S_AUTH;
            send_auth(c);
        } else if (opt_proto == P_SOCKETIO) {
            c->state = S_EIO_OPEN;
        } else {
            became_ready(c);
        }
    }
    if (c->state == S_STREAM_BODY) {
        /* the chunked answer starts with AUTH_OK (or ERROR): ready once a frame's header
           is there; after that, the stream's bytes are only counted */
        if (n >= 24) became_ready(c);
        else if (n) carry(c, b, n);
        return;
    }
    if (opt_proto == P_LONGLINK_STREAM) return;
    if (n) parse_frames(c, b, n, now);
    if (c->fd >= 0 && c->outlen) flush_out(c);
}
