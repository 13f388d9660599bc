/*
 * `cargo-distbuild scheduler run`: the REAPI endpoint (Execution,
 * ActionCache, CAS, ByteStream, Capabilities) plus WorkerService, with an
 * embedded CAS, and /healthz + /metrics over HTTP.
 */
#include "sched_cli.h"

#include "cas_cli.h"
#include "cas_cli_sec.h"
#include "cas_service.h"
#include "cas_store.h"
#include "db_err.h"
#include "db_log.h"
#include "sched.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: cargo-distbuild scheduler run [options]\n"
          "  --listen HOST:PORT     REAPI + worker endpoint "
          "(default 127.0.0.1:8980;\n"
          "                         port 0 picks a free port)\n"
          "  --cas-dir DIR          embedded CAS + action cache "
          "(default .distbuild/scheduler-cas)\n"
          "  --max-size SIZE        CAS size budget, e.g. 10G (default 10G)\n"
          "  --http-listen HOST:PORT  /healthz and /metrics "
          "(default 127.0.0.1:8990;\n"
          "                         'off' disables)\n"
          "  --heartbeat-ms N       worker heartbeat interval (default 1000)\n"
          "  --queue-timeout S      how long an action no worker can run "
          "waits (default 60);\n"
          "                         once no worker at all has been "
          "connected this long,\n"
          "                         new actions fail at once\n"
          "  --max-timeout S        largest Action timeout accepted "
          "(default 3600)\n"
          "  --orphan-timeout S     cancel an action once no client has "
          "waited for it\n"
          "                         for S seconds (default 60; 'off': "
          "run it to the end)\n"
          "  --sync MODE            CAS durability: background (default; "
          "one syncfs\n"
          "                         per burst, ~20 ms after a write) or "
          "always (fsync\n"
          "                         before each write is acknowledged)\n"
          "  --port-file F          write the bound gRPC port to F\n"
          "  --http-port-file F     write the bound HTTP port to "
          "F\n" CAS_CLI_SEC_USAGE
          "Environment: CARGO_DISTBUILD_SCHEDULER_LISTEN, _CAS_DIR, "
          "_MAX_SIZE,\n"
          "_HTTP_LISTEN, _HEARTBEAT_MS, _QUEUE_TIMEOUT, _MAX_TIMEOUT, "
          "_ORPHAN_TIMEOUT,\n"
          "_SYNC, _TLS_CERT, _TLS_KEY, _TLS_CLIENT_CA, _AUTH_TOKEN_FILE\n"
          "(prefix CARGO_DISTBUILD_SCHEDULER) override the defaults; "
          "flags\noverride both.\n");
}

typedef struct run_ctx {
  struct event_base *base;
  rpc_server *srv;
  sched *s;
  int stopping;
} run_ctx;

static void on_drained(void *arg) {
  run_ctx *ctx = arg;
  event_base_loopbreak(ctx->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  run_ctx *ctx = arg;

  (void)what;
  if (ctx->stopping) {
    event_base_loopbreak(ctx->base);
    return;
  }
  ctx->stopping = 1;
  DB_INFO("sched", "signal %d: shutting down (GOAWAY, draining calls)",
          (int)sig);
  sched_shutdown(ctx->s);
  rpc_server_shutdown(ctx->srv, on_drained, ctx);
}

/* Seconds (fractions allowed) to ms; -1 if malformed. */
static int64_t parse_secs(const char *v) {
  char *end;
  double d;

  errno = 0;
  d = strtod(v, &end);
  if (errno || end == v || *end || d <= 0 || d > 1e9)
    return -1;
  return (int64_t)(d * 1000.0 + 0.5);
}

static int write_port(const char *path, int port) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  if (fprintf(f, "%d\n", port) < 0) {
    fclose(f);
    return -1;
  }
  return fclose(f) ? -1 : 0;
}

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static int sched_run(int argc, char **argv) {
  static const struct option longopts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"cas-dir", required_argument, NULL, 'c'},
      {"max-size", required_argument, NULL, 'm'},
      {"http-listen", required_argument, NULL, 'H'},
      {"heartbeat-ms", required_argument, NULL, 'b'},
      {"queue-timeout", required_argument, NULL, 'q'},
      {"max-timeout", required_argument, NULL, 't'},
      {"orphan-timeout", required_argument, NULL, 'o'},
      {"port-file", required_argument, NULL, 'p'},
      {"http-port-file", required_argument, NULL, 'P'},
      {"sync", required_argument, NULL, 's'},
      CAS_CLI_SEC_LONGOPTS,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *listen = env("CARGO_DISTBUILD_SCHEDULER_LISTEN");
  const char *cas_dir = env("CARGO_DISTBUILD_SCHEDULER_CAS_DIR");
  const char *max_size = env("CARGO_DISTBUILD_SCHEDULER_MAX_SIZE");
  const char *http_listen = env("CARGO_DISTBUILD_SCHEDULER_HTTP_LISTEN");
  const char *hb = env("CARGO_DISTBUILD_SCHEDULER_HEARTBEAT_MS");
  const char *qt = env("CARGO_DISTBUILD_SCHEDULER_QUEUE_TIMEOUT");
  const char *mt = env("CARGO_DISTBUILD_SCHEDULER_MAX_TIMEOUT");
  const char *ot = env("CARGO_DISTBUILD_SCHEDULER_ORPHAN_TIMEOUT");
  const char *sync = env("CARGO_DISTBUILD_SCHEDULER_SYNC");
  const char *port_file = NULL, *http_port_file = NULL;
  unsigned long long budget = 0;
  cas_store_opts sopts = {0};
  cas_service_opts copts = {0};
  sched_opts o = {0};
  cas_store *store = NULL;
  cas_service *svc = NULL;
  sched_http *http = NULL;
  cas_store_stats stats;
  run_ctx ctx = {0};
  cas_cli_sec sec;
  rpc_server_opts ropts = {0};
  struct event *sigint = NULL, *sigterm = NULL;
  int opt, rc, ret = 1;
  char *end;
  char murl[300], orphan[32];

  cas_cli_sec_init(&sec, "CARGO_DISTBUILD_SCHEDULER_");
  optind = 1;
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'l':
      listen = optarg;
      break;
    case 'c':
      cas_dir = optarg;
      break;
    case 'm':
      max_size = optarg;
      break;
    case 'H':
      http_listen = optarg;
      break;
    case 'b':
      hb = optarg;
      break;
    case 'q':
      qt = optarg;
      break;
    case 't':
      mt = optarg;
      break;
    case 'o':
      ot = optarg;
      break;
    case 'p':
      port_file = optarg;
      break;
    case 'P':
      http_port_file = optarg;
      break;
    case 's':
      sync = optarg;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      if (cas_cli_sec_option(&sec, opt, optarg))
        break;
      usage(stderr);
      return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  if (!listen)
    listen = "127.0.0.1:8980";
  if (!cas_dir)
    cas_dir = ".distbuild/scheduler-cas";
  if (!http_listen)
    http_listen = "127.0.0.1:8990";
  if (cas_cli_parse_size(max_size ? max_size : "10G", &budget)) {
    fprintf(stderr, "scheduler run: invalid --max-size '%s'\n", max_size);
    return 2;
  }
  if (hb) {
    errno = 0;
    o.heartbeat_ms = strtoll(hb, &end, 10);
    if (errno || *end || o.heartbeat_ms <= 0) {
      fprintf(stderr, "scheduler run: invalid --heartbeat-ms '%s'\n", hb);
      return 2;
    }
  }
  if (qt && (o.queue_timeout_ms = parse_secs(qt)) < 0) {
    fprintf(stderr, "scheduler run: invalid --queue-timeout '%s'\n", qt);
    return 2;
  }
  if (ot && !strcmp(ot, "off"))
    o.orphan_timeout_ms = -1;
  else if (ot && (o.orphan_timeout_ms = parse_secs(ot)) < 0) {
    fprintf(stderr, "scheduler run: invalid --orphan-timeout '%s'\n", ot);
    return 2;
  }
  if (mt && (o.max_timeout_ms = parse_secs(mt)) < 0) {
    fprintf(stderr, "scheduler run: invalid --max-timeout '%s'\n", mt);
    return 2;
  }
  if (cas_cli_parse_sync(sync, &sopts.sync)) {
    fprintf(stderr,
            "scheduler run: invalid --sync '%s' (background or always)\n",
            sync);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sopts.root = cas_dir;
  sopts.max_bytes = budget;
  rc = cas_store_open(&sopts, &store);
  if (rc) {
    fprintf(stderr, "scheduler run: cannot open CAS at %s: %s\n", cas_dir,
            db_strerror(rc));
    goto out;
  }
  ctx.base = event_base_new();
  if (!ctx.base)
    goto out;
  copts.exec_enabled = 1;
  if (cas_cli_sec_apply(&sec, &ropts, "scheduler run") != 0)
    goto out;
  rc = rpc_server_new(ctx.base, &ropts, &ctx.srv);
  if (rc == 0)
    rc = cas_cli_sec_watch(&sec, ctx.base, ctx.srv);
  if (rc == 0)
    rc = cas_service_new(store, &copts, &svc);
  if (rc == 0)
    rc = cas_service_register(svc, ctx.srv);
  if (rc == 0)
    rc = sched_new(ctx.base, ctx.srv, store, &o, &ctx.s);
  if (rc) {
    fprintf(stderr, "scheduler run: setup failed: %s\n", db_strerror(rc));
    goto out;
  }
  rc = rpc_server_listen(ctx.srv, listen);
  if (rc) {
    fprintf(stderr, "scheduler run: cannot serve on %s: %s\n", listen,
            db_strerror(rc));
    goto out;
  }
  if (strcmp(http_listen, "off")) {
    rc = sched_http_new(ctx.s, ctx.base, http_listen, &http);
    if (rc) {
      fprintf(stderr, "scheduler run: cannot serve HTTP on %s: %s\n",
              http_listen, db_strerror(rc));
      goto out;
    }
  }
  sigint = evsignal_new(ctx.base, SIGINT, on_signal, &ctx);
  sigterm = evsignal_new(ctx.base, SIGTERM, on_signal, &ctx);
  if (!sigint || !sigterm || event_add(sigint, NULL) ||
      event_add(sigterm, NULL))
    goto out;
  if ((port_file && write_port(port_file, rpc_server_port(ctx.srv))) ||
      (http_port_file && write_port(http_port_file, sched_http_port(http)))) {
    fprintf(stderr, "scheduler run: cannot write the port file\n");
    goto out;
  }
  cas_store_get_stats(store, &stats);
  if (http)
    snprintf(murl, sizeof(murl), "http://%.*s:%d/metrics",
             (int)(strrchr(http_listen, ':') - http_listen), http_listen,
             sched_http_port(http));
  else
    snprintf(murl, sizeof(murl), "off");
  if (o.orphan_timeout_ms < 0)
    snprintf(orphan, sizeof(orphan), "off");
  else
    snprintf(orphan, sizeof(orphan), "%.1fs",
             (double)(o.orphan_timeout_ms ? o.orphan_timeout_ms : 60000) /
                 1000.0);
  DB_INFO(
      "sched",
      "scheduler serving Execution, ActionCache, CAS, ByteStream, "
      "Capabilities and WorkerService on %.*s:%d (CAS %s, budget %.1f "
      "GiB, %llu blobs); metrics %s; heartbeat %lld ms, queue timeout "
      "%.1fs, max action timeout %.0fs, orphan timeout %s",
      (int)(strrchr(listen, ':') - listen), listen, rpc_server_port(ctx.srv),
      cas_dir, (double)budget / (1024.0 * 1024 * 1024),
      (unsigned long long)stats.blobs, murl,
      (long long)(o.heartbeat_ms ? o.heartbeat_ms : 1000),
      (double)(o.queue_timeout_ms ? o.queue_timeout_ms : 60000) / 1000.0,
      (double)(o.max_timeout_ms ? o.max_timeout_ms : 3600000) / 1000.0, orphan);
  event_base_dispatch(ctx.base);
  DB_INFO("sched", "stopped");
  ret = 0;
out:
  if (sigint)
    event_free(sigint);
  if (sigterm)
    event_free(sigterm);
  sched_http_free(http);
  if (ctx.s)
    sched_shutdown(ctx.s);
  rpc_server_free(ctx.srv);
  sched_free(ctx.s);
  cas_service_free(svc);
  cas_cli_sec_fini(&sec); /* its SIGHUP event, before the base */
  if (ctx.base)
    event_base_free(ctx.base);
  cas_store_close(store);
  return ret;
}

int sched_cli_main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "run"))
    return sched_run(argc - 1, argv + 1);
  if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
    usage(stdout);
    return 0;
  }
  usage(stderr);
  return 2;
}
