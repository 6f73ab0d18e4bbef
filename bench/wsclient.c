/*
 * wsclient: the Pulse load generator. One thread, one epoll, N non-blocking sockets.
 *
 * Each client connects to 127.0.0.1:PORT, authenticates with `?token=` (one token per line of
 * --tokens, so every client is its own user: Pulse caps connections per user), and then
 *   ws : does the RFC 6455 upgrade, sends a masked {"action":"subscribe","channel":C} and waits
 *        for the {"type":"subscribed"} ack (or, with --no-ack, for nothing: the seed baseline
 *        acks too, so the default is to wait);
 *   sse: GET /sse?channels=C, waits for `200`, then parses `data:` lines (chunked or not).
 * Server pings are answered with masked pongs, so the server's liveness check stays happy.
 *
 * Every publication whose JSON carries `"ts":<unix seconds>` (set by the publisher) is counted
 * and its publish->receive latency goes into a histogram (10 us buckets below 100 ms, 1 ms up
 * to 100 s). The process is driven line by line on stdin and answers one JSON object per line
 * on stdout:
 *   (start)            -> {"event":"ready", ...connect figures...}
 *   reset              -> zero counters and latencies, note CPU -> {"event":"reset"}
 *   wait TARGET SECS   -> block until TARGET publications arrived since reset, or SECS passed
 *                         -> {"event":"report", ...}
 *   report             -> {"event":"report", ...} at once
 *   quit               -> close everything, exit 0
 *
 * Offsets (ws): every client keeps the last `offset` it saw on its channel (and the last
 * `user_offset`, the caller's own space), from the `subscribed` ack on and from every
 * publication. A publication whose offset is not last+1 is a *hole* (its missing offsets are
 * *lost*), one at or below last a *duplicate*. A resubscribe sends `since` (and `user_since`,
 * and the ack's `epoch`) like the packaged client; its ack says `recovered`: true means the
 * replay before it must have brought last up to the ack's offset (else the difference is lost
 * too), false means the server says history no longer reaches: the skipped offsets are counted
 * apart (`skipped_unrecovered`), not as lost. Publications without an offset (the dashboard
 * snapshot, the Node peer) are not tracked.
 *
 * Reconnect storms (issue 15), also driven on stdin:
 *   arm [JITTER]       -> from now on a subscribed client that loses its connection (close
 *                         frame, e.g. 1012, or EOF) reconnects at once (+ U(0,JITTER) s) and
 *                         resubscribes with `since`; storm counters restart -> {"event":"armed"}
 *   drop [JITTER]      -> arm, then close every subscribed socket at once (no close frame):
 *                         "the clients dropped" -> {"event":"dropped","dropped":K}
 *   stormwait SECS     -> block until every client subscribed at arm time has resubscribed (or
 *                         SECS passed) -> {"event":"storm", ...}
 *   waitoff OFF SECS   -> block until every subscribed client's last offset is >= OFF (or SECS)
 *                         -> {"event":"offsets", ...}
 *   dump PATH          -> one line per client (state, offsets, holes, dups, reconnect figures)
 * A failed reconnect attempt (TCP refused/reset, an HTTP status, a close frame before the ack, no
 * ack within --handshake-timeout) is counted by kind and retried after --retry-base s doubling to
 * --retry-cap, jittered down to half; an error frame before the ack (e.g. "Temporarily
 * unavailable") is counted too, and the subscribe is sent again on the same socket after that
 * backoff (as the packaged client does). A client is never given up before the case ends.
 * A `recovered:false` whose gap was at most --history-size offsets is counted apart
 * (`recovered_false_within_history`): the history should still have reached. --storm-concurrency caps reconnect handshakes in flight (0 =
 * all at once).
 * Build: gcc -O2 -Wall -o wsclient wsclient.c  (bench/run.py does it)
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { ST_IDLE, ST_CONNECTING, ST_HEADERS, ST_SUBSCRIBING, ST_READY, ST_CLOSED, ST_FAILED,
       ST_DOWN /* storm: lost its connection, reconnect due at t_due */ };

/* Why a (re)connect attempt failed: counted per kind during a storm. */
enum { K_TCP_REFUSED, K_TCP_RESET, K_HTTP_503, K_HTTP_OTHER, K_CLOSE_1012, K_CLOSE_4029,
       K_CLOSE_OTHER, K_ERROR_FRAME, K_TIMEOUT, K_PROTOCOL, K_COUNT };
static const char *kind_names[K_COUNT] = {
    "tcp_refused", "tcp_reset", "http_503", "http_other", "close_1012", "close_4029",
    "close_other", "error_frame", "timeout", "protocol"};

typedef struct {
    int fd;
    int state;
    int attempts;
    int chunked;            /* sse: Transfer-Encoding: chunked */
    long chunk_left;        /* sse: bytes left in the current chunk; -1 = reading a size line */
    double t_start, t_ready;
    char *buf;              /* unparsed bytes carried over between reads */
    size_t len, cap;
    char *line;             /* sse: partial (dechunked) line */
    size_t llen, lcap;
    long received;          /* publications since reset */
    /* offsets (see the header) */
    long last, user_last;   /* -1: no baseline yet */
    char epoch[72];
    int since_sent;         /* the pending subscribe asked to recover */
    long holes, lost, dups;
    int rec_true, rec_false;
    /* storm */
    int storm;              /* 1: in a reconnect cycle (down, or re-handshaking) */
    int armed;              /* counted in the storm's target */
    int tries;              /* attempts in this cycle */
    int cycle_refused, cycle_timed_out, cycle_refused_up, cycle_timed_out_up;
    double t_down, t_due, t_attempt, t_acked;
    double resub_due;       /* storm: send the subscribe again then (after an error frame) */
    int resubs;             /* subscribes sent again on the same socket in this cycle */
    int storms_done;        /* reconnect cycles completed */
} conn_t;

/* ---- options ---- */
static const char *opt_host = "127.0.0.1";
static int opt_port = 8000;
static int opt_n = 100;
static const char *opt_mode = "ws";
static const char *opt_tokens = NULL;
static const char *opt_channel = "dashboard";
static const char *opt_path = "/ws";
static int opt_concurrency = 64;
static double opt_connect_timeout = 120.0;
static int opt_wait_ack = 1;
static int opt_busy_poll = 0;   /* epoll_wait(…, 0): never sleep (experiments on wake-up cost) */
static double opt_handshake_timeout = 10.0;  /* storm: per attempt, as the packaged client */
static double opt_retry_base = 0.05, opt_retry_cap = 0.5;
static int opt_storm_concurrency = 0;        /* reconnect handshakes in flight; 0 = all */

static conn_t *conns;
static char **tokens;
static int ntokens;
static int epfd;
static int is_sse;

/* ---- counters ---- */
#define FINE_BUCKETS 10000      /* 10 us each: 0 .. 100 ms */
#define COARSE_BUCKETS 99900    /* 1 ms each: 100 ms .. 100 s */
static uint64_t hist[FINE_BUCKETS + COARSE_BUCKETS + 1];
static uint64_t total_received, lat_count, errors_seen, other_frames;
static double lat_max, lat_sum, first_recv, last_recv;
static double reset_wall;
static struct rusage reset_usage;
static int n_ready, n_failed, n_closed, next_to_start, in_flight;
static long n_retries;
static double connect_t0, connect_t1;
static char first_error[256];

/* offsets, cumulative over the client's life */
static long off_holes, off_lost, off_dups, off_rec_true, off_rec_false, off_skipped,
    off_ack_gap, off_ack_behind, off_acks, off_rec_false_within;
static long opt_history_size = 1000;  /* PULSE_HISTORY_SIZE: a resume within it must recover */

/* the current storm */
static int storm_on;            /* armed: a lost subscribed client reconnects */
static double storm_jitter;
static double storm_t0, storm_first_ack, storm_last_ack;
static int storm_target, storm_done, storm_down, storm_active, storm_in_flight;
static long storm_fail[K_COUNT], storm_attempts;
static int storm_clients_refused, storm_clients_timed_out;
/* the same from the moment the server accepts again (restart: the `up` command; drop: t0) */
static double storm_t_up;
static long storm_fail_up[K_COUNT];
static int storm_clients_refused_up, storm_clients_timed_out_up;
static double *storm_lat_up;
static double *storm_lat;       /* ms, t_acked - t_down per resubscribed client */
static char storm_first_error[256];
static double next_scan;

static double now_real(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg) {
    perror(msg);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (!p) die("realloc");
    return p;
}

static void record_latency(double seconds) {
    if (seconds < 0) seconds = 0;
    long us = (long)(seconds * 1e6);
    size_t b;
    if (us < 100000) b = us / 10;
    else if (us < 100000000L) b = FINE_BUCKETS + (us - 100000) / 1000;
    else b = FINE_BUCKETS + COARSE_BUCKETS;
    hist[b]++;
    lat_count++;
    lat_sum += seconds;
    if (seconds > lat_max) lat_max = seconds;
}

static double bucket_upper_ms(size_t b) {
    if (b < FINE_BUCKETS) return (b + 1) * 0.01;
    if (b < FINE_BUCKETS + COARSE_BUCKETS) return 100.0 + (b - FINE_BUCKETS + 1);
    return 100000.0;
}

static double percentile_ms(double q) {
    if (!lat_count) return 0;
    uint64_t want = (uint64_t)(q * lat_count);
    if (want >= lat_count) want = lat_count - 1;
    uint64_t seen = 0;
    for (size_t b = 0; b < sizeof hist / sizeof hist[0]; b++) {
        seen += hist[b];
        if (seen > want) return bucket_upper_ms(b);
    }
    return lat_max * 1000;
}

/* ---- sockets ---- */
static void conn_free_buffers(conn_t *c) {
    free(c->buf); c->buf = NULL; c->len = c->cap = 0;
    free(c->line); c->line = NULL; c->llen = c->lcap = 0;
}

static void start_next(void);
static void start_conn(conn_t *c);

static double rand01(void) { return rand() / (RAND_MAX + 1.0); }

static void note_error(char *dst, size_t cap, const char *why) {
    if (!dst[0]) snprintf(dst, cap, "%s", why);
}

static void close_socket(conn_t *c) {
    c->resub_due = 0;
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    conn_free_buffers(c);
}

/* Storm: the client is down; its next attempt is due at `due`. */
static void go_down(conn_t *c, double due) {
    c->state = ST_DOWN;
    c->t_due = due;
    if (due < next_scan) next_scan = due;
}

/* A subscribed client lost its connection while a storm is armed: start its reconnect cycle. */
static void storm_begin(conn_t *c, double now) {
    n_ready--;
    c->storm = 1;
    c->tries = 0;
    c->cycle_refused = c->cycle_timed_out = c->cycle_refused_up = c->cycle_timed_out_up = 0;
    c->resubs = 0;
    c->t_down = now;
    storm_down++;
    storm_active++;
    go_down(c, now + (storm_jitter > 0 ? rand01() * storm_jitter : 0));
}

/* A failed attempt during a storm, by kind; a client counts once per cycle as refused (any
 * kind but a timeout) or timed out, and again if it happened once the server was up. */
static void count_failure(conn_t *c, const char *why, int kind) {
    storm_fail[kind]++;
    note_error(storm_first_error, sizeof storm_first_error, why);
    if (kind == K_TIMEOUT) {
        if (!c->cycle_timed_out) storm_clients_timed_out++;
        c->cycle_timed_out = 1;
    } else if (!c->cycle_refused) {
        storm_clients_refused++;
        c->cycle_refused = 1;
    }
    if (storm_t_up > 0 && c->t_attempt >= storm_t_up) {  /* an attempt made since up */
        storm_fail_up[kind]++;
        if (kind == K_TIMEOUT) {
            if (!c->cycle_timed_out_up) storm_clients_timed_out_up++;
            c->cycle_timed_out_up = 1;
        } else if (!c->cycle_refused_up) {
            storm_clients_refused_up++;
            c->cycle_refused_up = 1;
        }
    }
}

/* --retry-base doubling per attempt of this cycle up to --retry-cap, jittered down to half. */
static double backoff_for(conn_t *c) {
    double backoff = opt_retry_base;
    for (int t = 1; t < c->tries + c->resubs && backoff < opt_retry_cap; t++) backoff *= 2;
    if (backoff > opt_retry_cap) backoff = opt_retry_cap;
    return backoff * (0.5 + 0.5 * rand01());
}

/* Drop the socket. A handshake that failed at the TCP level (backlog overflow, reset) is retried
 * a few times; a refusal by the server (HTTP status, close frame) is final. During a storm
 * (c->storm) every failure is counted by kind and retried with backoff; a subscribed client that
 * loses its connection while a storm is armed starts a reconnect cycle. */
static void conn_fail_k(conn_t *c, const char *why, int may_retry, int kind) {
    int was_pending = c->state == ST_CONNECTING || c->state == ST_HEADERS ||
                      c->state == ST_SUBSCRIBING;
    close_socket(c);
    if (was_pending) {
        in_flight--;
        if (c->storm) {
            storm_in_flight--;
            count_failure(c, why, kind);
            go_down(c, now_mono() + backoff_for(c));
            return;
        }
        if (may_retry && c->attempts < 5) {
            n_retries++;
            c->state = ST_IDLE;
            start_conn(c);
            return;
        }
        c->state = ST_FAILED;
        n_failed++;
        note_error(first_error, sizeof first_error, why);
        start_next();
    } else if (c->state == ST_READY) {
        if (storm_on) {
            storm_begin(c, now_mono());
            return;
        }
        c->state = ST_CLOSED;
        n_closed++;
        n_ready--;
        note_error(first_error, sizeof first_error, why);
    }
}

static void conn_fail_ex(conn_t *c, const char *why, int may_retry) {
    conn_fail_k(c, why, may_retry, K_PROTOCOL);
}

static void conn_fail(conn_t *c, const char *why) { conn_fail_k(c, why, 1, K_TCP_RESET); }

static int send_all(conn_t *c, const void *data, size_t n) {
    const char *p = data;
    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {   /* tiny control frames only: a full buffer here is a bug */
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_masked(conn_t *c, int opcode, const char *payload, size_t n) {
    unsigned char frame[512 + 14];
    if (n > 512) return -1;
    size_t h = 0;
    frame[h++] = 0x80 | opcode;
    if (n < 126) {
        frame[h++] = 0x80 | (unsigned char)n;
    } else {                                /* a resubscribe with since, user_since and epoch */
        frame[h++] = 0x80 | 126;
        frame[h++] = (unsigned char)(n >> 8);
        frame[h++] = (unsigned char)n;
    }
    uint32_t key = (uint32_t)rand();
    unsigned char mask[4] = {key >> 24, key >> 16, key >> 8, key};
    memcpy(frame + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) frame[h + i] = payload[i] ^ mask[i & 3];
    return send_all(c, frame, h + n);
}

static void start_conn(conn_t *c) {
    int idx = (int)(c - conns);
    c->attempts++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(opt_port);
    inet_pton(AF_INET, opt_host, &sa.sin_addr);
    if (c->attempts == 1) c->t_start = now_mono();
    c->state = ST_CONNECTING;
    in_flight++;
    if (c->storm) {
        c->tries++;
        c->t_attempt = now_mono();
        storm_attempts++;
        storm_in_flight++;
    }
    int r = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0 && errno != EINPROGRESS) {
        conn_fail_k(c, errno == ECONNREFUSED ? "connect refused" : "connect failed", 1,
                    errno == ECONNREFUSED ? K_TCP_REFUSED : K_TCP_RESET);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)idx};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

static void start_next(void) {
    while (in_flight < opt_concurrency && next_to_start < opt_n) {
        start_conn(&conns[next_to_start++]);
    }
}

static void mark_ready(conn_t *c) {
    c->state = ST_READY;
    c->t_ready = now_mono();
    in_flight--;
    n_ready++;
    if (c->storm) {
        c->storm = 0;
        storm_in_flight--;
        storm_active--;
        c->storms_done++;
        c->t_acked = c->t_ready;
        if (c->armed) {
            double from = storm_t_up > c->t_down ? storm_t_up : c->t_down;
            storm_lat_up[storm_done] = (c->t_acked - from) * 1000;
            storm_lat[storm_done++] = (c->t_acked - c->t_down) * 1000;
            c->armed = 0;
        }
        if (!storm_first_ack) storm_first_ack = c->t_acked;
        storm_last_ack = c->t_acked;
        return;
    }
    if (n_ready + n_failed == opt_n) connect_t1 = now_mono();
    start_next();
}

static void send_request(conn_t *c) {
    char req[4096];
    const char *token = tokens[(c - conns) % ntokens];
    int n;
    if (is_sse) {
        n = snprintf(req, sizeof req,
                     "GET %s?channels=%s&token=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
                     opt_path, opt_channel, token, opt_host, opt_port);
    } else {
        n = snprintf(req, sizeof req,
                     "GET %s?token=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt_path, token, opt_host, opt_port);
    }
    if (send_all(c, req, (size_t)n) < 0) conn_fail(c, "send request failed");
}

/* The last occurrence of `needle` in p[0..n). */
static const char *memrmem(const char *p, size_t n, const char *needle, size_t k) {
    if (n < k) return NULL;
    for (const char *q = p + n - k; q >= p; q--)
        if (*q == *needle && !memcmp(q, needle, k)) return q;
    return NULL;
}

/* The integer after `key` (e.g. "\"offset\":") at `at`, or -1. */
static long int_after(const char *at, const char *end, size_t keylen) {
    const char *v = at + keylen;
    while (v < end && *v == ' ') v++;
    if (v >= end || *v < '0' || *v > '9') return -1;
    long x = 0;
    while (v < end && *v >= '0' && *v <= '9') x = x * 10 + (*v++ - '0');
    return x;
}

/* One offset in one space: contiguous, a hole, or a duplicate. */
static void step_offset(conn_t *c, long *last, long offset) {
    if (*last < 0) {            /* no baseline (no ack offset yet): start here */
        *last = offset;
        return;
    }
    if (offset == *last + 1) {
        *last = offset;
    } else if (offset <= *last) {
        c->dups++;
        off_dups++;
    } else {
        c->holes++;
        c->lost += offset - *last - 1;
        off_holes++;
        off_lost += offset - *last - 1;
        *last = offset;
    }
}

/* A publication (`{"channel":…,"data":…,"offset":N[,"user_offset":N]}`): the offsets follow
 * `data`, so the last occurrence of each key is the frame's own. */
static void on_publication_offsets(conn_t *c, const char *p, size_t n) {
    const char *uo = memrmem(p, n, "\"user_offset\":", 14);
    if (uo) {
        long v = int_after(uo, p + n, 14);
        if (v >= 0) step_offset(c, &c->user_last, v);
        return;
    }
    const char *o = memrmem(p, n, "\"offset\":", 9);
    if (o) {
        long v = int_after(o, p + n, 9);
        if (v >= 0) step_offset(c, &c->last, v);
    }
}

/* The `subscribed` ack: a baseline, or the end of a recovery. */
static void on_ack(conn_t *c, const char *p, size_t n) {
    off_acks++;
    const char *end = p + n;
    const char *o = memmem(p, n, "\"offset\":", 9);
    const char *uo = memmem(p, n, "\"user_offset\":", 14);
    long off = o ? int_after(o, end, 9) : -1;
    long uoff = uo ? int_after(uo, end, 14) : -1;
    int recovered = memmem(p, n, "\"recovered\":true", 16) != NULL;
    const char *e = memmem(p, n, "\"epoch\":\"", 9);
    if (e) {
        e += 9;
        size_t k = 0;
        while (e + k < end && e[k] != '"' && k < sizeof c->epoch - 1) k++;
        memcpy(c->epoch, e, k);
        c->epoch[k] = 0;
    }
    if (c->since_sent) {
        if (recovered) off_rec_true++, c->rec_true++;
        else off_rec_false++, c->rec_false++;
    }
    long *lasts[2] = {&c->last, &c->user_last};
    long acked[2] = {off, uoff};
    for (int i = 0; i < 2; i++) {
        long *last = lasts[i];
        if (acked[i] < 0) continue;
        if (c->since_sent && *last >= 0) {
            if (acked[i] > *last) {
                if (recovered) {        /* the replay stopped short of the ack: lost */
                    c->holes++;
                    c->lost += acked[i] - *last;
                    off_ack_gap++;
                    off_holes++;
                    off_lost += acked[i] - *last;
                } else {
                    off_skipped += acked[i] - *last;
                    /* history keeps the newest opt_history_size: this gap was still in it
                     * (unless its age (TTL) or the epoch says otherwise) */
                    if (acked[i] - *last <= opt_history_size) off_rec_false_within++;
                }
            } else if (acked[i] < *last) {
                off_ack_behind++;
            }
        }
        *last = acked[i];
    }
    c->since_sent = 0;
}

/* A text payload arrived (a WS text frame or an SSE data line). */
static void on_text(conn_t *c, const char *p, size_t n) {
    if (c->state == ST_SUBSCRIBING) {
        if (memmem(p, n, "\"type\":\"subscribed\"", 19) || memmem(p, n, "\"type\": \"subscribed\"", 20)) {
            on_ack(c, p, n);
            mark_ready(c);
            return;
        }
    }
    int publication = n > 11 && !memcmp(p, "{\"channel\":", 11);
    if (publication) on_publication_offsets(c, p, n);
    const char *ts = memmem(p, n, "\"ts\":", 5);
    if (ts && (publication || memmem(p, n, "\"channel\":", 10) || is_sse)) {
        char tmp[64];
        const char *v = ts + 5;
        while (v < p + n && *v == ' ') v++;
        size_t k = 0;
        while (v + k < p + n && k < sizeof tmp - 1 &&
               (v[k] == '.' || v[k] == 'e' || v[k] == 'E' || v[k] == '-' || v[k] == '+' ||
                (v[k] >= '0' && v[k] <= '9')))
            k++;
        memcpy(tmp, v, k);
        tmp[k] = 0;
        double sent = strtod(tmp, NULL);
        double now = now_real();
        if (sent > 0) {
            record_latency(now - sent);
            c->received++;
            total_received++;
            if (first_recv == 0) first_recv = now;
            last_recv = now;
            return;
        }
    }
    if (publication) return;    /* e.g. the dashboard snapshot */
    if (memmem(p, n, "\"type\":\"error\"", 14)) {
        errors_seen++;
        if (!first_error[0]) {
            size_t k = n < sizeof first_error - 1 ? n : sizeof first_error - 1;
            memcpy(first_error, p, k);
            first_error[k] = 0;
        }
        if (c->storm && c->state == ST_SUBSCRIBING) {
            /* e.g. "Temporarily unavailable: cannot subscribe": as the packaged client, send the
             * subscribe again on the same socket after a backoff */
            char why[200];
            snprintf(why, sizeof why, "error frame: %.*s", (int)(n < 150 ? n : 150), p);
            count_failure(c, why, K_ERROR_FRAME);
            c->resub_due = now_mono() + backoff_for(c);
            if (c->resub_due < next_scan) next_scan = c->resub_due;
        }
        return;
    }
    other_frames++;
}

/* Parse WS frames in c->buf; return bytes consumed, or -1 if the connection must close. */
static long parse_ws(conn_t *c, const unsigned char *b, size_t n) {
    size_t off = 0;
    while (n - off >= 2) {
        const unsigned char *f = b + off;
        int opcode = f[0] & 0x0f;
        int masked = f[1] & 0x80;
        uint64_t len = f[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (n - off < 4) break;
            len = ((uint64_t)f[2] << 8) | f[3];
            h = 4;
        } else if (len == 127) {
            if (n - off < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | f[2 + i];
            h = 10;
        }
        if (masked) h += 4;   /* servers never mask (RFC 6455 5.1); tolerate anyway */
        if (n - off < h + len) break;
        const char *payload = (const char *)f + h;
        if (opcode == 0x1 || opcode == 0x0) {
            on_text(c, payload, (size_t)len);
        } else if (opcode == 0x9) {       /* ping -> pong */
            if (len <= 125 && send_masked(c, 0xA, payload, (size_t)len) < 0) return -1;
        } else if (opcode == 0x8) {       /* close: answer it (code 1000), then drop TCP */
            char why[160];
            int code = len >= 2 ? ((unsigned char)payload[0] << 8 | (unsigned char)payload[1]) : 0;
            snprintf(why, sizeof why, "server closed the websocket: %d %.*s", code,
                     len > 2 ? (int)(len - 2 < 120 ? len - 2 : 120) : 0, payload + 2);
            static const char normal[2] = {0x03, (char)0xe8};
            send_masked(c, 0x8, normal, 2);
            conn_fail_k(c, why, 0, code == 1012 ? K_CLOSE_1012 : code == 4029 ? K_CLOSE_4029
                                                                          : K_CLOSE_OTHER);
            return -1;
        }
        off += h + len;
    }
    return (long)off;
}

static void sse_line(conn_t *c, const char *p, size_t n) {
    if (n && p[n - 1] == '\r') n--;
    if (n >= 5 && memcmp(p, "data:", 5) == 0) {
        p += 5; n -= 5;
        if (n && *p == ' ') { p++; n--; }
        on_text(c, p, n);
    }
}

static void sse_feed(conn_t *c, const char *p, size_t n) {
    while (n) {
        const char *nl = memchr(p, '\n', n);
        if (!nl) {
            if (c->llen + n > c->lcap) {
                c->lcap = (c->llen + n) * 2;
                c->line = xrealloc(c->line, c->lcap);
            }
            memcpy(c->line + c->llen, p, n);
            c->llen += n;
            return;
        }
        size_t k = (size_t)(nl - p);
        if (c->llen) {
            if (c->llen + k > c->lcap) {
                c->lcap = (c->llen + k) * 2;
                c->line = xrealloc(c->line, c->lcap);
            }
            memcpy(c->line + c->llen, p, k);
            sse_line(c, c->line, c->llen + k);
            c->llen = 0;
        } else {
            sse_line(c, p, k);
        }
        p += k + 1;
        n -= k + 1;
    }
}

/* Dechunk (if chunked) and feed SSE lines; return bytes consumed. */
static long parse_sse(conn_t *c, const char *b, size_t n) {
    if (!c->chunked) {
        sse_feed(c, b, n);
        return (long)n;
    }
    size_t off = 0;
    while (off < n) {
        if (c->chunk_left < 0) {                      /* need a size line */
            const char *nl = memchr(b + off, '\n', n - off);
            if (!nl) break;
            long size = strtol(b + off, NULL, 16);
            off = (size_t)(nl - b) + 1;
            if (size == 0) {
                conn_fail(c, "sse stream ended");
                return -1;
            }
            c->chunk_left = size + 2;                 /* data + CRLF */
        } else {
            size_t take = n - off < (size_t)c->chunk_left ? n - off : (size_t)c->chunk_left;
            size_t data = take;
            long data_left = c->chunk_left - 2;       /* bytes of data still to come */
            if ((long)data > data_left) data = data_left > 0 ? (size_t)data_left : 0;
            if (data) sse_feed(c, b + off, data);
            off += take;
            c->chunk_left -= (long)take;
            if (c->chunk_left == 0) c->chunk_left = -1;
        }
    }
    return (long)off;
}

/* The subscribe: a resume (since, user_since, epoch of the last ack) once there are offsets. */
static int send_subscribe(conn_t *c) {
    char sub[400];
    int k;
    if (c->last >= 0 || c->user_last >= 0) {   /* resume, as the packaged client does */
        k = snprintf(sub, sizeof sub, "{\"action\":\"subscribe\",\"channel\":\"%s\"", opt_channel);
        if (c->last >= 0) k += snprintf(sub + k, sizeof sub - k, ",\"since\":%ld", c->last);
        if (c->user_last >= 0)
            k += snprintf(sub + k, sizeof sub - k, ",\"user_since\":%ld", c->user_last);
        if (c->epoch[0]) k += snprintf(sub + k, sizeof sub - k, ",\"epoch\":\"%s\"", c->epoch);
        k += snprintf(sub + k, sizeof sub - k, "}");
        c->since_sent = 1;
    } else {
        k = snprintf(sub, sizeof sub, "{\"action\":\"subscribe\",\"channel\":\"%s\"}", opt_channel);
        c->since_sent = 0;
    }
    return send_masked(c, 0x1, sub, (size_t)k);
}

static long parse_headers(conn_t *c, const char *b, size_t n) {
    const char *end = memmem(b, n, "\r\n\r\n", 4);
    if (!end) return n > 16384 ? -1 : 0;
    size_t hl = (size_t)(end - b) + 4;
    if (is_sse) {
        if (n < 12 || memcmp(b + 9, "200", 3) != 0) {
            char why[200];
            snprintf(why, sizeof why, "sse refused: %.*s", (int)(hl < 120 ? hl : 120), b);
            conn_fail_ex(c, why, 0);
            return -1;
        }
        c->chunked = memmem(b, hl, "chunked", 7) != NULL;
        c->chunk_left = -1;
        mark_ready(c);
    } else {
        if (n < 12 || memcmp(b + 9, "101", 3) != 0) {
            char why[200];
            snprintf(why, sizeof why, "upgrade refused: %.*s", (int)(hl < 120 ? hl : 120), b);
            conn_fail_k(c, why, 0, n >= 12 && !memcmp(b + 9, "503", 3) ? K_HTTP_503 : K_HTTP_OTHER);
            return -1;
        }
        if (send_subscribe(c) < 0) {
            conn_fail(c, "send subscribe failed");
            return -1;
        }
        if (opt_wait_ack) c->state = ST_SUBSCRIBING;
        else mark_ready(c);
    }
    return (long)hl;
}

static char rbuf[1 << 20];

static void on_readable(conn_t *c) {
    size_t have = c->len;
    if (have) memcpy(rbuf, c->buf, have);
    ssize_t r = recv(c->fd, rbuf + have, sizeof rbuf - have, 0);
    if (r == 0) { conn_fail(c, "peer closed"); return; }
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        conn_fail(c, "recv error");
        return;
    }
    size_t n = have + (size_t)r, off = 0;
    while (off < n) {
        long used;
        int before = c->state;
        if (c->state == ST_HEADERS) used = parse_headers(c, rbuf + off, n - off);
        else if (is_sse) used = parse_sse(c, rbuf + off, n - off);
        else used = parse_ws(c, (unsigned char *)rbuf + off, n - off);
        if (used < 0) { if (c->fd >= 0) conn_fail(c, "protocol error"); return; }
        if (c->fd < 0) return;
        off += (size_t)used;
        if (used == 0 && c->state == before) break;
    }
    size_t left = n - off;
    if (left > c->cap) {
        c->cap = left * 2 > 4096 ? left * 2 : 4096;
        c->buf = xrealloc(c->buf, c->cap);
    }
    if (left) memcpy(c->buf, rbuf + off, left);
    c->len = left;
    if (!left && c->cap > 65536) { free(c->buf); c->buf = NULL; c->cap = 0; }
}

static void on_event(conn_t *c, uint32_t events) {
    if (c->state == ST_CONNECTING) {
        if (events & (EPOLLERR | EPOLLHUP | EPOLLOUT)) {
            int err = 0;
            socklen_t l = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err || (events & (EPOLLERR | EPOLLHUP))) {
                conn_fail_k(c, err == ECONNREFUSED ? "connect refused" : "connect error", 1,
                            err == ECONNREFUSED ? K_TCP_REFUSED : K_TCP_RESET);
                return;
            }
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
            epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
            c->state = ST_HEADERS;
            send_request(c);
        }
        return;
    }
    if (events & EPOLLIN) on_readable(c);
    else if (events & (EPOLLERR | EPOLLHUP)) conn_fail(c, "hangup");
}

/* ---- control ---- */
static double rusage_cpu(const struct rusage *u) {
    return u->ru_utime.tv_sec + u->ru_utime.tv_usec / 1e6 + u->ru_stime.tv_sec +
           u->ru_stime.tv_usec / 1e6;
}

static void do_reset(void) {
    memset(hist, 0, sizeof hist);
    total_received = lat_count = errors_seen = other_frames = 0;
    lat_max = lat_sum = first_recv = last_recv = 0;
    for (int i = 0; i < opt_n; i++) conns[i].received = 0;
    reset_wall = now_mono();
    getrusage(RUSAGE_SELF, &reset_usage);
}

static void print_report(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    double cpu = rusage_cpu(&u) - rusage_cpu(&reset_usage);
    double wall = now_mono() - reset_wall;
    long minr = -1, maxr = 0;
    for (int i = 0; i < opt_n; i++) {
        if (conns[i].state != ST_READY && conns[i].state != ST_CLOSED) continue;
        if (minr < 0 || conns[i].received < minr) minr = conns[i].received;
        if (conns[i].received > maxr) maxr = conns[i].received;
    }
    printf("{\"event\":\"report\",\"received\":%lu,\"open\":%d,\"closed\":%d,\"failed\":%d,"
           "\"errors\":%lu,\"other_frames\":%lu,\"min_per_conn\":%ld,\"max_per_conn\":%ld,"
           "\"lat_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,"
           "\"mean\":%.3f},\"first_recv\":%.6f,\"last_recv\":%.6f,\"wall_s\":%.3f,"
           "\"cpu_s\":%.4f,\"cpu_pct\":%.1f}\n",
           total_received, n_ready, n_closed, n_failed, errors_seen, other_frames,
           minr < 0 ? 0 : minr, maxr, percentile_ms(0.50), percentile_ms(0.90),
           percentile_ms(0.99), percentile_ms(0.999), lat_max * 1000,
           lat_count ? lat_sum / lat_count * 1000 : 0, first_recv, last_recv, wall, cpu,
           wall > 0 ? cpu / wall * 100 : 0);
    fflush(stdout);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_ready(void) {
    double *hs = malloc(sizeof(double) * (opt_n ? opt_n : 1));
    int k = 0;
    for (int i = 0; i < opt_n; i++)
        if (conns[i].state == ST_READY) hs[k++] = (conns[i].t_ready - conns[i].t_start) * 1000;
    qsort(hs, k, sizeof(double), cmp_double);
    double p50 = k ? hs[k / 2] : 0, p99 = k ? hs[(int)(k * 0.99) < k ? (int)(k * 0.99) : k - 1] : 0;
    double mx = k ? hs[k - 1] : 0;
    double total = (connect_t1 ? connect_t1 : now_mono()) - connect_t0;
    char err[600];
    size_t j = 0;
    for (const char *p = first_error; *p && j < sizeof err - 8; p++) {
        if (*p == '"' || *p == '\\') err[j++] = '\\';
        if ((unsigned char)*p < 0x20) { err[j++] = ' '; continue; }
        err[j++] = *p;
    }
    err[j] = 0;
    printf("{\"event\":\"ready\",\"mode\":\"%s\",\"requested\":%d,\"connected\":%d,\"failed\":%d,"
           "\"retries\":%ld,\"connect_s\":%.3f,\"connects_per_s\":%.1f,\"handshake_ms\":"
           "{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},\"first_error\":\"%s\"}\n",
           opt_mode, opt_n, n_ready, n_failed, n_retries, total, total > 0 ? n_ready / total : 0,
           p50, p99, mx, err);
    fflush(stdout);
    free(hs);
}

/* ---- storms and offsets ---- */
static void print_offsets(long target) {
    long minl = -1, maxl = -1;
    int tracked = 0, behind = 0, ready = 0;
    for (int i = 0; i < opt_n; i++) {
        conn_t *c = &conns[i];
        if (c->state != ST_READY) continue;
        ready++;
        if (c->last < 0) continue;
        tracked++;
        if (minl < 0 || c->last < minl) minl = c->last;
        if (c->last > maxl) maxl = c->last;
        if (target >= 0 && c->last < target) behind++;
    }
    printf("\"offsets\":{\"ready\":%d,\"tracked\":%d,\"min_last\":%ld,\"max_last\":%ld,"
           "\"target\":%ld,\"behind\":%d,\"holes\":%ld,\"lost\":%ld,\"dups\":%ld,"
           "\"acks\":%ld,\"recovered_true\":%ld,\"recovered_false\":%ld,"
           "\"skipped_unrecovered\":%ld,\"recovered_false_within_history\":%ld,"
           "\"ack_gap\":%ld,\"ack_behind\":%ld}",
           ready, tracked, minl, maxl, target, behind, off_holes, off_lost, off_dups, off_acks,
           off_rec_true, off_rec_false, off_skipped, off_rec_false_within, off_ack_gap,
           off_ack_behind);
}

static struct rusage storm_usage;

static void storm_arm(double jitter) {
    storm_on = 1;
    storm_jitter = jitter;
    storm_t0 = now_mono();
    storm_first_ack = storm_last_ack = 0;
    storm_target = storm_done = storm_down = 0;
    storm_attempts = 0;
    memset(storm_fail, 0, sizeof storm_fail);
    storm_clients_refused = storm_clients_timed_out = 0;
    storm_t_up = 0;
    memset(storm_fail_up, 0, sizeof storm_fail_up);
    storm_clients_refused_up = storm_clients_timed_out_up = 0;
    storm_first_error[0] = 0;
    for (int i = 0; i < opt_n; i++) {
        conns[i].armed = conns[i].state == ST_READY;
        storm_target += conns[i].armed;
    }
    getrusage(RUSAGE_SELF, &storm_usage);
}

static void storm_drop(double jitter) {
    storm_arm(jitter);
    storm_t_up = storm_t0;   /* the server never went away */
    int dropped = 0;
    for (int i = 0; i < opt_n; i++) {
        conn_t *c = &conns[i];
        if (c->state != ST_READY) continue;
        close_socket(c);
        storm_begin(c, storm_t0);
        dropped++;
    }
    printf("{\"event\":\"dropped\",\"dropped\":%d,\"t0\":%.6f,\"close_s\":%.4f}\n", dropped,
           storm_t0, now_mono() - storm_t0);
    fflush(stdout);
}

/* Start due reconnects, time out slow handshakes; called at most every few ms. */
static void storm_scan(double now) {
    double next = now + 0.05;
    for (int i = 0; i < opt_n && storm_active; i++) {
        conn_t *c = &conns[i];
        if (!c->storm) continue;
        if (c->state == ST_DOWN) {
            if (c->t_due <= now &&
                (opt_storm_concurrency <= 0 || storm_in_flight < opt_storm_concurrency)) {
                start_conn(c);
            } else if (c->t_due < next) {
                next = c->t_due;
            }
        } else if (c->state == ST_SUBSCRIBING && c->resub_due > 0) {
            if (c->resub_due <= now) {
                c->resub_due = 0;
                c->resubs++;
                c->t_attempt = now;   /* the timeout counts from the subscribe sent again */
                if (send_subscribe(c) < 0) conn_fail_k(c, "send subscribe failed", 1, K_TCP_RESET);
            } else if (c->resub_due < next) {
                next = c->resub_due;
            }
        } else if ((c->state == ST_CONNECTING || c->state == ST_HEADERS ||
                    c->state == ST_SUBSCRIBING) && now - c->t_attempt > opt_handshake_timeout) {
            char why[64];
            snprintf(why, sizeof why, "no ack within %.0f s", opt_handshake_timeout);
            conn_fail_k(c, why, 1, K_TIMEOUT);
            if (c->t_due < next) next = c->t_due;
        }
    }
    next_scan = next > now + 0.002 ? next : now + 0.002;
}

static void print_percentiles(const char *name, double *lat, int k) {
    qsort(lat, k, sizeof(double), cmp_double);
    double p50 = k ? lat[k / 2] : 0, p99 = k ? lat[(int)(k * 0.99) < k ? (int)(k * 0.99) : k - 1] : 0;
    double mx = k ? lat[k - 1] : 0;
    printf("\"%s\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},", name, p50, p99, mx);
}

static void print_fail(const char *name, const long *fail) {
    printf("\"%s\":{", name);
    for (int i = 0; i < K_COUNT; i++)
        printf("%s\"%s\":%ld", i ? "," : "", kind_names[i], fail[i]);
    printf("},");
}

static void print_storm(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    double now = now_mono();
    char err[600];
    size_t j = 0;
    for (const char *p = storm_first_error; *p && j < sizeof err - 8; p++) {
        if (*p == '"' || *p == '\\') err[j++] = '\\';
        if ((unsigned char)*p < 0x20) { err[j++] = ' '; continue; }
        err[j++] = *p;
    }
    err[j] = 0;
    int pending = 0;
    for (int i = 0; i < opt_n; i++) pending += conns[i].armed;
    printf("{\"event\":\"storm\",\"target\":%d,\"resubscribed\":%d,\"not_resubscribed\":%d,"
           "\"went_down\":%d,\"still_reconnecting\":%d,\"complete\":%s,\"t0\":%.6f,"
           "\"first_ack\":%.6f,\"last_ack\":%.6f,\"t_up\":%.6f,\"all_s\":%.4f,"
           "\"elapsed_s\":%.4f,\"attempts\":%ld,\"clients_refused\":%d,"
           "\"clients_timed_out\":%d,\"clients_refused_after_up\":%d,"
           "\"clients_timed_out_after_up\":%d,",
           storm_target, storm_done, pending, storm_down, storm_active,
           storm_done >= storm_target ? "true" : "false", storm_t0, storm_first_ack,
           storm_last_ack, storm_t_up, storm_last_ack ? storm_last_ack - storm_t0 : 0,
           now - storm_t0, storm_attempts, storm_clients_refused, storm_clients_timed_out,
           storm_clients_refused_up, storm_clients_timed_out_up);
    print_percentiles("reconnect_ms", storm_lat, storm_done);
    print_percentiles("reconnect_after_up_ms", storm_lat_up, storm_done);
    print_fail("failures", storm_fail);
    print_fail("failures_after_up", storm_fail_up);
    printf("\"first_error\":\"%s\",\"client_cpu_s\":%.4f,", err,
           rusage_cpu(&u) - rusage_cpu(&storm_usage));
    print_offsets(-1);
    printf("}\n");
    fflush(stdout);
}

static void dump_clients(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        printf("{\"event\":\"dump\",\"error\":\"cannot open\"}\n");
        fflush(stdout);
        return;
    }
    fprintf(f, "client\tstate\tlast\tuser_last\tholes\tlost\tdups\trecovered_true\t"
               "recovered_false\treconnects\tlast_tries\tlast_refused\tlast_timed_out\t"
               "last_reconnect_ms\n");
    for (int i = 0; i < opt_n; i++) {
        conn_t *c = &conns[i];
        fprintf(f, "%d\t%d\t%ld\t%ld\t%ld\t%ld\t%ld\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\n", i, c->state,
                c->last, c->user_last, c->holes, c->lost, c->dups, c->rec_true, c->rec_false,
                c->storms_done, c->tries, c->cycle_refused, c->cycle_timed_out,
                c->t_acked > c->t_down ? (c->t_acked - c->t_down) * 1000 : -1.0);
    }
    fclose(f);
    printf("{\"event\":\"dump\",\"path\":\"%s\"}\n", path);
    fflush(stdout);
}

static double storm_wait_deadline = -1;
static int waitoff_active;
static long waitoff_target = -1;
static double waitoff_deadline, waitoff_secs, next_offcheck;

/* 1 when every READY client's offset reached `target`. */
static int offsets_reached(long target) {
    for (int i = 0; i < opt_n; i++)
        if (conns[i].state == ST_READY && conns[i].last < target) return 0;
    return 1;
}

static char cmdbuf[4096];
static size_t cmdlen;
static long wait_target = -1;
static double wait_deadline;

/* Returns 1 to quit. */
static int handle_stdin(void) {
    ssize_t r = read(0, cmdbuf + cmdlen, sizeof cmdbuf - 1 - cmdlen);
    if (r <= 0) return 1;   /* orchestrator went away: exit */
    cmdlen += (size_t)r;
    char *nl;
    while ((nl = memchr(cmdbuf, '\n', cmdlen))) {
        *nl = 0;
        char *line = cmdbuf;
        if (!strncmp(line, "quit", 4)) return 1;
        if (!strncmp(line, "reset", 5)) { do_reset(); printf("{\"event\":\"reset\"}\n"); fflush(stdout); }
        else if (!strncmp(line, "report", 6)) print_report();
        else if (!strncmp(line, "waitoff", 7)) {
            double secs = 30;
            long target = 0;
            sscanf(line + 7, "%ld %lf", &target, &secs);
            waitoff_active = 1;
            waitoff_target = target;
            waitoff_secs = secs;
            waitoff_deadline = now_mono() + secs;
        }
        else if (!strncmp(line, "arm", 3)) {
            double jitter = 0;
            sscanf(line + 3, "%lf", &jitter);
            storm_arm(jitter);
            printf("{\"event\":\"armed\",\"target\":%d,\"t0\":%.6f}\n", storm_target, storm_t0);
            fflush(stdout);
        }
        else if (!strncmp(line, "up", 2) && (line[2] == 0 || line[2] == ' ')) {
            storm_t_up = now_mono();
            printf("{\"event\":\"up\",\"t_up\":%.6f}\n", storm_t_up);
            fflush(stdout);
        }
        else if (!strncmp(line, "drop", 4)) {
            double jitter = 0;
            sscanf(line + 4, "%lf", &jitter);
            storm_drop(jitter);
        }
        else if (!strncmp(line, "stormwait", 9)) {
            double secs = 30;
            sscanf(line + 9, "%lf", &secs);
            storm_wait_deadline = now_mono() + secs;
        }
        else if (!strncmp(line, "dump ", 5)) dump_clients(line + 5);
        else if (!strncmp(line, "wait", 4)) {
            double secs = 30;
            long target = 0;
            sscanf(line + 4, "%ld %lf", &target, &secs);
            wait_target = target;
            wait_deadline = now_mono() + secs;
        }
        size_t used = (size_t)(nl - cmdbuf) + 1;
        memmove(cmdbuf, cmdbuf + used, cmdlen - used);
        cmdlen -= used;
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: wsclient --port P --n N --tokens FILE [--mode ws|sse] [--channel C]\n"
                    "  [--host 127.0.0.1] [--path /ws] [--concurrency 64] [--connect-timeout S]"
                    " [--no-ack] [--busy-poll]\n"
                    "  [--handshake-timeout 10] [--retry-base 0.05] [--retry-cap 0.5]"
                    " [--storm-concurrency 0] [--history-size 1000]\n");
    exit(2);
}

static void load_tokens(void) {
    FILE *f = fopen(opt_tokens, "r");
    if (!f) die(opt_tokens);
    char line[8192];
    int cap = 1024;
    tokens = malloc(sizeof(char *) * cap);
    while (fgets(line, sizeof line, f)) {
        size_t k = strcspn(line, "\r\n");
        line[k] = 0;
        if (!k) continue;
        if (ntokens == cap) tokens = xrealloc(tokens, sizeof(char *) * (cap *= 2));
        tokens[ntokens++] = strdup(line);
    }
    fclose(f);
    if (!ntokens) { fprintf(stderr, "no tokens in %s\n", opt_tokens); exit(2); }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-ack")) { opt_wait_ack = 0; continue; }
        if (!strcmp(a, "--busy-poll")) { opt_busy_poll = 1; continue; }
        if (!v) usage();
        if (!strcmp(a, "--host")) opt_host = v;
        else if (!strcmp(a, "--port")) opt_port = atoi(v);
        else if (!strcmp(a, "--n")) opt_n = atoi(v);
        else if (!strcmp(a, "--mode")) opt_mode = v;
        else if (!strcmp(a, "--tokens")) opt_tokens = v;
        else if (!strcmp(a, "--channel")) opt_channel = v;
        else if (!strcmp(a, "--path")) opt_path = v;
        else if (!strcmp(a, "--concurrency")) opt_concurrency = atoi(v);
        else if (!strcmp(a, "--connect-timeout")) opt_connect_timeout = atof(v);
        else if (!strcmp(a, "--handshake-timeout")) opt_handshake_timeout = atof(v);
        else if (!strcmp(a, "--retry-base")) opt_retry_base = atof(v);
        else if (!strcmp(a, "--retry-cap")) opt_retry_cap = atof(v);
        else if (!strcmp(a, "--storm-concurrency")) opt_storm_concurrency = atoi(v);
        else if (!strcmp(a, "--history-size")) opt_history_size = atol(v);
        else usage();
        i++;
    }
    if (!opt_tokens || opt_n <= 0) usage();
    is_sse = !strcmp(opt_mode, "sse");
    if (is_sse && !strcmp(opt_path, "/ws")) opt_path = "/sse";
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)opt_n + 16 > rl.rlim_cur) {
        fprintf(stderr, "RLIMIT_NOFILE %lu is too low for %d clients\n", (unsigned long)rl.rlim_cur, opt_n);
        return 2;
    }
    srand((unsigned)getpid());
    load_tokens();
    conns = calloc((size_t)opt_n, sizeof(conn_t));
    for (int i = 0; i < opt_n; i++) conns[i].fd = -1, conns[i].last = conns[i].user_last = -1;
    storm_lat = calloc((size_t)opt_n + 1, sizeof(double));
    storm_lat_up = calloc((size_t)opt_n + 1, sizeof(double));
    next_scan = 1e300;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");

    do_reset();
    connect_t0 = now_mono();
    start_next();
    int announced = 0;
    struct epoll_event evs[1024];
    for (;;) {
        int timeout = opt_busy_poll && announced ? 0 : 100;
        if (storm_active || waitoff_active || storm_wait_deadline >= 0)
            timeout = opt_busy_poll ? 0 : 2;
        int n = epoll_wait(epfd, evs, 1024, timeout);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id == UINT32_MAX) {          /* stdin: commands, read once everyone connected */
                if (handle_stdin()) goto out;
                continue;
            }
            on_event(&conns[id], evs[i].events);
        }
        double t = now_mono();
        if (!announced && (n_ready + n_failed >= opt_n || t - connect_t0 > opt_connect_timeout)) {
            announced = 1;
            print_ready();
            struct epoll_event sev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
            epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
        }
        if (wait_target >= 0 && ((long)total_received >= wait_target || t >= wait_deadline)) {
            wait_target = -1;
            print_report();
        }
        if (storm_active && t >= next_scan) storm_scan(t);
        if (storm_wait_deadline >= 0 && (storm_done >= storm_target || t >= storm_wait_deadline)) {
            storm_wait_deadline = -1;
            print_storm();
        }
        if (waitoff_active && t >= next_offcheck) {
            next_offcheck = t + 0.01;
            if (offsets_reached(waitoff_target) || t >= waitoff_deadline) {
                printf("{\"event\":\"offsets\",\"waited_s\":%.3f,",
                       t - (waitoff_deadline - waitoff_secs));
                print_offsets(waitoff_target);
                printf("}\n");
                fflush(stdout);
                waitoff_active = 0;
            }
        }
    }
out:
    for (int i = 0; i < opt_n; i++) if (conns[i].fd >= 0) close(conns[i].fd);
    return 0;
}
