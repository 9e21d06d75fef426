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
 * Every message carries its push time: "@" and 19 digits of CLOCK_MONOTONIC
 * nanoseconds, padded to 100 bytes. Counting: a sample connection decodes every
 * message (longlink: decompress the BATCH, walk the inner frames); the others
 * read only frame headers (WebSocket, and the longlink header of each frame) and
 * skip the payload. A longlink room sends every member the same frames, so a
 * sample's record (messages up to its k-th frame) turns another connection's
 * frame count into messages.
 *
 * Build: gcc -O2 -o loadgen loadgen.c -lz -lbrotlidec
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <brotli/decode.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define BUF_SIZE (4u << 20)  /* shared read buffer; a frame larger than half is an error */
#define MAX_LAT (8u << 20)   /* latencies kept per run */
#define PAYLOAD 100          /* bytes of each message's data */
#define MAX_HTTP 64
#define MAX_REC (4u << 20)   /* frames a sample records per run */

enum proto { P_WS, P_SOCKETIO, P_LONGLINK, P_LONGLINK_TCP, P_LONGLINK_STREAM };
enum kind { K_SUB, K_PUB, K_HTTP };
enum state {
    S_CONNECTING, S_UPGRADE, S_AUTH, S_EIO_OPEN, S_EIO_CONNECT, S_JOIN, S_STREAM_BODY,
    S_READY, S_CLOSED
};
enum target { T_NONE, T_ROOM, T_USERS };
enum { OP_AUTH = 1, OP_AUTH_OK = 2, OP_PUSH = 5, OP_ERROR = 14, FLAG_BATCH = 2 };

typedef struct conn {
    int fd;
    uint8_t kind, state, sample, recording, closing;
    uint32_t idx;           /* subscriber number (join order) */
    uint64_t skip;          /* payload bytes still to discard */
    uint8_t skip_op;        /* opcode of the frame being skipped (unused but for debugging) */
    uint64_t msgs, frames, nbytes;
    uint64_t started_ns;    /* connect began */
    uint8_t *in;            /* an incomplete frame carried to the next read */
    uint32_t inlen, incap;
    uint8_t *out;           /* bytes not yet written */
    uint32_t outlen, outcap, outpos;
    uint64_t last_msg_ns;   /* samples: when the last message arrived */
    uint32_t *rec;          /* samples: messages up to each frame */
    uint32_t reclen, reccap;
    /* http publisher connections */
    uint32_t req_msgs;      /* messages in the request outstanding (0: idle) */
    uint64_t req_ns;
} conn;

/* ---------------------------------------------------------------- options */
static int opt_port, opt_http_port, opt_proto = P_WS, opt_window = 32, opt_per_request = 8;
static int opt_http_conns = 8, opt_lowat = 0;
static const char *opt_room = "bench", *opt_tokens = NULL, *opt_codec = "none";
static const char *opt_api_key = "bench-key";

/* ---------------------------------------------------------------- state */
static int ep;
static uint8_t *rbuf, *zbuf;
static size_t zcap = 8u << 20;
static conn **subs;
static uint32_t nsubs, subcap;
static char **tokens, **users;
static uint32_t ntokens;
static conn *pubc;                   /* ws / socketio publisher */
static conn *httpc[MAX_HTTP];
static int nhttp;

static uint32_t *lat;                /* push -> receipt, microseconds */
static uint32_t nlat;
static int recording_lat;
static uint64_t lost;                /* ready connections that closed */
static uint64_t rx_msgs;             /* messages counted on every subscriber (this run) */
static uint64_t max_gap_ns;          /* longest silence between two messages at a sample */
static conn **samples;               /* this run's sample connections */
static uint32_t nsamples;
static uint64_t last_req_ns;

/* connect command */
static int connecting;
static uint32_t conn_target, conn_started, conn_ready, conn_failed, conn_pending, conn_conc;
static double conn_rate;
static uint64_t conn_begin_ns, conn_last_ns;
static uint32_t *conn_ms;            /* connect latencies of this command, ms x 10 */
static uint32_t nconn_ms;

/* run command */
enum phase { R_IDLE, R_PUBSETUP, R_RUN, R_DRAIN };
static int phase = R_IDLE;
static double run_rate, run_seconds, run_warmup, run_drain;
static int run_target, run_samples, marked;
static uint64_t run_begin_ns, pub_setup_ns, drain_begin_ns, last_rx_ns, rx_total;
static uint64_t published, accepted, refused, skipped, http_errors;
static uint64_t *m1_msgs, *m1_frames, *m2_msgs, *m2_frames;
static struct rusage ru1, ru2;
static uint64_t mark1_ns, mark2_ns;
static uint32_t *rtt;                /* request round trips, microseconds */
static uint32_t nrtt, rttcap;
static uint64_t user_cursor;

static char linebuf[4096];
static size_t linelen;
static int quitting;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q && n) die("out of memory");
    return q;
}

/* ---------------------------------------------------------------- output buffers */

static void out_append(conn *c, const void *data, size_t n) {
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

static void flush_out(conn *c) {
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
static void ws_send(conn *c, int opcode, const void *payload, size_t n) {
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

static void ws_text(conn *c, const char *s) { ws_send(c, 1, s, strlen(s)); }

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

static void make_payload(char *p, uint64_t t) {
    /* "@" + 19 digits of push time in ns + " " + padding: PAYLOAD bytes */
    char head[32];
    snprintf(head, sizeof head, "@%019llu ", (unsigned long long)t);
    memcpy(p, head, 21);
    memset(p + 21, 'x', PAYLOAD - 21);
}

/* ---------------------------------------------------------------- connecting */

static conn *conn_open(int kind, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return NULL;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) die("out of memory");
    c->fd = fd;
    c->kind = (uint8_t)kind;
    c->state = S_CONNECTING;
    c->started_ns = now_ns();
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
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

static void on_connected(conn *c) {
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
        if (c->state != S_CLOSED && c->outlen == 0) set_events(c, EPOLLIN);
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
    if (c->state != S_CLOSED && c->outlen == 0) set_events(c, EPOLLIN);
}

static void became_ready(conn *c) {
    c->state = S_READY;
    if (c->kind != K_SUB) return;
    conn_ready++;
    conn_pending--;
    uint64_t t = now_ns();
    conn_last_ns = t;
    if (conn_ms) conn_ms[nconn_ms++] = (uint32_t)((t - c->started_ns) / 100000);
}

static void conn_close(conn *c, int failed) {
    if (c->state == S_CLOSED) return;
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
        if (was == S_READY) {
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

/* How many payload bytes of a frame are needed to count it. */
static uint64_t need_of(conn *c, int op, uint64_t len) {
    if (op >= 8 || c->sample || c->state != S_READY || c->kind != K_SUB) return len;
    switch (opt_proto) {
    case P_WS: return 0;
    case P_SOCKETIO: return len < 2 ? len : 2;
    default: return len < 20 ? len : 20;
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
        if (have == len && (c->sample || len < 20)) {
            ll_decode(c, p, len, now);
        } else if (have >= 6 && p[5] == OP_PUSH) {
            c->frames++;  /* messages: from a sample's record */
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
    while (pos < n && c->state != S_CLOSED) {
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
    if (pos < n && c->state != S_CLOSED) carry(c, b + pos, n - pos);
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

static void on_readable(conn *c) {
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
    if (c->state != S_CLOSED && c->outlen) flush_out(c);
}

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

/* Reopen the publisher's HTTP connections the server closed (keep-alive timeout). */
static void ensure_http(void) {
    while (nhttp < opt_http_conns) {
        httpc[nhttp] = conn_open(K_HTTP, opt_http_port);
        if (!httpc[nhttp]) die("connect (http)");
        nhttp++;
    }
    for (int i = 0; i < nhttp; i++) {
        if (httpc[i]->state != S_CLOSED) continue;
        free(httpc[i]->out);
        free(httpc[i]);
        httpc[i] = conn_open(K_HTTP, opt_http_port);
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
    conn *c = conn_open(K_SUB, opt_port);
    if (!c) return NULL;
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

static uint64_t msgs_of(conn *c, uint64_t frames, uint64_t msgs, conn *ref) {
    if (!longlink_proto() || c->sample || !ref) return msgs;
    if (frames == 0) return 0;
    if (frames <= ref->reclen) return ref->rec[frames - 1];
    uint64_t last = ref->reclen ? ref->rec[ref->reclen - 1] : 0;
    double per = ref->reclen ? (double)last / ref->reclen : 1.0;
    return last + (uint64_t)((double)(frames - ref->reclen) * per);
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

static void on_readable(conn *c);

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
    uint64_t want = run_target == T_USERS ? 0 : published;
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
        if (c->state != S_CLOSED) {  /* a deliberate close: not counted as lost */
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
        if (c->state != S_CLOSED) {
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
        }
        free(c->in);
        free(c->out);
        free(c);
    }
    nhttp = 0;
    pubc = NULL;
    printf("{\"ok\":\"close\"}\n");
    fflush(stdout);
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
        int busy = connecting || phase != R_IDLE;
        int n = epoll_wait(ep, evs, 1024, busy ? 1 : 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                on_stdin();
                continue;
            }
            if (c->state == S_CLOSED) continue;
            if (c->state == S_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
                continue;
            }
            if (evs[i].events & EPOLLOUT) flush_out(c);
            if (c->state != S_CLOSED && evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        }
        uint64_t now = now_ns();
        connect_tick(now);
        run_tick(now);
    }
    return 0;
}
