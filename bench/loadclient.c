/* loadclient: a lean SSE / WebSocket load client for the fan-out benchmarks (bench/run.py).
 *
 * One process, one epoll loop, non-blocking sockets, no allocation per event.
 * It holds many connections, finds each delivered envelope's "session", "seq"
 * and "ts" (producer clock, Unix ns) by scanning the bytes, and counts:
 * deliveries, gaps and duplicates per session stream (seq must grow by one),
 * and the latency from ts to receipt, in a 10-µs histogram. A Python client
 * costs more per delivery than the gateway it measures; this one costs a few
 * µs, most of it the read() system call.
 *
 *   loadclient sse|ws PORT SPECFILE
 *
 * SPECFILE has one line per connection: `S|M <path>[\t<frame>]`; S follows one
 * session (seq checked per connection), M many (a firehose: seq checked per
 * session id `s<N>`); for ws, <frame> is sent once the socket is open (a
 * subscribe frame; none for servers that subscribe by path). Commands on
 * stdin: `measure T0` counts only events with ts >= T0 from then on; `stats`
 * prints a progress line; `stop` prints the result as one JSON line and exits.
 * It prints `ready OK FAILED` once every connection is open or failed.
 * With LOADCLIENT_UNTIL_SEQ=N in the environment (a replay storm, bench/storm.py)
 * a single-session connection is closed once it has received seq N, and the
 * result also has, per connection, the events it got and the µs from its
 * connect to seq N (-1 if it never got there).
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
#include <time.h>
#include <unistd.h>

enum { ST_IDLE, ST_CONNECTING, ST_HEADERS, ST_OPEN, ST_CLOSED, ST_FAILED, ST_DONE };

#define MAX_SESSIONS 100000
#define HIST_BUCKETS 1000000 /* 10 µs each: up to 10 s */
#define IN_FLIGHT 128         /* connects not yet answered, at most */
#define BUF_SIZE (1 << 20)

typedef struct {
    int fd, state, multi;
    char *path, *frame;
    char *carry;
    size_t carry_len, carry_cap;
    int64_t last_seq;
    int64_t *last_by_session;
    uint64_t events, measured, gaps, dups;
    int64_t start_ns, done_ns;
} conn_t;

static conn_t *conns;
static int nconns, ws_mode, port, in_flight, next_conn, opened, failed, closed_early;
static int ready_printed, completed;
static int64_t until_seq;
static int64_t t0_ns = INT64_MAX;
static uint32_t *hist;
static uint64_t hist_over;
static char *buf;
static int epfd;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void keep(conn_t *c, const char *p, size_t n) {
    if (n > c->carry_cap) {
        c->carry_cap = n * 2;
        c->carry = realloc(c->carry, c->carry_cap);
        if (!c->carry) die("realloc");
    }
    memmove(c->carry, p, n);
    c->carry_len = n;
}

static int64_t digits(const char *p, const char *end, const char **out) {
    int64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
    *out = p;
    return v;
}

/* Every envelope in [p, end): "session":"s<N>" ... "seq":N ... "ts":N, in that order. */
static void scan(conn_t *c, const char *p, const char *end, int64_t now) {
    static const char KS[] = "\"session\":\"", KQ[] = "\"seq\":", KT[] = "\"ts\":";
    for (;;) {
        const char *s = memmem(p, end - p, KS, sizeof KS - 1);
        if (!s) return;
        s += sizeof KS - 1;
        int64_t sid = -1;
        if (s < end && (*s < '0' || *s > '9')) sid = digits(s + 1, end, &s);
        const char *q = memmem(s, end - s, KQ, sizeof KQ - 1);
        if (!q) return;
        int64_t seq = digits(q + sizeof KQ - 1, end, &q);
        const char *t = memmem(q, end - q, KT, sizeof KT - 1);
        if (!t) return;
        int64_t ts = digits(t + sizeof KT - 1, end, &p);
        int64_t *last = &c->last_seq;
        if (c->multi) {
            if (sid < 0 || sid >= MAX_SESSIONS) sid = 0;
            if (!c->last_by_session) c->last_by_session = calloc(MAX_SESSIONS, sizeof(int64_t));
            last = &c->last_by_session[sid];
        }
        if (*last && seq != *last + 1) {
            if (seq <= *last) c->dups++;
            else c->gaps++;
        }
        if (seq > *last) *last = seq;
        c->events++;
        if (until_seq && !c->multi && *last >= until_seq && !c->done_ns) c->done_ns = now;
        if (ts >= t0_ns) {
            c->measured++;
            int64_t us = (now - ts) / 10000;
            if (us < 0) us = 0;
            if (us >= HIST_BUCKETS) hist_over++;
            else hist[us]++;
        }
    }
}

static void send_all(conn_t *c, const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = write(c->fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { usleep(100); continue; } /* tiny frames: rare */
            c->state = ST_CLOSED;
            return;
        }
        data += w;
        n -= (size_t)w;
    }
}

static void ws_send(conn_t *c, int opcode, const char *payload, size_t n) {
    char frame[16 + 4096];
    size_t h = 0;
    if (n > 4096) n = 4096;
    frame[h++] = (char)(0x80 | opcode);
    if (n < 126) frame[h++] = (char)(0x80 | n);
    else { frame[h++] = (char)(0x80 | 126); frame[h++] = (char)(n >> 8); frame[h++] = (char)n; }
    memset(frame + h, 0, 4); /* mask key 0: the payload goes as is */
    h += 4;
    memcpy(frame + h, payload, n);
    send_all(c, frame, h + n);
}

/* Complete WebSocket frames in [p, end); returns where the incomplete rest starts. */
static const char *ws_frames(conn_t *c, const char *p, const char *end, int64_t now) {
    while (end - p >= 2) {
        unsigned op = (unsigned char)p[0] & 0x0f;
        uint64_t len = (unsigned char)p[1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            if (end - p < 4) break;
            len = ((uint64_t)(unsigned char)p[2] << 8) | (unsigned char)p[3];
            h = 4;
        } else if (len == 127) {
            if (end - p < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | (unsigned char)p[2 + i];
            h = 10;
        }
        if ((uint64_t)(end - p) < h + len) break;
        const char *payload = p + h;
        if (op == 1 || op == 0) scan(c, payload, payload + len, now);
        else if (op == 9) ws_send(c, 10, payload, len);
        else if (op == 8) c->state = ST_CLOSED;
        p = payload + len;
    }
    return p;
}

static void start_connect(int i) {
    conn_t *c = &conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    struct linger lg = {1, 0}; /* exit with RST: no TIME_WAIT pile-up across runs */
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) die("connect");
    c->state = ST_CONNECTING;
    c->start_ns = now_ns();
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    in_flight++;
}

static void fill_connects(void) {
    while (in_flight < IN_FLIGHT && next_conn < nconns) start_connect(next_conn++);
    if (!ready_printed && opened + failed == nconns) {
        printf("ready %d %d\n", opened, failed);
        fflush(stdout);
        ready_printed = 1;
    }
}

static void settle(conn_t *c, int ok) {
    in_flight--;
    if (ok) opened++;
    else {
        failed++;
        c->state = ST_FAILED;
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
}

static void on_writable(int i) {
    conn_t *c = &conns[i];
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) { fprintf(stderr, "connect: %s\n", strerror(err)); settle(c, 0); return; }
    char req[8192];
    int n;
    if (ws_mode)
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     c->path);
    else
        n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
                     c->path);
    send_all(c, req, (size_t)n);
    c->state = ST_HEADERS;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_readable(int i) {
    conn_t *c = &conns[i];
    size_t have = c->carry_len;
    if (have) memcpy(buf, c->carry, have);
    ssize_t n = read(c->fd, buf + have, BUF_SIZE - have);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (c->state == ST_HEADERS) settle(c, 0);
        else { c->state = ST_CLOSED; closed_early++; epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); }
        return;
    }
    int64_t now = now_ns();
    const char *p = buf, *end = buf + have + n;
    if (c->state == ST_HEADERS) {
        const char *h = memmem(p, end - p, "\r\n\r\n", 4);
        if (!h) { keep(c, p, end - p); return; }
        int ok = (end - p > 12) && (memcmp(p + 9, ws_mode ? "101" : "200", 3) == 0);
        if (!ok) {
            const char *eol = memchr(p, '\r', end - p);
            fprintf(stderr, "refused: %.*s\n", (int)(eol ? eol - p : 40), p);
            c->carry_len = 0;
            settle(c, 0);
            return;
        }
        c->state = ST_OPEN;
        settle(c, 1);
        if (ws_mode && c->frame && *c->frame) ws_send(c, 1, c->frame, strlen(c->frame));
        p = h + 4;
    }
    const char *rest;
    if (ws_mode) rest = ws_frames(c, p, end, now);
    else {
        /* Complete SSE messages end with a blank line; keep the partial one. */
        rest = p;
        for (const char *q = end; q - p >= 2; q--)
            if (q[-1] == '\n' && q[-2] == '\n') { rest = q; break; }
        if (rest > p) scan(c, p, rest, now);
    }
    if (rest < end) keep(c, rest, end - rest);
    else c->carry_len = 0;
    if (c->done_ns) {
        c->state = ST_DONE;
        completed++;
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
}

static void print_result(void) {
    uint64_t events = 0, measured = 0, gaps = 0, dups = 0;
    int open_now = 0;
    for (int i = 0; i < nconns; i++) {
        events += conns[i].events;
        measured += conns[i].measured;
        gaps += conns[i].gaps;
        dups += conns[i].dups;
        open_now += conns[i].state == ST_OPEN;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"conns\":%d,\"opened\":%d,\"failed\":%d,\"open\":%d,\"closed_early\":%d,\"events\":%lu,"
           "\"measured\":%lu,\"gaps\":%lu,\"dups\":%lu,\"cpu_s\":%.3f,\"hist_over\":%lu,\"per_conn\":[",
           nconns, opened, failed, open_now, closed_early, events, measured, gaps, dups, cpu, hist_over);
    for (int i = 0; i < nconns; i++) printf(i ? ",%lu" : "%lu", conns[i].measured);
    printf("],\"last\":[");
    for (int i = 0; i < nconns; i++) printf(i ? ",%ld" : "%ld", (long)conns[i].last_seq);
    if (until_seq) {
        printf("],\"completed\":%d,\"got\":[", completed);
        for (int i = 0; i < nconns; i++) printf(i ? ",%lu" : "%lu", conns[i].events);
        printf("],\"done_us\":[");
        for (int i = 0; i < nconns; i++)
            printf(i ? ",%ld" : "%ld", conns[i].done_ns ? (long)((conns[i].done_ns - conns[i].start_ns) / 1000) : -1L);
    }
    printf("],\"hist\":[");
    int first = 1;
    for (int b = 0; b < HIST_BUCKETS; b++)
        if (hist[b]) { printf(first ? "[%d,%u]" : ",[%d,%u]", b, hist[b]); first = 0; }
    printf("]}\n");
    fflush(stdout);
}

static int on_command(void) {
    char line[256];
    if (!fgets(line, sizeof line, stdin)) return 0;
    if (strncmp(line, "measure ", 8) == 0) t0_ns = strtoll(line + 8, NULL, 10);
    else if (strncmp(line, "stats", 5) == 0) {
        uint64_t events = 0;
        for (int i = 0; i < nconns; i++) events += conns[i].events;
        printf("stats %d %d %d %lu %d\n", opened, failed, closed_early, events, completed);
        fflush(stdout);
    } else if (strncmp(line, "stop", 4) == 0) return 0;
    return 1;
}

static void load_spec(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) die(file);
    size_t cap = 1024;
    conns = calloc(cap, sizeof(conn_t));
    char *line = NULL;
    size_t n = 0;
    while (getline(&line, &n, f) > 0) {
        line[strcspn(line, "\r\n")] = 0;
        if (strlen(line) < 3) continue;
        if ((size_t)nconns == cap) {
            cap *= 2;
            conns = realloc(conns, cap * sizeof(conn_t));
            memset(conns + nconns, 0, (cap - nconns) * sizeof(conn_t));
        }
        conn_t *c = &conns[nconns++];
        c->multi = line[0] == 'M';
        char *tab = strchr(line + 2, '\t');
        if (tab) { *tab = 0; c->frame = strdup(tab + 1); }
        c->path = strdup(line + 2);
    }
    free(line);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: loadclient sse|ws PORT SPECFILE\n"); return 2; }
    ws_mode = strcmp(argv[1], "ws") == 0;
    port = atoi(argv[2]);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    load_spec(argv[3]);
    const char *until = getenv("LOADCLIENT_UNTIL_SEQ");
    until_seq = until ? strtoll(until, NULL, 10) : 0;
    hist = calloc(HIST_BUCKETS, sizeof(uint32_t));
    buf = malloc(BUF_SIZE);
    epfd = epoll_create1(0);
    setvbuf(stdin, NULL, _IONBF, 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    fill_connects();
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(epfd, events, 512, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int k = 0; k < n; k++) {
            uint32_t i = events[k].data.u32;
            if (i == UINT32_MAX) {
                if (!on_command()) { print_result(); return 0; }
                continue;
            }
            conn_t *c = &conns[i];
            if (c->state == ST_CONNECTING) on_writable((int)i);
            else if (c->state == ST_HEADERS || c->state == ST_OPEN) on_readable((int)i);
        }
        fill_connects();
    }
}
