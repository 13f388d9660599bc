/*
 * worker_run(): the session with the scheduler (Connect stream, heartbeats,
 * reconnect with backoff), the assignment queue and the slot threads that
 * execute actions and report them with Complete.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cas_client.h"
#include "db_err.h"
#include "db_log.h"
#include "distbuild/worker/v1/worker.pb-c.h"
#include "rpc_client.h"
#include "worker.h"
#include "worker_cache.h"
#include "worker_jobs.h"
#include "worker_exec.h"
#include "worker_http.h"
#include "worker_int.h"

#define SVC "/distbuild.worker.v1.WorkerService/"

typedef Distbuild__Worker__V1__Assignment Assignment;

typedef struct qitem {
  Assignment *a; /* unpacked, owned */
  uint64_t gen;  /* session it came from */
  struct qitem *next;
} qitem;

typedef struct wk_worker {
  const worker_config *cfg;
  volatile sig_atomic_t *stop;
  wk_cache *cache;
  wk_jobs *jobs; /* NULL: no jobserver */
  wk_metrics m;
  const sbx_features *feat;
  char feat_line[512];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  qitem *head, *tail;
  char **running; /* per slot: lease id being run (owned) or NULL */
  int *cancel_fd; /* per slot: eventfd, written to cancel running[slot] */
  char session_id[80];
  uint64_t gen;
  int64_t hb_ms;
} wk_worker;

typedef struct slot_arg {
  wk_worker *w;
  int slot;
} slot_arg;

static int stopping(wk_worker *w) {
  return *w->stop != 0;
}

static void timed_wait(wk_worker *w, int ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(&w->cv, &w->mu, &ts);
}

/* Sleep up to ms, returning early when stopping. */
static void nap(wk_worker *w, int ms) {
  int64_t end = rpc_now_ms() + ms;
  pthread_mutex_lock(&w->mu);
  while (!stopping(w) && rpc_now_ms() < end)
    timed_wait(w, (int)(end - rpc_now_ms()) > 100 ? 100
                                                  : (int)(end - rpc_now_ms()));
  pthread_mutex_unlock(&w->mu);
}

/* Drop queued assignments (of gen, or all when gen == 0) or one lease. */
static void drop_queued(wk_worker *w, uint64_t gen, const char *lease) {
  qitem **pp = &w->head, *prev = NULL;
  while (*pp) {
    qitem *q = *pp;
    if ((lease && !strcmp(q->a->lease_id, lease)) ||
        (!lease && (gen == 0 || q->gen == gen))) {
      *pp = q->next;
      if (w->tail == q)
        w->tail = prev;
      distbuild__worker__v1__assignment__free_unpacked(q->a, NULL);
      free(q);
      continue;
    }
    prev = q;
    pp = &q->next;
  }
}

/* Kill slot i's running action (w->mu held). 0, or -1 with errno. */
static int kill_slot(wk_worker *w, int i) {
  uint64_t one = 1;
  return write(w->cancel_fd[i], &one, sizeof(one)) == (ssize_t)sizeof(one) ? 0
                                                                           : -1;
}

/* The scheduler no longer wants lease: drop it from the queue, or kill
 * its sandbox if a slot runs it. Called with w->mu held; the slot drains
 * its eventfd under w->mu before it takes the next lease, so a late
 * cancel never hits the wrong action. */
static void cancel_lease(wk_worker *w, const char *lease) {
  drop_queued(w, 0, lease);
  for (int i = 0; i < w->cfg->slots; i++) {
    if (!w->running[i] || strcmp(w->running[i], lease) != 0)
      continue;
    if (kill_slot(w, i) != 0)
      DB_WARN("worker", "slot %d: cannot cancel lease %s: %s", i, lease,
              strerror(errno));
    else
      DB_INFO("worker", "slot %d: lease %s cancelled by the scheduler", i,
              lease);
  }
}

/* Reset a non-blocking eventfd. */
static void drain(int fd) {
  uint64_t n;
  while (read(fd, &n, sizeof(n)) > 0) {
  }
}

/* ---- slot threads ---------------------------------------------------------
 */

static void complete(wk_worker *w, cas_client *cas, const Assignment *a,
                     wk_exec_result *res) {
  Distbuild__Worker__V1__CompleteRequest req;
  char sid[80];
  uint8_t *buf = NULL, *resp = NULL;
  size_t len = 0, rlen = 0;
  int64_t backoff = 100, deadline = rpc_now_ms() + 30000;

  pthread_mutex_lock(&w->mu);
  snprintf(sid, sizeof(sid), "%s", w->session_id);
  pthread_mutex_unlock(&w->mu);
  distbuild__worker__v1__complete_request__init(&req);
  req.worker_id = (char *)w->cfg->id;
  req.session_id = sid;
  req.lease_id = a->lease_id;
  req.response = res->resp;
  if (reapi_pb_pack(&req.base, &buf, &len) != 0) {
    atomic_fetch_add(&w->m.completes_failed, 1);
    return;
  }

  for (;;) {
    rpc_status st = {0};
    int rv = rpc_client_unary(cas_client_rpc(cas), SVC "Complete", buf, len,
                              10000, &resp, &rlen, &st);
    free(resp);
    resp = NULL;
    if (rv == 0 && st.code == RPC_OK) {
      rpc_status_clear(&st);
      break;
    }
    if (rv != 0 || st.code != RPC_UNAVAILABLE || rpc_now_ms() > deadline ||
        stopping(w)) {
      DB_WARN("worker", "Complete %s: %s %s", a->lease_id,
              rv ? db_strerror(rv) : rpc_code_name(st.code),
              st.message ? st.message : "");
      atomic_fetch_add(&w->m.completes_failed, 1);
      rpc_status_clear(&st);
      break;
    }
    rpc_status_clear(&st);
    nap(w, (int)backoff);
    backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
  }
  free(buf);
}

/* wk_fetch_client_fn: a CAS client like each slot's, for the helper
 * threads of a large download. */
static int make_cas(void *ctx, cas_client **out) {
  const worker_config *cfg = ctx;
  cas_client_opts o = {0};
  o.instance_name = cfg->instance_name;
  o.channel = &cfg->channel;
  return cas_client_new(cfg->scheduler, &o, out);
}

static void *slot_main(void *arg) {
  slot_arg *sa = arg;
  wk_worker *w = sa->w;
  cas_client_opts o = {0};
  wk_exec_env env = {0};
  cas_client *cas = NULL;

  o.instance_name = w->cfg->instance_name;
  o.channel = &w->cfg->channel;
  if (cas_client_new(w->cfg->scheduler, &o, &cas) != 0) {
    DB_ERROR("worker", "slot %d: cannot create a CAS client", sa->slot);
    return NULL;
  }
  env.cfg = w->cfg;
  env.cache = w->cache;
  env.jobs = w->jobs;
  env.cas = cas;
  env.metrics = &w->m;
  env.feat = w->feat;
  env.slot = sa->slot;
  env.cancel_fd = w->cancel_fd[sa->slot];
  for (;;) {
    qitem *q;
    wk_exec_result res;
    int rv;

    pthread_mutex_lock(&w->mu);
    while (!stopping(w) && !w->head)
      timed_wait(w, 200);
    if (stopping(w)) {
      pthread_mutex_unlock(&w->mu);
      break;
    }
    q = w->head;
    w->head = q->next;
    if (!w->head)
      w->tail = NULL;
    drain(env.cancel_fd); /* a cancel that came after the last action */
    w->running[sa->slot] = strdup(q->a->lease_id);
    snprintf(env.session_id, sizeof(env.session_id), "%s", w->session_id);
    pthread_mutex_unlock(&w->mu);

    atomic_fetch_add(&w->m.busy_slots, 1);
    DB_DEBUG("worker", "slot %d: lease %s attempt %d", sa->slot, q->a->lease_id,
             q->a->attempt);
    rv = wk_exec_run(&env, q->a, &res);
    if (rv == 0 && res.resp->status &&
        res.resp->status->code == RPC_CANCELLED) {
      wk_exec_result_free(&res); /* the scheduler has forgotten the lease */
    } else if (rv == 0) {
      complete(w, cas, q->a, &res);
      wk_exec_result_free(&res);
    } else {
      DB_ERROR("worker", "lease %s: %s", q->a->lease_id, db_strerror(rv));
    }
    atomic_fetch_sub(&w->m.busy_slots, 1);

    pthread_mutex_lock(&w->mu);
    free(w->running[sa->slot]);
    w->running[sa->slot] = NULL;
    pthread_mutex_unlock(&w->mu);
    distbuild__worker__v1__assignment__free_unpacked(q->a, NULL);
    free(q);
  }
  cas_client_free(cas);
  return NULL;
}

/* ---- session ---------------------------------------------------------------
 */

typedef struct conn_ctx {
  wk_worker *w;
  uint64_t gen;
  int got_message;
  int done;
  rpc_code code;
  char msg[256];
} conn_ctx;

static int on_command(void *ctx, const uint8_t *msg, size_t len) {
  conn_ctx *x = ctx;
  wk_worker *w = x->w;
  Distbuild__Worker__V1__WorkerCommand *c;

  c = distbuild__worker__v1__worker_command__unpack(NULL, len, msg);
  if (!c) {
    DB_WARN("worker", "unparsable WorkerCommand (%zu bytes)", len);
    return 0;
  }
  if (!x->got_message) {
    x->got_message = 1;
    atomic_fetch_add(&w->m.sessions, 1);
    atomic_store(&w->m.connected, 1);
    DB_INFO("worker", "connected to %s (session %s)", w->cfg->scheduler,
            w->session_id);
  }
  pthread_mutex_lock(&w->mu);
  if (c->heartbeat_interval_ms > 0)
    w->hb_ms = c->heartbeat_interval_ms;
  if (c->command_case ==
          DISTBUILD__WORKER__V1__WORKER_COMMAND__COMMAND_ASSIGN &&
      c->assign && c->assign->lease_id && c->assign->action_digest) {
    qitem *q = calloc(1, sizeof(*q));
    if (q) {
      q->a = c->assign;
      c->assign = NULL; /* moved into the queue */
      c->command_case = DISTBUILD__WORKER__V1__WORKER_COMMAND__COMMAND__NOT_SET;
      q->gen = x->gen;
      if (w->tail)
        w->tail->next = q;
      else
        w->head = q;
      w->tail = q;
      pthread_cond_broadcast(&w->cv);
    }
  } else if (
      c->command_case ==
          DISTBUILD__WORKER__V1__WORKER_COMMAND__COMMAND_CANCEL_LEASE_ID &&
      c->cancel_lease_id) {
    cancel_lease(w, c->cancel_lease_id);
  }
  pthread_mutex_unlock(&w->mu);
  distbuild__worker__v1__worker_command__free_unpacked(c, NULL);
  return 0;
}

static void on_conn_done(void *ctx, const rpc_status *st) {
  conn_ctx *x = ctx;
  x->done = 1;
  x->code = st->code;
  snprintf(x->msg, sizeof(x->msg), "%s", st->message ? st->message : "");
}

/* One Heartbeat. Returns 0, or the failing gRPC code. */
static int heartbeat(wk_worker *w, rpc_client *rc) {
  Distbuild__Worker__V1__HeartbeatRequest req;
  Distbuild__Worker__V1__HeartbeatResponse *hr;
  char *leases[256];
  char sid[80];
  uint8_t *buf = NULL, *resp = NULL;
  size_t len = 0, rlen = 0, n = 0;
  rpc_status st = {0};
  int code = RPC_INTERNAL;

  distbuild__worker__v1__heartbeat_request__init(&req);
  pthread_mutex_lock(&w->mu);
  for (int i = 0; i < w->cfg->slots && n < 256; i++)
    if (w->running[i])
      leases[n++] = strdup(w->running[i]);
  snprintf(sid, sizeof(sid), "%s", w->session_id);
  pthread_mutex_unlock(&w->mu);
  req.worker_id = (char *)w->cfg->id;
  req.session_id = sid;
  req.n_lease_ids = n;
  req.lease_ids = leases;
  for (size_t i = 0; i < n; i++)
    if (!leases[i])
      goto out;
  if (reapi_pb_pack(&req.base, &buf, &len) != 0)
    goto out;
  if (rpc_client_unary(rc, SVC "Heartbeat", buf, len, 5000, &resp, &rlen,
                       &st) != 0)
    goto out;
  code = st.code;
  if (code != RPC_OK)
    goto out;
  hr = distbuild__worker__v1__heartbeat_response__unpack(NULL, rlen, resp);
  if (hr) {
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < hr->n_cancelled_lease_ids; i++)
      cancel_lease(w, hr->cancelled_lease_ids[i]);
    pthread_mutex_unlock(&w->mu);
    distbuild__worker__v1__heartbeat_response__free_unpacked(hr, NULL);
  }
out:
  for (size_t i = 0; i < n; i++)
    free(leases[i]);
  free(buf);
  free(resp);
  rpc_status_clear(&st);
  return code;
}

static int connect_request(wk_worker *w, uint8_t **buf, size_t *len) {
  Distbuild__Worker__V1__ConnectRequest req;
  Build__Bazel__Remote__Execution__V2__Platform plat;
  Build__Bazel__Remote__Execution__V2__Platform__Property *props = NULL;
  Build__Bazel__Remote__Execution__V2__Platform__Property **pp = NULL;
  char **names = NULL;
  size_t n = w->cfg->n_platform;
  int rv = DB_ENOMEM;

  props = calloc(n + 1, sizeof(*props));
  pp = calloc(n + 1, sizeof(*pp));
  names = calloc(n + 1, sizeof(*names));
  if (!props || !pp || !names)
    goto out;
  build__bazel__remote__execution__v2__platform__init(&plat);
  for (size_t i = 0; i < n; i++) {
    const char *kv = w->cfg->platform[i];
    const char *eq = strchr(kv, '=');
    build__bazel__remote__execution__v2__platform__property__init(&props[i]);
    names[i] = eq ? strndup(kv, (size_t)(eq - kv)) : strdup(kv);
    if (!names[i])
      goto out;
    props[i].name = names[i];
    props[i].value = eq ? (char *)eq + 1 : "";
    pp[i] = &props[i];
  }
  plat.n_properties = n;
  plat.properties = pp;
  distbuild__worker__v1__connect_request__init(&req);
  req.worker_id = (char *)w->cfg->id;
  req.session_id = w->session_id;
  req.platform = &plat;
  req.slots = w->cfg->slots;
  req.sandbox_features = w->feat_line;
  rv = reapi_pb_pack(&req.base, buf, len);
out:
  for (size_t i = 0; names && i < n; i++)
    free(names[i]);
  free(names);
  free(pp);
  free(props);
  return rv;
}

static void new_session_id(wk_worker *w) {
  unsigned char r[8] = {0};
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (read(fd, r, sizeof(r)) != (ssize_t)sizeof(r))
      memset(r, 0, sizeof(r));
    close(fd);
  }
  snprintf(w->session_id, sizeof(w->session_id),
           "%.40s-%02x%02x%02x%02x%02x%02x%02x%02x-%llu", w->cfg->id, r[0],
           r[1], r[2], r[3], r[4], r[5], r[6], r[7],
           (unsigned long long)(w->gen));
}

/* How long the scheduler may stay unreachable before a warning (it may
 * just be starting), and how often the warning repeats while it does. */
#define UNREACHABLE_WARN_MS 5000
#define UNREACHABLE_REPEAT_MS 60000

typedef struct conn_failures {
  int64_t since;     /* first failure of this outage; 0 = none */
  int64_t warned_at; /* last "unreachable" warning; 0 = none yet */
  char last[256];    /* last lasting reason warned about */
} conn_failures;

/* A failed connect is logged at debug level at first (the scheduler may
 * just not be up yet); after UNREACHABLE_WARN_MS it is a warning, repeated
 * every UNREACHABLE_REPEAT_MS, so a wrong address or a dead scheduler is
 * visible. What retrying cannot fix, TLS and credentials, is warned about
 * at once, whenever the reason changes. */
static void log_connect_failure(wk_worker *w, const conn_ctx *x,
                                conn_failures *f) {
  int64_t now = rpc_now_ms();
  int lasting = x->code == RPC_UNAUTHENTICATED ||
                x->code == RPC_PERMISSION_DENIED ||
                !strncmp(x->msg, RPC_TLS_PREFIX, strlen(RPC_TLS_PREFIX));

  if (f->since == 0)
    f->since = now;
  if (lasting && strcmp(f->last, x->msg) != 0) {
    DB_WARN("worker", "cannot connect to %s: %s %s; retrying",
            w->cfg->scheduler, rpc_code_name(x->code), x->msg);
    snprintf(f->last, sizeof(f->last), "%s", x->msg);
    f->warned_at = now;
    return;
  }
  if (now - f->since >= UNREACHABLE_WARN_MS &&
      (f->warned_at == 0 || now - f->warned_at >= UNREACHABLE_REPEAT_MS)) {
    DB_WARN("worker", "scheduler %s unreachable for %llds: %s %s; retrying",
            w->cfg->scheduler, (long long)((now - f->since) / 1000),
            rpc_code_name(x->code), x->msg);
    f->warned_at = now;
    return;
  }
  DB_DEBUG("worker", "connect to %s failed: %s %s", w->cfg->scheduler,
           rpc_code_name(x->code), x->msg);
}

static void session_loop(wk_worker *w) {
  rpc_client *rc = NULL;
  rpc_client_opts ro = {0};
  int64_t backoff = 100;
  conn_failures fails = {0};

  ro.channel = &w->cfg->channel;
  while (!stopping(w)) {
    conn_ctx x = {0};
    rpc_stream_cbs cbs = {on_command, NULL, on_conn_done};
    rpc_stream *stream = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int64_t next_hb;
    int hb_failures = 0;

    if (!rc && rpc_client_new(w->cfg->scheduler, &ro, &rc) != 0) {
      DB_ERROR("worker", "bad scheduler address %s or --remote-header",
               w->cfg->scheduler);
      return;
    }
    pthread_mutex_lock(&w->mu);
    w->gen++;
    new_session_id(w);
    x.gen = w->gen;
    pthread_mutex_unlock(&w->mu);
    x.w = w;
    if (connect_request(w, &buf, &len) != 0 ||
        rpc_client_start(rc, SVC "Connect", buf, len, 0, &cbs, &x, &stream) !=
            0) {
      free(buf);
      nap(w, 1000);
      continue;
    }
    free(buf);
    next_hb = rpc_now_ms() + 1000;
    while (!x.done && !stopping(w)) {
      int64_t hb;
      rpc_client_run(rc, 100);
      pthread_mutex_lock(&w->mu);
      hb = w->hb_ms > 0 ? w->hb_ms : 5000;
      pthread_mutex_unlock(&w->mu);
      if (!x.done && x.got_message && rpc_now_ms() >= next_hb) {
        int code = heartbeat(w, rc);
        next_hb = rpc_now_ms() + hb;
        hb_failures = code == RPC_OK ? 0 : hb_failures + 1;
        if (!x.done && (code == RPC_NOT_FOUND ||
                        code == RPC_FAILED_PRECONDITION || hb_failures >= 3)) {
          DB_WARN("worker", "heartbeat failed (%s); reconnecting",
                  rpc_code_name(code));
          rpc_stream_cancel(stream);
        }
      }
    }
    if (!x.done) {
      rpc_stream_cancel(stream);
      while (!x.done && rpc_client_run(rc, 100) > 0)
        ;
    }
    atomic_store(&w->m.connected, 0);
    pthread_mutex_lock(&w->mu);
    /* The scheduler requeues what this session held: drop what we have
     * not started. Running actions finish and report. */
    drop_queued(w, x.gen, NULL);
    pthread_mutex_unlock(&w->mu);
    if (stopping(w))
      break;
    if (x.got_message) {
      DB_WARN("worker", "session %s ended: %s %s; reconnecting", w->session_id,
              rpc_code_name(x.code), x.msg);
      backoff = 100;
      memset(&fails, 0, sizeof(fails));
    } else {
      log_connect_failure(w, &x, &fails);
    }
    nap(w, (int)backoff);
    backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
  }
  rpc_client_free(rc);
}

int worker_run(const worker_config *cfg, volatile sig_atomic_t *stop) {
  wk_worker w;
  wk_http *http = NULL;
  pthread_t *threads = NULL;
  slot_arg *args = NULL;
  char path[4096];
  int nthreads = 0, rv;

  memset(&w, 0, sizeof(w));
  w.cfg = cfg;
  w.stop = stop;
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  w.feat = sbx_probe();
  sbx_features_format(w.feat, w.feat_line, sizeof(w.feat_line));
  if (cfg->sandbox_mode == SBX_MODE_NONE)
    snprintf(w.feat_line, sizeof(w.feat_line), "sandbox=none (unsandboxed)");
  rv = wk_cache_open(cfg->cache_dir, cfg->cache_bytes,
                     cfg->tree_cache_bytes ? cfg->tree_cache_bytes
                                           : cfg->cache_bytes,
                     &w.cache);
  if (rv != 0) {
    DB_ERROR("worker", "cache %s: %s", cfg->cache_dir, db_strerror(rv));
    goto out;
  }
  {
    wk_fetch_opts fo = {cfg->fetch_threads, cfg->fetch_min_bytes, make_cas,
                        (void *)cfg};
    wk_cache_set_fetch(w.cache, &fo);
  }
  snprintf(path, sizeof(path), "%s/actions", cfg->cache_dir);
  wk_rmrf(path);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    rv = db_err_from_errno(errno);
    DB_ERROR("worker", "%s: %s", path, strerror(errno));
    goto out;
  }
  /* A cache directory that cannot hold a FIFO (some network file systems)
   * costs CPU efficiency, not correctness: run without the jobserver. */
  if (cfg->jobs > 0 &&
      (rv = wk_jobs_new(cfg->cache_dir, cfg->jobs, &w.jobs)) != 0) {
    DB_WARN("worker",
            "no jobserver in %s (%s): each action's rustc will assume 32 "
            "CPUs",
            cfg->cache_dir, db_strerror(rv));
    rv = 0;
  }
  atomic_store(&w.m.slots, (uint64_t)cfg->slots);
  if (cfg->http_port > 0) {
    rv = wk_http_start(cfg->http_port, cfg->id, &w.m, w.cache, &http);
    if (rv != 0) {
      DB_ERROR("worker", "cannot serve HTTP on 127.0.0.1:%d", cfg->http_port);
      goto out;
    }
  }
  w.running = calloc((size_t)cfg->slots, sizeof(char *));
  w.cancel_fd = malloc((size_t)cfg->slots * sizeof(int));
  threads = calloc((size_t)cfg->slots, sizeof(*threads));
  args = calloc((size_t)cfg->slots, sizeof(*args));
  rv = DB_ENOMEM;
  if (!w.running || !w.cancel_fd || !threads || !args)
    goto out;
  for (int i = 0; i < cfg->slots; i++)
    w.cancel_fd[i] = -1;
  for (int i = 0; i < cfg->slots; i++) {
    w.cancel_fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w.cancel_fd[i] < 0) {
      rv = db_err_from_errno(errno);
      DB_ERROR("worker", "eventfd: %s", strerror(errno));
      goto out;
    }
  }
  for (int i = 0; i < cfg->slots; i++) {
    args[i].w = &w;
    args[i].slot = i;
    if (pthread_create(&threads[i], NULL, slot_main, &args[i]) != 0)
      break;
    nthreads++;
  }
  rv = nthreads == cfg->slots ? 0 : DB_ESYS;
  DB_INFO("worker",
          "%s: %d slot(s), %u jobserver token(s), actions at nice +%u, "
          "scheduler %s, cache %s; %s",
          cfg->id, cfg->slots, w.jobs ? cfg->jobs : 0, cfg->nice,
          cfg->scheduler, cfg->cache_dir, w.feat_line);
  if (rv == 0)
    session_loop(&w);
  else
    *stop = 1;
out:
  if (threads) {
    int killed = 0;
    /* The session is closed, so the scheduler has requeued whatever runs
     * here: finishing it would only delay the exit. */
    pthread_mutex_lock(&w.mu);
    for (int i = 0; i < nthreads; i++)
      if (w.running[i] && kill_slot(&w, i) == 0)
        killed++;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    if (killed)
      DB_INFO("worker",
              "stopping: killed %d running action(s); the scheduler "
              "requeues them",
              killed);
    for (int i = 0; i < nthreads; i++)
      pthread_join(threads[i], NULL);
  }
  wk_http_stop(http);
  pthread_mutex_lock(&w.mu);
  drop_queued(&w, 0, NULL);
  pthread_mutex_unlock(&w.mu);
  for (int i = 0; w.running && i < cfg->slots; i++)
    free(w.running[i]);
  free(w.running);
  for (int i = 0; w.cancel_fd && i < cfg->slots; i++)
    if (w.cancel_fd[i] >= 0)
      close(w.cancel_fd[i]);
  free(w.cancel_fd);
  free(threads);
  free(args);
  wk_cache_close(w.cache);
  wk_jobs_free(w.jobs);
  pthread_cond_destroy(&w.cv);
  pthread_mutex_destroy(&w.mu);
  return rv;
}
