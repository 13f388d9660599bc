/*
 * `cargo-distbuild cas run`: a standalone CAS + action cache endpoint.
 */
#include "cas_cli.h"
#include "cas_cli_sec.h"

#include "cas_service.h"
#include "cas_store.h"
#include "db_err.h"
#include "db_log.h"
#include "rpc_server.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cas_cli_parse_size(const char *s, unsigned long long *out) {
  char *end;
  double v;
  double mult = 1;

  if (!s || !*s)
    return DB_EINVAL;
  errno = 0;
  v = strtod(s, &end);
  if (errno || end == s || v < 0)
    return DB_EINVAL;
  switch (*end) {
  case '\0':
    break;
  case 'k':
  case 'K':
    mult = 1024.0;
    break;
  case 'm':
  case 'M':
    mult = 1024.0 * 1024;
    break;
  case 'g':
  case 'G':
    mult = 1024.0 * 1024 * 1024;
    break;
  case 't':
  case 'T':
    mult = 1024.0 * 1024 * 1024 * 1024;
    break;
  default:
    return DB_EINVAL;
  }
  if (*end && end[1] && strcmp(end + 1, "B") && strcmp(end + 1, "iB") &&
      strcmp(end + 1, "b"))
    return DB_EINVAL;
  *out = (unsigned long long)llround(v * mult);
  return 0;
}

int cas_cli_parse_sync(const char *s, int *mode) {
  if (!s || !*s || strcmp(s, "background") == 0)
    *mode = CAS_SYNC_BACKGROUND;
  else if (strcmp(s, "always") == 0)
    *mode = CAS_SYNC_EACH;
  else
    return DB_EINVAL;
  return 0;
}

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: cargo-distbuild cas run [--listen HOST:PORT] [--root DIR]\n"
      "                               [--max-size SIZE] [--port-file F]\n"
      "                               [--sync background|always]\n"
      "  --listen     address to serve on (default 127.0.0.1:8981;\n"
      "               port 0 picks a free port)\n"
      "  --root       store directory (default ./.distbuild/cas)\n"
      "  --max-size   size budget, e.g. 10G (default 10G)\n"
      "  --port-file  write the bound port to this file once listening\n"
      "  --sync       background (default): writes are durable within\n"
      "               ~20 ms, one syncfs per burst; always: each write\n"
      "               is fsync'd before it is acknowledged\n" CAS_CLI_SEC_USAGE
      "Environment: CARGO_DISTBUILD_CAS_LISTEN, CARGO_DISTBUILD_CAS_ROOT,\n"
      "CARGO_DISTBUILD_CAS_MAX_SIZE, CARGO_DISTBUILD_CAS_SYNC override the\n"
      "defaults.\n");
}

typedef struct run_ctx {
  struct event_base *base;
  rpc_server *srv;
  int stopping;
} run_ctx;

static void on_drained(void *arg) {
  run_ctx *ctx = arg;
  event_base_loopbreak(ctx->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  run_ctx *ctx = arg;
  if (ctx->stopping) {
    /* Second signal: stop waiting for in-flight calls. */
    event_base_loopbreak(ctx->base);
    return;
  }
  ctx->stopping = 1;
  DB_INFO("cas", "signal %d: shutting down (GOAWAY, draining in-flight calls)",
          (int)sig);
  rpc_server_shutdown(ctx->srv, on_drained, ctx);
}

static int cas_run(int argc, char **argv) {
  static const struct option longopts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"root", required_argument, NULL, 'r'},
      {"max-size", required_argument, NULL, 'm'},
      {"port-file", required_argument, NULL, 'p'},
      {"sync", required_argument, NULL, 's'},
      CAS_CLI_SEC_LONGOPTS,
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *listen = getenv("CARGO_DISTBUILD_CAS_LISTEN");
  const char *sync = getenv("CARGO_DISTBUILD_CAS_SYNC");
  const char *root = getenv("CARGO_DISTBUILD_CAS_ROOT");
  const char *max_size = getenv("CARGO_DISTBUILD_CAS_MAX_SIZE");
  const char *port_file = NULL;
  unsigned long long budget = 0;
  cas_store_opts sopts = {0};
  cas_store *store = NULL;
  cas_service *svc = NULL;
  cas_store_stats stats;
  run_ctx ctx = {0};
  cas_cli_sec sec;
  rpc_server_opts ropts = {0};
  struct event *sigint = NULL, *sigterm = NULL;
  int opt, rc, ret = 1;

  cas_cli_sec_init(&sec, "CARGO_DISTBUILD_CAS_");
  optind = 1;
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (opt) {
    case 'l':
      listen = optarg;
      break;
    case 'r':
      root = optarg;
      break;
    case 'm':
      max_size = optarg;
      break;
    case 'p':
      port_file = optarg;
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
  if (!listen || !*listen)
    listen = "127.0.0.1:8981";
  if (!root || !*root)
    root = ".distbuild/cas";
  if (cas_cli_parse_size(max_size && *max_size ? max_size : "10G", &budget)) {
    fprintf(stderr, "cas run: invalid --max-size '%s'\n", max_size);
    return 2;
  }
  if (cas_cli_parse_sync(sync, &sopts.sync)) {
    fprintf(stderr, "cas run: invalid --sync '%s' (background or always)\n",
            sync);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sopts.root = root;
  sopts.max_bytes = budget;
  rc = cas_store_open(&sopts, &store);
  if (rc) {
    fprintf(stderr, "cas run: cannot open store at %s: %s\n", root,
            db_strerror(rc));
    goto out;
  }
  ctx.base = event_base_new();
  if (!ctx.base)
    goto out;
  if (cas_cli_sec_apply(&sec, &ropts, "cas run") != 0)
    goto out;
  rc = rpc_server_new(ctx.base, &ropts, &ctx.srv);
  if (rc == 0)
    rc = cas_cli_sec_watch(&sec, ctx.base, ctx.srv);
  if (rc == 0)
    rc = cas_service_new(store, NULL, &svc);
  if (rc == 0)
    rc = cas_service_register(svc, ctx.srv);
  if (rc == 0)
    rc = rpc_server_listen(ctx.srv, listen);
  if (rc) {
    fprintf(stderr, "cas run: cannot serve on %s: %s\n", listen,
            db_strerror(rc));
    goto out;
  }
  sigint = evsignal_new(ctx.base, SIGINT, on_signal, &ctx);
  sigterm = evsignal_new(ctx.base, SIGTERM, on_signal, &ctx);
  if (!sigint || !sigterm || event_add(sigint, NULL) ||
      event_add(sigterm, NULL))
    goto out;
  cas_store_get_stats(store, &stats);
  if (port_file) {
    FILE *f = fopen(port_file, "w");
    if (!f || fprintf(f, "%d\n", rpc_server_port(ctx.srv)) < 0 || fclose(f)) {
      fprintf(stderr, "cas run: cannot write %s\n", port_file);
      goto out;
    }
  }
  DB_INFO("cas",
          "serving CAS, ByteStream, ActionCache and Capabilities on "
          "%.*s:%d (root %s, budget %.1f GiB, %llu blobs / %.1f MiB indexed)",
          (int)(strrchr(listen, ':') ? strrchr(listen, ':') - listen
                                     : (long)strlen(listen)),
          listen, rpc_server_port(ctx.srv), root,
          (double)budget / (1024.0 * 1024 * 1024),
          (unsigned long long)stats.blobs,
          (double)stats.stored_bytes / (1024.0 * 1024));
  event_base_dispatch(ctx.base);
  DB_INFO("cas", "stopped");
  ret = 0;
out:
  if (sigint)
    event_free(sigint);
  if (sigterm)
    event_free(sigterm);
  rpc_server_free(ctx.srv);
  cas_service_free(svc);
  cas_cli_sec_fini(&sec); /* its SIGHUP event, before the base */
  if (ctx.base)
    event_base_free(ctx.base);
  cas_store_close(store);
  return ret;
}

int cas_cli_main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "run"))
    return cas_run(argc - 1, argv + 1);
  if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
    usage(stdout);
    return 0;
  }
  usage(stderr);
  return 2;
}
