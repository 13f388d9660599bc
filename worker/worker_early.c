/* stderr watcher and EarlyOutputs sender; see worker_early.h. */
#include "worker_early.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_err.h"
#include "db_log.h"
#include "distbuild/worker/v1/worker.pb-c.h"
#include "reapi_digest.h"
#include "reapi_pb.h"
#include "rpc_client.h"
#include "worker_int.h"

#define PROGRESS_PATH "/distbuild.worker.v1.WorkerService/Progress"
/* Lines are scanned only while the stderr seen so far is below this; the
 * metadata notification comes early, after the warnings. */
#define SCAN_CAP (8u << 20)
#define MAX_LINE 8192
#define MAX_EARLY_FILE (256u << 20)
/* Early files up to this size in all ride inside ProgressRequest, and the
 * scheduler stores them: no FindMissingBlobs / BatchUpdateBlobs round
 * trips here and no download by the client on the critical path of cargo's
 * pipelining. Larger ones (the .rmeta of a big crate) go through the CAS. */
#define EARLY_INLINE_MAX (1u << 20)

typedef Distbuild__Worker__V1__ProgressRequest ProgReq;
typedef Distbuild__Worker__V1__EarlyOutputs EarlyPb;

struct wk_early {
  cas_client *cas;
  char *worker_id, *session_id, *lease_id;
  char *sandbox_wd, *host_wd;
  char **outputs;
  size_t n_outputs;
  int rfd, wfd, file_fd;
  pthread_t thread;
  int started;
  atomic_int stop;
  /* watcher-thread state */
  uint8_t *acc; /* stderr so far (up to SCAN_CAP) */
  size_t acc_len, acc_cap, scan_off;
  const char *depinfo; /* the announced dep-info (in outputs) */
  int io_err, gave_up, meta_done;
  wk_early_done done;
};

int wk_early_parse_artifact(char *buf, const char **emit, const char **path) {
  static const char key_a[] = "\"artifact\":\"", key_e[] = "\"emit\":\"";
  char *a, *e, *end;
  if (strstr(buf, "\"$message_type\":\"artifact\"") == NULL)
    return 0;
  a = strstr(buf, key_a);
  e = strstr(buf, key_e);
  if (a == NULL || e == NULL)
    return 0;
  a += sizeof(key_a) - 1;
  e += sizeof(key_e) - 1;
  /* Terminate both values; give up on escapes (unusual paths). */
  end = strchr(a, '"');
  if (end == NULL || memchr(a, '\\', (size_t)(end - a)) != NULL)
    return 0;
  *end = '\0';
  if (e > a && e < end)
    return 0;
  end = strchr(e, '"');
  if (end == NULL)
    return 0;
  *end = '\0';
  *emit = e;
  *path = a;
  return 1;
}

/* The output-relative form of an artifact path, if it names a declared
 * output: a pointer into e->outputs, else NULL. */
static const char *declared(const wk_early *e, const char *p) {
  size_t wl = strlen(e->sandbox_wd);
  if (p[0] == '/') {
    if (strncmp(p, e->sandbox_wd, wl) != 0)
      return NULL;
    p += wl;
    if (*p != '/' && wl > 0 && e->sandbox_wd[wl - 1] != '/')
      return NULL;
    while (*p == '/')
      p++;
  } else if (strncmp(p, "./", 2) == 0) {
    p += 2;
  }
  for (size_t i = 0; i < e->n_outputs; i++)
    if (strcmp(e->outputs[i], p) == 0)
      return e->outputs[i];
  return NULL;
}

static int read_whole(const char *path, uint8_t **out, size_t *len) {
  struct stat st;
  uint8_t *buf = NULL;
  int rv = DB_EIO;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return DB_EIO;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      (uint64_t)st.st_size > MAX_EARLY_FILE)
    goto out;
  buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
  if (buf == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  if (wk_read_full(fd, buf, (size_t)st.st_size) != 0)
    goto out;
  *out = buf;
  *len = (size_t)st.st_size;
  buf = NULL;
  rv = 0;
out:
  free(buf);
  close(fd);
  return rv;
}

/* WorkerService.Progress carrying early for this lease. */
static int send_progress(wk_early *e, EarlyPb *early) {
  ProgReq req = DISTBUILD__WORKER__V1__PROGRESS_REQUEST__INIT;
  uint8_t *buf = NULL, *resp = NULL;
  size_t blen = 0, rlen = 0;
  rpc_status st = {0};
  int rv;
  req.worker_id = e->worker_id;
  req.session_id = e->session_id;
  req.lease_id = e->lease_id;
  req.early = early;
  rv = reapi_pb_pack(&req.base, &buf, &blen);
  if (rv == 0)
    rv = rpc_client_unary(cas_client_rpc(e->cas), PROGRESS_PATH, buf, blen,
                          10000, &resp, &rlen, &st);
  if (rv == 0 && st.code != RPC_OK) {
    DB_DEBUG("worker", "lease %s: Progress: %s %s", e->lease_id,
             rpc_code_name(st.code), st.message ? st.message : "");
    rv = DB_EUNAVAIL;
  }
  rpc_status_clear(&st);
  free(resp);
  free(buf);
  return rv;
}

/* Send ProgressRequest with the announced files (inline, or uploaded
 * first when large) and stderr[0, n). */
static int send_early(wk_early *e, const char *rmeta, size_t n) {
  const char *rel[2] = {e->depinfo, rmeta};
  uint8_t *data[2] = {NULL, NULL};
  size_t len[2] = {0, 0};
  reapi_digest dg[2];
  cas_blob_src src[2];
  PbOutputFile files[2], *fp[2];
  PbDigest pd[2];
  EarlyPb early = DISTBUILD__WORKER__V1__EARLY_OUTPUTS__INIT;
  size_t nf = 0;
  uint64_t raw = 0, wire = 0;
  int64_t t0 = rpc_now_ms();
  int rv = 0;

  for (int i = 0; i < 2 && rv == 0; i++) {
    char host[4096];
    if (rel[i] == NULL)
      continue;
    if ((size_t)snprintf(host, sizeof(host), "%s/%s", e->host_wd, rel[i]) >=
        sizeof(host)) {
      rv = DB_EINVAL;
      break;
    }
    rv = read_whole(host, &data[nf], &len[nf]);
    if (rv != 0)
      break;
    reapi_digest_of(data[nf], len[nf], &dg[nf]);
    memset(&src[nf], 0, sizeof(src[nf]));
    src[nf].digest = dg[nf];
    src[nf].data = data[nf];
    build__bazel__remote__execution__v2__output_file__init(&files[nf]);
    build__bazel__remote__execution__v2__digest__init(&pd[nf]);
    files[nf].path = (char *)rel[i];
    reapi_pb_digest_set(&pd[nf], &dg[nf]);
    files[nf].digest = &pd[nf];
    fp[nf] = &files[nf];
    nf++;
  }
  if (rv == 0 && len[0] + (nf > 1 ? len[1] : 0) <= EARLY_INLINE_MAX) {
    for (size_t i = 0; i < nf; i++) {
      files[i].contents.data = data[i];
      files[i].contents.len = len[i];
      raw += len[i];
    }
  } else if (rv == 0) {
    rv = cas_client_upload(e->cas, src, nf, &raw, &wire);
  }
  if (rv == 0) {
    early.stderr_prefix.data = e->acc;
    early.stderr_prefix.len = n;
    early.files = fp;
    early.n_files = nf;
    rv = send_progress(e, &early);
  }
  if (rv == 0)
    DB_DEBUG(
        "worker",
        "lease %s: early outputs sent (%zu file(s), %llu bytes) in %lld ms",
        e->lease_id, nf, (unsigned long long)raw,
        (long long)(rpc_now_ms() - t0));
  else
    DB_WARN("worker", "lease %s: early outputs not sent: %s", e->lease_id,
            db_strerror(rv));
  for (size_t i = 0; i < nf; i++)
    free(data[i]);
  return rv;
}

/* A files-only EarlyOutputs (empty stderr_prefix) for an output announced
 * with "emit":"link" and already in the CAS: the client can fetch the
 * .rlib while rustc exits instead of after the action completes. */
static int send_linked(wk_early *e, const char *rel, reapi_digest d) {
  PbOutputFile f;
  PbOutputFile *fp[1] = {&f};
  PbDigest pd;
  EarlyPb early = DISTBUILD__WORKER__V1__EARLY_OUTPUTS__INIT;

  build__bazel__remote__execution__v2__output_file__init(&f);
  build__bazel__remote__execution__v2__digest__init(&pd);
  f.path = (char *)rel;
  reapi_pb_digest_set(&pd, &d);
  f.digest = &pd;
  early.files = fp;
  early.n_files = 1;
  return send_progress(e, &early);
}

/* rustc announced a finished link output: upload it while rustc exits,
 * and tell the clients if they already have the metadata. */
static void upload_linked(wk_early *e, const char *rel) {
  wk_known_file *k;
  cas_blob_src src = {0};
  char host[sizeof(k->path)];
  uint64_t raw = 0, wire = 0;
  int64_t t0 = rpc_now_ms();
  int rv;

  if (e->done.nlinked >= WK_EARLY_MAX_LINKED ||
      (size_t)snprintf(host, sizeof(host), "%s/%s", e->host_wd, rel) >=
          sizeof(host))
    return;
  for (size_t i = 0; i < e->done.nlinked; i++)
    if (!strcmp(e->done.linked[i].path, host))
      return; /* announced twice */
  k = &e->done.linked[e->done.nlinked];
  rv = wk_known_file_hash(host, k);
  if (rv == 0) {
    src.digest = k->digest;
    src.path = k->path;
    rv = cas_client_upload(e->cas, &src, 1, &raw, &wire);
  }
  if (rv != 0) {
    DB_DEBUG("worker", "lease %s: early upload of %s: %s", e->lease_id, rel,
             db_strerror(rv));
    return;
  }
  e->done.nlinked++;
  e->done.linked_bytes += raw;
  /* Only after the metadata went out: a client treats the first
   * EarlyOutputs it gets as the one that releases stderr. */
  if (e->done.sent && send_linked(e, rel, k->digest) != 0)
    DB_DEBUG("worker", "lease %s: link notice for %s not relayed", e->lease_id,
             rel);
  DB_DEBUG("worker",
           "lease %s: %s uploaded at its link notice (%llu bytes) "
           "in %lld ms",
           e->lease_id, rel, (unsigned long long)k->digest.size,
           (long long)(rpc_now_ms() - t0));
}

/* Look at one complete line acc[off, end) (end excludes the newline). */
static void scan_line(wk_early *e, size_t off, size_t end) {
  char line[MAX_LINE];
  const char *emit, *path, *rel;
  size_t n = end - off;
  if (n == 0 || n >= sizeof(line) || e->acc[off] != '{')
    return;
  memcpy(line, e->acc + off, n);
  line[n] = '\0';
  if (!wk_early_parse_artifact(line, &emit, &path))
    return;
  rel = declared(e, path);
  if (rel == NULL)
    return;
  if (strcmp(emit, "dep-info") == 0) {
    e->depinfo = rel;
  } else if (strcmp(emit, "metadata") == 0 && !e->meta_done) {
    e->done.sent = send_early(e, rel, end + 1) == 0;
    e->meta_done = 1; /* one attempt per run */
  } else if (strcmp(emit, "link") == 0) {
    upload_linked(e, rel);
  }
}

static void consume(wk_early *e, const uint8_t *p, size_t n) {
  size_t off = 0;
  while (off < n && e->file_fd >= 0) {
    ssize_t w = write(e->file_fd, p + off, n - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      e->io_err = 1;
      break;
    }
    off += (size_t)w;
  }
  if (e->gave_up)
    return;
  if (e->acc_len + n > SCAN_CAP) {
    e->gave_up = 1;
    return;
  }
  if (e->acc_len + n > e->acc_cap) {
    size_t cap = e->acc_cap ? e->acc_cap : 16384;
    uint8_t *nb;
    while (cap < e->acc_len + n)
      cap *= 2;
    nb = realloc(e->acc, cap);
    if (nb == NULL) {
      e->gave_up = 1;
      return;
    }
    e->acc = nb;
    e->acc_cap = cap;
  }
  memcpy(e->acc + e->acc_len, p, n);
  e->acc_len += n;
  while (!e->gave_up) {
    uint8_t *nl = memchr(e->acc + e->scan_off, '\n', e->acc_len - e->scan_off);
    size_t end;
    if (nl == NULL)
      break;
    end = (size_t)(nl - e->acc);
    scan_line(e, e->scan_off, end);
    e->scan_off = end + 1;
  }
}

static void *watch_main(void *arg) {
  wk_early *e = arg;
  uint8_t buf[16384];
  int idle_after_stop = 0;
  for (;;) {
    struct pollfd p = {e->rfd, POLLIN, 0};
    int n = poll(&p, 1, 50);
    ssize_t r;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break;
    if (n == 0) {
      /* A stray process may keep the pipe open after the sandbox returned
       * (only possible without a pid namespace): stop waiting soon. */
      if (atomic_load(&e->stop) && ++idle_after_stop >= 2)
        break;
      continue;
    }
    r = read(e->rfd, buf, sizeof(buf));
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (r <= 0)
      break;
    consume(e, buf, (size_t)r);
  }
  return NULL;
}

static void early_free(wk_early *e) {
  if (e->rfd >= 0)
    close(e->rfd);
  if (e->wfd >= 0)
    close(e->wfd);
  if (e->file_fd >= 0)
    close(e->file_fd);
  for (size_t i = 0; e->outputs && i < e->n_outputs; i++)
    free(e->outputs[i]);
  free(e->outputs);
  free(e->worker_id);
  free(e->session_id);
  free(e->lease_id);
  free(e->sandbox_wd);
  free(e->host_wd);
  free(e->acc);
  free(e);
}

int wk_early_start(const wk_early_cfg *cfg, int *write_fd, wk_early **out) {
  wk_early *e = calloc(1, sizeof(*e));
  int fds[2];
  int rv = DB_ENOMEM;
  *out = NULL;
  *write_fd = -1;
  if (e == NULL)
    return DB_ENOMEM;
  e->rfd = e->wfd = e->file_fd = -1;
  e->cas = cfg->cas;
  e->worker_id = strdup(cfg->worker_id ? cfg->worker_id : "");
  e->session_id = strdup(cfg->session_id ? cfg->session_id : "");
  e->lease_id = strdup(cfg->lease_id ? cfg->lease_id : "");
  e->sandbox_wd = strdup(cfg->sandbox_wd);
  e->host_wd = strdup(cfg->host_wd);
  e->outputs = calloc(cfg->n_outputs + 1, sizeof(char *));
  if (!e->worker_id || !e->session_id || !e->lease_id || !e->sandbox_wd ||
      !e->host_wd || !e->outputs)
    goto fail;
  for (; e->n_outputs < cfg->n_outputs; e->n_outputs++)
    if ((e->outputs[e->n_outputs] = strdup(cfg->outputs[e->n_outputs])) == NULL)
      goto fail;
  rv = DB_EIO;
  e->file_fd = open(cfg->stderr_path,
                    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0644);
  if (e->file_fd < 0 || pipe2(fds, O_CLOEXEC) != 0)
    goto fail;
  e->rfd = fds[0];
  e->wfd = fds[1];
  if (pthread_create(&e->thread, NULL, watch_main, e) != 0)
    goto fail;
  e->started = 1;
  *write_fd = e->wfd;
  *out = e;
  return 0;
fail:
  early_free(e);
  return rv;
}

int wk_early_stop(wk_early *e, wk_early_done *done) {
  int rv;
  if (done)
    memset(done, 0, sizeof(*done));
  if (e == NULL)
    return 0;
  close(e->wfd);
  e->wfd = -1;
  atomic_store(&e->stop, 1);
  if (e->started)
    pthread_join(e->thread, NULL);
  if (done)
    *done = e->done;
  rv = e->io_err ? DB_EIO : 0;
  early_free(e);
  return rv;
}
