/*
 * ZooKeeper load with Apache ZooKeeper's C client library (libzookeeper_st, asynchronous API):
 * the neutral fast ZooKeeper client of `kiln bench compare`. A thin driver: the protocol, the
 * sessions and the pipelining are the library's; this program only issues requests, runs the
 * library's event loop (zookeeper_interest / poll / zookeeper_process, the single-threaded
 * library's documented way) and times the completions. One library setting differs from its
 * default: host name resolution only on connection loss (zoo_set_servers_resolution_delay -1).
 *
 * N sessions (zookeeper_init: one TCP connection each), driven from one thread, each keeping
 * `--in-flight` requests outstanding (closed loop: a completion issues the next request);
 * operations drawn from `--mix` (get, set, create, delete) over `--keys` pool nodes with
 * `--value-size`-byte values: zoo_aget, zoo_aset, zoo_acreate, zoo_adelete. Latency is measured
 * from each request's issue to its completion. After `--warmup` seconds the next `--duration`
 * seconds are measured. The options and the result line are those of
 * bench/reference/zk-java/ZkLoad.java, so the harness runs both alike:
 *   RESULT ops=<n> seconds=<s> ops_per_sec=<x> errors=<e> mean_us=.. p50_us=.. p90_us=..
 *          p99_us=.. p999_us=.. p9999_us=.. max_us=.. client_cpu_us_per_op=..
 *          server_cpu_us_per_op_window=.. (the server's CPU over the measured window; -1: unknown)
 * `--server-pid <pid>` names the server's process on this machine (the harness passes the one
 * it started); without it the server's CPU is not read (-1).
 *
 * Build: cc -O2 -o zkload zkload.c -lzookeeper_st -lm   (Debian libzookeeper-st-dev)
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

static const char *server = "127.0.0.1:2181";
static int sessions = 16;
static int in_flight = 32;
static int value_size = 100;
static int keys = 1000;
static double warmup_s = 0;
static double duration_s = 10;
static const char *root = "/kiln-bench-c";
static long server_pid = -1;
/* Cumulative weights of get, set, create, delete. */
static int weights[4] = {100, 100, 100, 100};

static int stop = 0;
static int64_t measure_from, measure_to;
static char *value;
static long errors_total = 0;

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "zkload: %s\n", what);
  exit(1);
}

/* User + system CPU seconds of pid from /proc/<pid>/stat (-1 when unknown). */
static double proc_cpu_s(long pid) {
  if (pid <= 0) return -1;
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  p += 2; /* fields from 3 (state) on */
  unsigned long long ut = 0, st = 0;
  /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
  if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static void parse_mix(const char *s) {
  int w[4] = {0, 0, 0, 0};
  char *copy = strdup(s), *save = NULL;
  for (char *part = strtok_r(copy, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(part, '=');
    if (!eq) die("--mix: want op=weight,...");
    *eq = 0;
    int v = atoi(eq + 1);
    if (!strcmp(part, "get")) w[0] += v;
    else if (!strcmp(part, "set")) w[1] += v;
    else if (!strcmp(part, "create")) w[2] += v;
    else if (!strcmp(part, "delete")) w[3] += v;
    else die("--mix: only get, set, create and delete are supported");
  }
  free(copy);
  for (int i = 1; i < 4; i++) w[i] += w[i - 1];
  if (w[3] <= 0) die("--mix: empty");
  memcpy(weights, w, sizeof w);
}

struct session;

/* One request in flight: its session, issue time and, for creates and deletes, its path. */
struct req {
  struct session *s;
  int64_t t0;
  char path[128];
};

struct session {
  int id;
  zhandle_t *zh;
  int connected;
  uint64_t rng;
  long outstanding;
  /* Paths this session created and has not deleted (a ring). */
  char (*created)[128];
  int created_head, created_len, created_cap;
  long made;
  int64_t *samples;
  size_t count, cap;
};

/* Every handle the event loop drives: the set-up session first, then the load sessions. */
static struct session *all_sessions;
static int n_handles;

static uint64_t next_rand(struct session *s) {
  s->rng ^= s->rng << 13;
  s->rng ^= s->rng >> 7;
  s->rng ^= s->rng << 17;
  return s->rng;
}

static void issue(struct session *s);

static void done(struct req *r, int rc) {
  struct session *s = r->s;
  int64_t now = now_ns();
  if (rc != ZOK) errors_total++;
  if (r->t0 >= measure_from && now <= measure_to) {
    if (s->count == s->cap) {
      s->cap *= 2;
      s->samples = realloc(s->samples, s->cap * sizeof *s->samples);
      if (!s->samples) die("out of memory");
    }
    s->samples[s->count++] = now - r->t0;
  }
  s->outstanding--;
  free(r);
  issue(s);
}

static void data_done(int rc, const char *v, int len, const struct Stat *st, const void *d) {
  (void)v; (void)len; (void)st;
  done((struct req *)d, rc);
}
static void stat_done(int rc, const struct Stat *st, const void *d) {
  (void)st;
  done((struct req *)d, rc);
}
static void string_done(int rc, const char *name, const void *d) {
  (void)name;
  done((struct req *)d, rc);
}
static void void_done(int rc, const void *d) { done((struct req *)d, rc); }

static void issue(struct session *s) {
  if (stop) return;
  struct req *r = calloc(1, sizeof *r);
  if (!r) die("out of memory");
  r->s = s;
  s->outstanding++;
  int pick = (int)(next_rand(s) % (uint64_t)weights[3]);
  char pool[128];
  snprintf(pool, sizeof pool, "%s/p%d", root, (int)(next_rand(s) % (uint64_t)keys));
  int op; /* 0 get, 1 set, 2 create, 3 delete */
  if (pick < weights[0]) op = 0;
  else if (pick < weights[1]) op = 1;
  else if (pick < weights[2] || s->created_len == 0) op = 2;
  else op = 3;
  if (op == 2) {
    snprintf(r->path, sizeof r->path, "%s/s%d-%ld", root, s->id, s->made++);
    if (s->created_len == s->created_cap) {
      /* Grow the ring, keeping its order. */
      int cap = s->created_cap * 2;
      char (*bigger)[128] = malloc((size_t)cap * sizeof *bigger);
      if (!bigger) die("out of memory");
      for (int i = 0; i < s->created_len; i++)
        memcpy(bigger[i], s->created[(s->created_head + i) % s->created_cap], 128);
      free(s->created);
      s->created = bigger;
      s->created_head = 0;
      s->created_cap = cap;
    }
    memcpy(s->created[(s->created_head + s->created_len) % s->created_cap], r->path, 128);
    s->created_len++;
  } else if (op == 3) {
    memcpy(r->path, s->created[s->created_head], 128);
    s->created_head = (s->created_head + 1) % s->created_cap;
    s->created_len--;
  }
  r->t0 = now_ns();
  int rc;
  switch (op) {
    case 0: rc = zoo_aget(s->zh, pool, 0, data_done, r); break;
    case 1: rc = zoo_aset(s->zh, pool, value, value_size, -1, stat_done, r); break;
    case 2:
      rc = zoo_acreate(s->zh, r->path, value, value_size, &ZOO_OPEN_ACL_UNSAFE, 0, string_done, r);
      break;
    default: rc = zoo_adelete(s->zh, r->path, -1, void_done, r); break;
  }
  if (rc != ZOK) {
    /* Not queued (the session is closing): count it, do not retry. */
    s->outstanding--;
    errors_total++;
    free(r);
  }
}

static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
  (void)zh; (void)path;
  struct session *s = ctx;
  if (type == ZOO_SESSION_EVENT) s->connected = state == ZOO_CONNECTED_STATE;
}

/* One turn of the library's event loop over every handle: at most `max_ms` of waiting. */
static void drive(int max_ms) {
  struct pollfd pfd[1024];
  int timeout = max_ms;
  for (int i = 0; i < n_handles; i++) {
    int fd = -1, interest = 0;
    struct timeval tv = {0, 0};
    zookeeper_interest(all_sessions[i].zh, &fd, &interest, &tv);
    pfd[i].fd = fd;
    pfd[i].events = (short)(((interest & ZOOKEEPER_READ) ? POLLIN : 0) |
                            ((interest & ZOOKEEPER_WRITE) ? POLLOUT : 0));
    pfd[i].revents = 0;
    int ms = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
    if (ms < timeout) timeout = ms < 0 ? 0 : ms;
  }
  poll(pfd, (nfds_t)n_handles, timeout);
  for (int i = 0; i < n_handles; i++) {
    int ev = 0;
    if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) ev |= ZOOKEEPER_READ;
    if (pfd[i].revents & POLLOUT) ev |= ZOOKEEPER_WRITE;
    /* zookeeper_process reads at most one reply per call: take what the socket holds (up to
       one turn's worth, so every session gets its turn). */
    for (int k = 0; k < 256; k++) {
      if (zookeeper_process(all_sessions[i].zh, ev) != ZOK || !(ev & ZOOKEEPER_READ)) break;
    }
  }
}

static void connect_all(void) {
  int64_t deadline = now_ns() + 30000000000LL;
  for (int i = 0; i < n_handles; i++) {
    struct session *s = &all_sessions[i];
    s->zh = zookeeper_init(server, watcher, 30000, NULL, s, 0);
    if (!s->zh) die("zookeeper_init failed");
    /* The library's default re-resolves the server's name on every turn of the event loop
       (getaddrinfo: a netlink socket and /etc/hosts per call); -1 resolves on connection loss
       only (the documented setting for a fixed server list). */
    if (zoo_set_servers_resolution_delay(s->zh, -1) != ZOK) die("zoo_set_servers_resolution_delay");
  }
  for (;;) {
    int up = 0;
    for (int i = 0; i < n_handles; i++) up += all_sessions[i].connected;
    if (up == n_handles) return;
    if (now_ns() > deadline) die("no session with the server");
    drive(10);
  }
}

static long setup_left;
static void setup_done(int rc, const char *name, const void *d) {
  (void)name; (void)d;
  if (rc != ZOK && rc != ZNODEEXISTS) die("creating the pool failed");
  setup_left--;
}
static void setup_deleted(int rc, const void *d) {
  (void)rc; (void)d;
  setup_left--;
}
static void wait_setup(const char *what) {
  int64_t deadline = now_ns() + 60000000000LL;
  while (setup_left > 0) {
    if (now_ns() > deadline) die(what);
    drive(10);
  }
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static double pct(const int64_t *sorted, size_t n, double q) {
  if (n == 0) return 0;
  double idx = q * (double)n;
  size_t i = (size_t)idx;
  if ((double)i < idx) i++; /* ceil */
  if (i > 0) i--;
  if (i >= n) i = n - 1;
  return sorted[i] / 1e3;
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--server")) server = v;
    else if (!strcmp(k, "--sessions")) sessions = atoi(v);
    else if (!strcmp(k, "--in-flight")) in_flight = atoi(v);
    else if (!strcmp(k, "--value-size")) value_size = atoi(v);
    else if (!strcmp(k, "--keys")) keys = atoi(v);
    else if (!strcmp(k, "--warmup")) warmup_s = atof(v);
    else if (!strcmp(k, "--duration")) duration_s = atof(v);
    else if (!strcmp(k, "--root")) root = v;
    else if (!strcmp(k, "--server-pid")) server_pid = atol(v);
    else if (!strcmp(k, "--mix")) parse_mix(v);
    else {
      fprintf(stderr, "zkload: unknown option %s\n", k);
      return 2;
    }
  }
  if (argc % 2 == 0) die("options come in pairs: --name value");
  if (sessions < 1 || sessions > 1000 || in_flight < 1 || keys < 1 || value_size < 0 ||
      duration_s <= 0)
    die("sessions 1-1000, in-flight and keys at least 1, duration above 0");
  if (server_pid != -1 && proc_cpu_s(server_pid) < 0) die("--server-pid: cannot read its /proc stat");
  zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  value = malloc((size_t)value_size + 1);
  memset(value, 'x', (size_t)value_size);

  n_handles = sessions + 1;
  all_sessions = calloc((size_t)n_handles, sizeof *all_sessions);
  for (int i = 0; i < n_handles; i++) {
    struct session *s = &all_sessions[i];
    s->id = i;
    s->rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
    s->created_cap = 64;
    s->created = malloc((size_t)s->created_cap * sizeof *s->created);
    s->cap = 1 << 16;
    s->samples = malloc(s->cap * sizeof *s->samples);
  }
  connect_all();
  zhandle_t *setup = all_sessions[0].zh;
  setup_left = 1;
  zoo_acreate(setup, root, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, setup_done, NULL);
  wait_setup("creating the root node timed out");
  setup_left = keys;
  for (int k = 0; k < keys; k++) {
    char p[128];
    snprintf(p, sizeof p, "%s/p%d", root, k);
    if (zoo_acreate(setup, p, value, value_size, &ZOO_OPEN_ACL_UNSAFE, 0, setup_done, NULL) != ZOK)
      die("creating pool nodes failed");
  }
  wait_setup("creating pool nodes timed out");

  int64_t start = now_ns();
  measure_from = start + (int64_t)(warmup_s * 1e9);
  measure_to = measure_from + (int64_t)(duration_s * 1e9);
  for (int i = 1; i < n_handles; i++)
    for (int j = 0; j < in_flight; j++) issue(&all_sessions[i]);
  while (now_ns() < measure_from) drive(1);
  double cpu0 = self_cpu_s();
  double server0 = proc_cpu_s(server_pid);
  while (now_ns() < measure_to) drive(1);
  double cpu1 = self_cpu_s();
  double server1 = proc_cpu_s(server_pid);
  double server_window = server0 < 0 || server1 < 0 ? -1 : server1 - server0;
  stop = 1;
  int64_t drain_by = now_ns() + 10000000000LL;
  for (;;) {
    long o = 0;
    for (int i = 1; i < n_handles; i++) o += all_sessions[i].outstanding;
    if (o <= 0 || now_ns() > drain_by) break;
    drive(5);
  }
  size_t total = 0;
  for (int i = 1; i < n_handles; i++) total += all_sessions[i].count;
  int64_t *all = malloc((total + 1) * sizeof *all);
  size_t at = 0;
  for (int i = 1; i < n_handles; i++) {
    memcpy(all + at, all_sessions[i].samples, all_sessions[i].count * sizeof *all);
    at += all_sessions[i].count;
  }
  qsort(all, total, sizeof *all, cmp64);
  double sum = 0;
  for (size_t i = 0; i < total; i++) sum += (double)all[i];
  double n = (double)total;
  printf("CLIENT cpu_s=%.2f cpu_us_per_op=%.2f\n", cpu1 - cpu0,
         total ? (cpu1 - cpu0) * 1e6 / n : 0.0);
  printf("RESULT ops=%zu seconds=%.3f ops_per_sec=%.1f errors=%ld mean_us=%.1f p50_us=%.1f p90_us=%.1f"
         " p99_us=%.1f p999_us=%.1f p9999_us=%.1f max_us=%.1f client_cpu_us_per_op=%.2f"
         " server_cpu_us_per_op_window=%.2f\n",
         total, duration_s, n / duration_s, errors_total, total ? sum / n / 1e3 : 0.0,
         pct(all, total, 0.50), pct(all, total, 0.90), pct(all, total, 0.99), pct(all, total, 0.999),
         pct(all, total, 0.9999), total ? all[total - 1] / 1e3 : 0.0,
         total ? (cpu1 - cpu0) * 1e6 / n : 0.0,
         server_window < 0 || total == 0 ? -1.0 : server_window * 1e6 / n);
  fflush(stdout);

  /* Clean up: each session's leftover nodes, then the pool and the root. */
  setup_left = 0;
  for (int i = 1; i < n_handles; i++) {
    struct session *s = &all_sessions[i];
    for (int j = 0; j < s->created_len; j++) {
      setup_left++;
      zoo_adelete(s->zh, s->created[(s->created_head + j) % s->created_cap], -1, setup_deleted, NULL);
    }
  }
  wait_setup("cleanup timed out");
  setup_left = keys;
  for (int k = 0; k < keys; k++) {
    char p[128];
    snprintf(p, sizeof p, "%s/p%d", root, k);
    zoo_adelete(setup, p, -1, setup_deleted, NULL);
  }
  wait_setup("cleanup timed out");
  setup_left = 1;
  zoo_adelete(setup, root, -1, setup_deleted, NULL);
  wait_setup("cleanup timed out");
  for (int i = 0; i < n_handles; i++) zookeeper_close(all_sessions[i].zh);
  return 0;
}
