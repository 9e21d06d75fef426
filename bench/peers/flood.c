/* flood.c: a trivial WebSocket server that floods, to show the load generator's ceiling.
 *
 * Not a peer: it does nothing a push server must do. It accepts WebSocket
 * connections (any path; /pub is accepted and ignored), and on the command
 * `flood SECONDS BURST` on stdin writes, round after round for SECONDS, BURST
 * binary 100-byte messages (each with its push time, like the publisher's) to
 * every connection in one write() each; a connection whose socket is full is
 * skipped for that round (its unwritten tail goes first next time, so frames are
 * never cut). Answers {"ok":"flood","rounds":..,"writes":..,"messages":..}.
 * Prints "ready port=P" once listening (port 0: a free one).
 *
 * Build: gcc -O2 -o flood flood.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 100
#define FRAME (PAYLOAD + 2)
#define MAX_BURST 64

typedef struct client {
    int fd;
    int open;               /* handshake done, subscriber */
    int publisher;
    char head[4096];
    size_t headlen;
    uint8_t *tail;          /* unwritten bytes of the last round */
    size_t taillen;
} client;

static client **clients;
static size_t nclients, capclients;

/* ------------------------------------------------------------------ SHA-1 (RFC 3174) */
typedef struct { uint32_t h[5]; uint64_t len; uint8_t buf[64]; size_t n; } sha1;

static uint32_t rol(uint32_t x, int k) { return x << k | x >> (32 - k); }

static void sha1_block(sha1 *s, const uint8_t *b) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = s->h[0], bb = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (bb & c) | (~bb & d), k = 0x5A827999;
        else if (i < 40) f = bb ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60) f = (bb & c) | (bb & d) | (c & d), k = 0x8F1BBCDC;
        else f = bb ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(bb, 30), bb = a, a = t;
    }
    s->h[0] += a, s->h[1] += bb, s->h[2] += c, s->h[3] += d, s->h[4] += e;
}

static void sha1_digest(const uint8_t *data, size_t n, uint8_t out[20]) {
    sha1 s = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
    s.len = (uint64_t)n * 8;
    while (n >= 64) {
        sha1_block(&s, data);
        data += 64;
        n -= 64;
    }
    uint8_t last[128] = {0};
    memcpy(last, data, n);
    last[n] = 0x80;
    size_t total = n + 9 <= 64 ? 64 : 128;
    for (int i = 0; i < 8; i++) last[total - 1 - i] = (uint8_t)(s.len >> (8 * i));
    sha1_block(&s, last);
    if (total == 128) sha1_block(&s, last + 64);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(s.h[i] >> (24 - 8 * j));
}

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* ------------------------------------------------------------------ server */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void drop(int ep, client *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->open = 0;
}

static void handshake(int ep, client *c) {
    char *end = strstr(c->head, "\r\n\r\n");
    if (!end) return;
    char *key = strcasestr(c->head, "Sec-WebSocket-Key:");
    if (!key) {
        drop(ep, c);
        return;
    }
    key += 18;
    while (*key == ' ') key++;
    char buf[128];
    size_t k = 0;
    while (key[k] && key[k] != '\r' && k < 60) buf[k] = key[k], k++;
    memcpy(buf + k, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    uint8_t digest[20];
    sha1_digest((uint8_t *)buf, k + 36, digest);
    char accept[32];
    base64(digest, 20, accept);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    if (write(c->fd, resp, (size_t)n) != n) {
        drop(ep, c);
        return;
    }
    c->publisher = strncmp(c->head, "GET /pub", 8) == 0;
    c->open = !c->publisher;
}

static void on_read(int ep, client *c) {
    char buf[65536];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(ep, c);
        return;
    }
    if (n < 0 || c->open || c->publisher) return;  /* after the handshake: ignored */
    size_t room = sizeof c->head - 1 - c->headlen;
    size_t k = (size_t)n < room ? (size_t)n : room;
    memcpy(c->head + c->headlen, buf, k);
    c->headlen += k;
    c->head[c->headlen] = 0;
    handshake(ep, c);
}

/* One round: write `data` to every subscriber (its unwritten tail first). */
static uint64_t round_all(int ep, const uint8_t *data, size_t n) {
    uint64_t writes = 0;
    for (size_t i = 0; i < nclients; i++) {
        client *c = clients[i];
        if (!c->open) continue;
        if (c->taillen) {
            ssize_t w = write(c->fd, c->tail, c->taillen);
            if (w < 0 && errno != EAGAIN) {
                drop(ep, c);
                continue;
            }
            if (w < (ssize_t)c->taillen) {
                if (w > 0) memmove(c->tail, c->tail + w, c->taillen - (size_t)w), c->taillen -= (size_t)w;
                continue;
            }
            c->taillen = 0;
        }
        ssize_t w = write(c->fd, data, n);
        if (w < 0) {
            if (errno != EAGAIN) drop(ep, c);
            continue;
        }
        writes++;
        if ((size_t)w < n) {
            c->tail = realloc(c->tail, n);
            memcpy(c->tail, data + w, n - (size_t)w);
            c->taillen = n - (size_t)w;
        }
    }
    return writes;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
        perror("flood: listen");
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    client stdin_marker;
    ev.data.ptr = &stdin_marker;
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    printf("ready port=%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    uint8_t frames[MAX_BURST * FRAME];
    char line[256];
    size_t linelen = 0;
    uint64_t flood_end = 0, rounds = 0, writes = 0, messages = 0;
    int burst = 1, quit = 0;
    struct epoll_event evs[256];
    while (!quit) {
        int n = epoll_wait(ep, evs, 256, flood_end ? 0 : 100);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    client *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    if (nclients == capclients) {
                        capclients = capclients ? capclients * 2 : 1024;
                        clients = realloc(clients, capclients * sizeof *clients);
                    }
                    clients[nclients++] = c;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
            } else if (p == &stdin_marker) {
                ssize_t r = read(0, line + linelen, sizeof line - 1 - linelen);
                if (r <= 0) {
                    quit = r == 0;
                    continue;
                }
                linelen += (size_t)r;
                char *nl;
                while ((nl = memchr(line, '\n', linelen))) {
                    *nl = 0;
                    double seconds = 0;
                    if (sscanf(line, "flood %lf %d", &seconds, &burst) >= 1) {
                        if (burst < 1) burst = 1;
                        if (burst > MAX_BURST) burst = MAX_BURST;
                        flood_end = now_ns() + (uint64_t)(seconds * 1e9);
                        rounds = writes = messages = 0;
                    } else if (strncmp(line, "quit", 4) == 0) {
                        quit = 1;
                    }
                    size_t used = (size_t)(nl + 1 - line);
                    memmove(line, nl + 1, linelen - used);
                    linelen -= used;
                }
            } else {
                client *c = p;
                if (c->fd >= 0) on_read(ep, c);
            }
        }
        if (flood_end) {
            uint64_t t = now_ns();
            if (t >= flood_end) {
                printf("{\"ok\":\"flood\",\"rounds\":%llu,\"writes\":%llu,\"messages\":%llu}\n",
                       (unsigned long long)rounds, (unsigned long long)writes,
                       (unsigned long long)messages);
                fflush(stdout);
                flood_end = 0;
                continue;
            }
            for (int b = 0; b < burst; b++) {
                uint8_t *f = frames + b * FRAME;
                f[0] = 0x82;
                f[1] = PAYLOAD;
                char head[32];
                snprintf(head, sizeof head, "@%019llu ", (unsigned long long)t);
                memcpy(f + 2, head, 21);
                memset(f + 2 + 21, 'x', PAYLOAD - 21);
            }
            uint64_t w = round_all(ep, frames, (size_t)burst * FRAME);
            rounds++;
            writes += w;
            messages += w * (uint64_t)burst;
        }
    }
    return 0;
}
