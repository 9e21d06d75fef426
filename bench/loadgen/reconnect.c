/* reconnect.c: subscribers that come back after their connection is lost (--reconnect 1).
 *
 * The schedule of the SDKs (src/longlink/client/backoff.py): attempt n (from 0) waits a
 * uniform random time in [0, min(10 s, 0.2 s * 2^n)] ("full jitter"), and the attempts
 * start over once a connection is back. Each attempt goes to the next of --port and
 * --alt-ports (the next endpoint /v1/connect would give). The command `readmit` (main.c)
 * reports how many were lost, how many came back, how long it took, and the
 * re-admissions per 100 ms since the first loss (is there a thundering herd?).
 */
#include "loadgen.h"

int opt_reconnect, nports, ports[MAX_PORTS];
uint64_t rc_first_loss_ns, rc_last_ready_ns;
uint32_t rc_lost, rc_back, rc_attempts, rc_timeline[RC_BUCKETS];

static conn **waiting;  /* lost subscribers waiting for their next attempt */
static uint32_t nwaiting, capwaiting;

static double cap_s(int attempt) {
    double cap = 0.2 * (double)(1u << (attempt < 16 ? attempt : 16));
    return cap < 10.0 ? cap : 10.0;
}

void lost_conn(conn *c, int was_ready, uint64_t now) {
    if (was_ready) {
        rc_lost++;
        if (!rc_first_loss_ns) rc_first_loss_ns = now;
        c->reconnecting = 1;
        c->attempt = 0;
    }
    double delay = drand48() * cap_s(c->attempt);
    if (c->attempt < 255) c->attempt++;
    c->retry_at_ns = now + (uint64_t)(delay * 1e9);
    c->state = S_WAIT;
    if (nwaiting == capwaiting) {
        capwaiting = capwaiting ? capwaiting * 2 : 1024;
        waiting = xrealloc(waiting, capwaiting * sizeof *waiting);
    }
    waiting[nwaiting++] = c;
}

void back_ready(conn *c, uint64_t now) {
    c->reconnecting = 0;
    c->attempt = 0;
    rc_back++;
    rc_last_ready_ns = now;
    uint64_t bucket = rc_first_loss_ns ? (now - rc_first_loss_ns) / 100000000ull : 0;
    if (bucket < RC_BUCKETS) rc_timeline[bucket]++;
}

void reconnect_tick(uint64_t now) {
    for (uint32_t i = 0; i < nwaiting;) {
        conn *c = waiting[i];
        if (c->state != S_WAIT || c->retry_at_ns > now) {
            if (c->state != S_WAIT) waiting[i] = waiting[--nwaiting];  /* closed for good */
            else i++;
            continue;
        }
        waiting[i] = waiting[--nwaiting];
        rc_attempts++;
        if (nports > 1) c->port_i = (uint8_t)((c->port_i + 1) % nports);
        if (!conn_reopen(c, ports[c->port_i])) lost_conn(c, 0, now);
    }
}

int reconnect_pending(void) { return nwaiting > 0; }

/* Start the counts over; `all`: the subscribers are gone too (close). */
void reconnect_forget(int all) {
    if (all) nwaiting = 0;
    rc_first_loss_ns = rc_last_ready_ns = 0;
    rc_lost = rc_back = rc_attempts = 0;
    memset(rc_timeline, 0, sizeof rc_timeline);
}

/* "P1,P2,..." into `into` (at most MAX_PORTS). */
void parse_ports(const char *list, int *into, int *count) {
    while (*list && *count < MAX_PORTS) {
        char *end;
        long port = strtol(list, &end, 10);
        if (end == list) break;
        into[(*count)++] = (int)port;
        list = *end == ',' ? end + 1 : end;
    }
}
