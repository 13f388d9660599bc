/*
 * Our client against our server, over one connection, for longer than
 * the one-off cases: many sequential and overlapping unary calls, as the
 * CAS and scheduler see them from a build. Regression test for the
 * connection being cut after ~1000 calls (libcurl's per-stream
 * RST_STREAM meeting nghttp2's rapid-reset guard).
 *
 * usage: c2c_test ECHO_SERVER_BINARY
 */
#include "rpc_client.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int start_server(const char *bin, pid_t *pid) {
  int fds[2], port = -1;
  FILE *f;
  char line[64];

  if (pipe(fds))
    return -1;
  *pid = fork();
  if (*pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    execl(bin, bin, "--port", "0", (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  f = fdopen(fds[0], "r");
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "PORT %d", &port) == 1)
      break;
  /* Keep the pipe open (never read again) so the server's stdout stays
   * valid. */
  return port;
}

typedef struct ctx {
  int done, failed;
} ctx;

static void on_done(void *arg, const rpc_status *st) {
  ctx *c = arg;
  c->done++;
  if (st->code != RPC_OK) {
    if (c->failed++ < 3)
      fprintf(stderr, "call failed: %s %s\n", rpc_code_name(st->code),
              st->message ? st->message : "");
  }
}

int main(int argc, char **argv) {
  pid_t pid;
  rpc_client *cli = NULL;
  int port, i, ret = 1;
  char target[64];
  ctx c = {0, 0};
  rpc_stream_cbs cbs = {NULL, NULL, on_done};

  if (argc != 2)
    return 2;
  port = start_server(argv[1], &pid);
  if (port <= 0) {
    fprintf(stderr, "echo server did not start\n");
    return 1;
  }
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  if (rpc_client_new(target, NULL, &cli))
    goto out;
  /* 3000 sequential calls: three times nghttp2's default reset burst. */
  for (i = 0; i < 3000; i++) {
    uint8_t *resp = NULL;
    size_t n = 0;
    rpc_status st = {0};
    rpc_client_unary(cli, "/test.Echo/Unary", (const uint8_t *)"ping", 4, 5000,
                     &resp, &n, &st);
    if (st.code != RPC_OK || n != 4 || memcmp(resp, "ping", 4)) {
      fprintf(stderr, "sequential call %d: %s %s\n", i, rpc_code_name(st.code),
              st.message ? st.message : "");
      free(resp);
      rpc_status_clear(&st);
      goto out;
    }
    free(resp);
    rpc_status_clear(&st);
  }
  /* 4000 more, 64 in flight at a time. */
  for (i = 0; i < 4000; i++) {
    if (rpc_client_start(cli, "/test.Echo/Unary", (const uint8_t *)"x", 1, 5000,
                         &cbs, &c, NULL))
      goto out;
    if (rpc_client_pending(cli) >= 64 && rpc_client_run(cli, 0) < 0)
      goto out;
  }
  if (rpc_client_run(cli, 30000) != 0)
    goto out;
  if (c.done != 4000 || c.failed) {
    fprintf(stderr, "overlapping calls: %d done, %d failed\n", c.done,
            c.failed);
    goto out;
  }
  printf("7000 calls on one client, 0 failed\n");
  ret = 0;
out:
  rpc_client_free(cli);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  return ret;
}
