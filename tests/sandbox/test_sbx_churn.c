/* Sandboxes started while other threads of the caller come and go, as in a
 * worker.  A raw clone copies whatever locks other threads held at that
 * instant (libc's, or a sanitizer's thread registry, which every thread
 * start and exit takes); a child that then enters such a lock waits
 * forever.  Each run has a timeout, so a stuck child fails the test
 * instead of hanging it.  Under ASan this caught pid 1 naming itself
 * through the prctl() interceptor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sandbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define CHURNERS 2
#define RUNS 600

static atomic_int g_stop;
static atomic_long g_threads;

static void *idle(void *arg) {
  return arg;
}

/* Start and join threads until told to stop. */
static void *churn(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop)) {
    pthread_t t;
    if (pthread_create(&t, NULL, idle, NULL) == 0) {
      pthread_join(t, NULL);
      atomic_fetch_add(&g_threads, 1);
    }
  }
  return NULL;
}

static void test_runs_amid_thread_churn(void **state) {
  static const char *const env[] = {"PATH=/usr/bin:/bin", NULL};
  const char *argv[] = {"/bin/true", NULL};
  pthread_t ch[CHURNERS];
  sbx_limits lim;
  int i, stuck = 0, failed = 0;
  (void)state;

  memset(&lim, 0, sizeof(lim));
  lim.timeout_ms = 10000; /* a normal run takes milliseconds */
  atomic_store(&g_stop, 0);
  for (i = 0; i < CHURNERS; i++)
    assert_int_equal(pthread_create(&ch[i], NULL, churn, NULL), 0);
  for (i = 0; i < RUNS; i++) {
    sbx_request *r = NULL;
    sbx_result res;
    assert_int_equal(sbx_request_new(&r), 0);
    assert_int_equal(sbx_request_set_argv(r, argv), 0);
    assert_int_equal(sbx_request_set_env(r, env), 0);
    assert_int_equal(sbx_request_add_default_layout(r), 0);
    sbx_request_set_limits(r, &lim);
    memset(&res, 0, sizeof(res));
    if (sbx_run(r, &res) != 0 || !res.exited || res.exit_code != 0)
      failed++;
    if (res.timed_out)
      stuck++;
    sbx_request_free(r);
  }
  atomic_store(&g_stop, 1);
  for (i = 0; i < CHURNERS; i++)
    pthread_join(ch[i], NULL);
  printf("%d runs, %ld threads started and joined meanwhile\n", RUNS,
         (long)atomic_load(&g_threads));
  assert_int_equal(stuck, 0);
  assert_int_equal(failed, 0);
  /* The churn really overlapped the runs. */
  assert_true(atomic_load(&g_threads) > RUNS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runs_amid_thread_churn),
  };
  char err[1024];
  if (sbx_check_mode(SBX_MODE_NAMESPACES, err, sizeof(err)) != 0) {
    printf("SKIP: %s\n", err);
    return 77;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
