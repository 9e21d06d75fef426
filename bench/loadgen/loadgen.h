/* loadgen.h: what the two halves of the load generator share (see main.c). */
#ifndef LOADGEN_H
#define LOADGEN_H
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
#define MAX_PORTS 8
#define RC_BUCKETS 1200      /* re-admissions per 100 ms, two minutes */

enum proto { P_WS, P_SOCKETIO, P_LONGLINK, P_LONGLINK_TCP, P_LONGLINK_STREAM };
enum kind { K_SUB, K_PUB, K_HTTP };
enum state {
    S_CONNECTING, S_UPGRADE, S_AUTH, S_EIO_OPEN, S_EIO_CONNECT, S_JOIN, S_STREAM_BODY,
    S_READY, S_CLOSED, S_WAIT /* lost; reconnects at retry_at */
};
enum target { T_NONE, T_ROOM, T_USERS };
enum { OP_AUTH = 1, OP_AUTH_OK = 2, OP_PUSH = 5, OP_ERROR = 14, FLAG_BATCH = 2 };

typedef struct conn {
    int fd;
    uint8_t kind, state, sample, recording;
    uint32_t idx;           /* subscriber number (join order) */
    uint64_t skip;          /* payload bytes still to discard */
    uint64_t msgs, frames, nbytes;
    uint64_t started_ns;    /* connect began */
    uint8_t *in;            /* an incomplete frame carried to the next read */
    uint32_t inlen, incap;
    uint8_t *out;           /* bytes not yet written */
    uint32_t outlen, outcap, outpos;
    uint64_t last_msg_ns;   /* samples: when the last message arrived */
    uint32_t *rec;          /* samples: messages up to each frame */
    uint32_t reclen, reccap;
    /* reconnecting subscribers (--reconnect 1) */
    uint8_t reconnecting;   /* lost once, not back yet */
    uint8_t attempt;        /* reconnect attempts since it was lost */
    uint8_t port_i;         /* which of --port / --alt-ports it uses */
    uint64_t retry_at_ns;
    /* http publisher connections */
    uint32_t req_msgs;      /* messages in the request outstanding (0: idle) */
    uint64_t req_ns;
} conn;

/* options and state defined in main.c, used by wire.c */
extern int opt_port, opt_proto;
extern const char *opt_room, *opt_codec;
extern int ep;
extern uint8_t *rbuf, *zbuf;
extern size_t zcap;
extern char **tokens;
extern uint32_t ntokens;
extern uint32_t *lat;
extern uint32_t nlat;
extern int recording_lat;
extern uint64_t lost;
extern uint64_t rx_msgs;
extern uint64_t max_gap_ns;
extern uint32_t conn_ready, conn_failed, conn_pending;
extern uint64_t conn_last_ns;
extern uint32_t *conn_ms;
extern uint32_t nconn_ms;
extern uint64_t last_rx_ns, rx_total;
extern uint64_t accepted, refused, http_errors;
extern uint32_t *rtt;
extern uint32_t nrtt, rttcap;

/* reconnect.c: subscribers that come back, with the SDK's backoff and full jitter */
extern int opt_reconnect, nports, ports[MAX_PORTS];
extern uint64_t rc_first_loss_ns, rc_last_ready_ns;
extern uint32_t rc_lost, rc_back, rc_attempts, rc_timeline[RC_BUCKETS];
void lost_conn(conn *c, int was_ready, uint64_t now);
void back_ready(conn *c, uint64_t now);
void reconnect_tick(uint64_t now);
void reconnect_forget(int all);
int reconnect_pending(void);
void parse_ports(const char *list, int *into, int *count);

/* wire.c: connections, writing, reading, the protocols */
int conn_reopen(conn *c, int port);
uint64_t now_ns(void);
void die(const char *what);
void *xrealloc(void *p, size_t n);
void out_append(conn *c, const void *data, size_t n);
void flush_out(conn *c);
void ws_send(conn *c, int opcode, const void *payload, size_t n);
void make_payload(char *p, uint64_t t);
conn *conn_open(int kind, int port);
void on_connected(conn *c);
void on_readable(conn *c);

#endif
