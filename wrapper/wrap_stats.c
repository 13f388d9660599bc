/* Build statistics store; see wrap_stats.h. */
#include "wrap_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_err.h"
#include "wrap_util.h"

const char *wrap_stats_build_id(void) {
  static char id[96];
  const char *e = getenv("CARGO_DISTBUILD_BUILD_ID");
  if (e != NULL && *e)
    snprintf(id, sizeof(id), "%s", e);
  else
    snprintf(id, sizeof(id), "cargo-%ld", (long)getppid());
  return id;
}

char *wrap_stats_path(void) {
  const char *e = getenv("CARGO_DISTBUILD_STATS_DIR");
  char *dir, *p;
  if (e != NULL && *e) {
    (void)wrap_mkdirs(e);
    return wrap_path_join(e, "stats.log");
  }
  dir = wrap_cache_dir();
  if (dir == NULL)
    return NULL;
  p = wrap_path_join(dir, "stats.log");
  free(dir);
  return p;
}

/* Copy s into out replacing tabs and newlines, so a field stays one
 * field. */
static void clean(char *out, size_t n, const char *s) {
  size_t i = 0;
  for (; s && *s && i + 1 < n; s++)
    out[i++] = (*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s;
  out[i] = '\0';
}

/* Compaction: past this size the records of finished builds are folded
 * into one summary line, so the file (and every report, which reads all of
 * it) stays small however many builds there were. */
#define COMPACT_BYTES (256u << 10)
/* A build with a record this recent may still be running: kept as is. */
#define KEEP_MS (3600 * 1000)

static int64_t env_num(const char *name, int64_t dflt) {
  const char *e = getenv(name);
  return e != NULL && *e ? strtoll(e, NULL, 10) : dflt;
}

/* The lock beside the file: appends hold it shared, compaction
 * exclusively, so no append can land in a file that is being replaced.
 * Returns the descriptor or -1 (then callers go on without it). */
static int lock_stats(const char *path, int op) {
  char *lp = wrap_fmt("%s.lock", path);
  int fd = lp ? open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
  free(lp);
  if (fd >= 0) {
    int r;
    while ((r = flock(fd, op)) != 0 && errno == EINTR)
      ;
    if (r != 0) {
      close(fd);
      fd = -1;
    }
  }
  return fd;
}

static void maybe_compact(const char *path);

/* Append one line (a single write on O_APPEND, under the shared lock),
 * then compact if the file has grown past the limit. */
static int append_line(const char *line, int n) {
  char *path = wrap_stats_path();
  struct stat st;
  int fd, lk, rv = 0, big = 0;
  if (path == NULL)
    return DB_ENOMEM;
  lk = lock_stats(path, LOCK_SH);
  fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    rv = db_err_from_errno(errno);
  else if (write(fd, line, (size_t)n) != n)
    rv = DB_EIO;
  else
    big =
        fstat(fd, &st) == 0 &&
        st.st_size > env_num("CARGO_DISTBUILD_STATS_MAX_BYTES", COMPACT_BYTES);
  if (fd >= 0)
    close(fd);
  if (lk >= 0)
    close(lk); /* releases the shared lock */
  if (big)
    maybe_compact(path);
  free(path);
  return rv;
}

int wrap_stats_end(const char *build_id) {
  char line[256], id[128];
  int n;
  clean(id, sizeof(id), build_id);
  n = snprintf(line, sizeof(line), "v1\tt=%" PRId64 "\tbuild=%s\tkind=end\n",
               wrap_now_ms(), id);
  return n > 0 && (size_t)n < sizeof(line) ? append_line(line, n) : DB_EINVAL;
}

int wrap_stats_append(const wrap_stat_rec *r) {
  char line[1024], crate[128], reason[256];
  int n;
  clean(crate, sizeof(crate), r->crate ? r->crate : "?");
  clean(reason, sizeof(reason), r->reason ? r->reason : "");
  n = snprintf(line, sizeof(line),
               "v1\tt=%" PRId64 "\tbuild=%s\tkind=%s\tcrate=%s\texit=%d"
               "\tup_raw=%" PRIu64 "\tup_wire=%" PRIu64 "\tdown_raw=%" PRIu64
               "\tdown_wire=%" PRIu64 "\tsaved_ms=%" PRId64 "\texec_ms=%" PRId64
               "\twall_ms=%" PRId64 "\tearly=%d\treason=%s\n",
               wrap_now_ms(), wrap_stats_build_id(), r->kind, crate,
               r->exit_code, r->up_raw, r->up_wire, r->down_raw, r->down_wire,
               r->saved_ms, r->exec_ms, r->wall_ms, r->early ? 1 : 0, reason);
  if (n < 0 || (size_t)n >= sizeof(line))
    return DB_EINVAL;
  return append_line(line, n);
}

static const char *field(const char *line, const char *key, size_t *len) {
  size_t kl = strlen(key);
  const char *p = line;
  while ((p = strchr(p, '\t')) != NULL) {
    p++;
    if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
      const char *v = p + kl + 1;
      *len = strcspn(v, "\t\n");
      return v;
    }
  }
  *len = 0;
  return NULL;
}

static int64_t num(const char *line, const char *key) {
  size_t l;
  const char *v = field(line, key, &l);
  return v ? strtoll(v, NULL, 10) : 0;
}

static void add_reason(wrap_stats_sum *s, const char *r, size_t len,
                       uint64_t count) {
  char text[160];
  if (len >= sizeof(text))
    len = sizeof(text) - 1;
  memcpy(text, r, len);
  text[len] = '\0';
  for (int i = 0; i < s->n_reasons; i++) {
    if (strcmp(s->reasons[i].text, text) == 0) {
      s->reasons[i].count += count;
      return;
    }
  }
  if (s->n_reasons < WRAP_STATS_MAX_REASONS) {
    memcpy(s->reasons[s->n_reasons].text, text, len + 1);
    s->reasons[s->n_reasons].count = count;
    s->n_reasons++;
  }
}

/* Bytes and times: the same fields in a record and in a summary line. */
static void add_amounts(wrap_stats_sum *s, const char *line) {
  s->up_raw += (uint64_t)num(line, "up_raw");
  s->up_wire += (uint64_t)num(line, "up_wire");
  s->down_raw += (uint64_t)num(line, "down_raw");
  s->down_wire += (uint64_t)num(line, "down_wire");
  s->saved_ms += num(line, "saved_ms");
  s->exec_ms += num(line, "exec_ms");
  s->wall_ms += num(line, "wall_ms");
}

/* A summary line (kind=sum) written by compaction: its counters, and
 * fallback reasons as r0..r15 = "COUNT TEXT". */
static void account_sum(wrap_stats_sum *s, const char *line) {
  s->records += (uint64_t)num(line, "records");
  s->actions += (uint64_t)num(line, "actions");
  s->hits += (uint64_t)num(line, "hits");
  s->remote += (uint64_t)num(line, "remote");
  s->errors += (uint64_t)num(line, "errors");
  s->local += (uint64_t)num(line, "local");
  s->fallbacks += (uint64_t)num(line, "fallbacks");
  s->early += (uint64_t)num(line, "early");
  add_amounts(s, line);
  for (int i = 0; i < WRAP_STATS_MAX_REASONS; i++) {
    char key[8];
    size_t len;
    const char *v;
    char *end;
    uint64_t c;
    snprintf(key, sizeof(key), "r%d", i);
    v = field(line, key, &len);
    if (v == NULL)
      break;
    c = strtoull(v, &end, 10);
    if (end == v || *end != ' ' || (size_t)(end + 1 - v) > len)
      continue;
    add_reason(s, end + 1, len - (size_t)(end + 1 - v), c);
  }
}

static void account(wrap_stats_sum *s, const char *line) {
  size_t kl, rl;
  const char *k = field(line, "kind", &kl);
  const char *r = field(line, "reason", &rl);
  if (k == NULL)
    return;
  if (kl == 3 && strncmp(k, "sum", 3) == 0) {
    account_sum(s, line);
    return;
  }
  if (kl == 3 && strncmp(k, "end", 3) == 0)
    return; /* a build's end marker: no call */
  s->records++;
  if (kl == 3 && strncmp(k, "hit", 3) == 0) {
    s->hits++;
    s->actions++;
  } else if (kl == 6 && strncmp(k, "remote", 6) == 0) {
    s->remote++;
    s->actions++;
  } else if (kl == 5 && strncmp(k, "error", 5) == 0) {
    s->remote++;
    s->errors++;
    s->actions++;
  } else if (kl == 8 && strncmp(k, "fallback", 8) == 0) {
    s->fallbacks++;
    s->actions++;
    if (r != NULL && rl > 0)
      add_reason(s, r, rl, 1);
  } else if (kl == 5 && strncmp(k, "local", 5) == 0) {
    s->local++;
  }
  add_amounts(s, line);
  s->early += (uint64_t)(num(line, "early") > 0);
}

int wrap_stats_load(const char *path, const char *build_id,
                    wrap_stats_sum *last, wrap_stats_sum *total,
                    char **last_id) {
  char *text = NULL, *id = NULL;
  int rv;
  memset(last, 0, sizeof(*last));
  memset(total, 0, sizeof(*total));
  if (last_id)
    *last_id = NULL;
  rv = wrap_read_file(path, 0, &text, NULL);
  if (rv == DB_ENOTFOUND)
    return 0;
  if (rv != 0)
    return rv;
  if (build_id != NULL) {
    id = strdup(build_id);
  } else {
    /* The build id of the last complete record. */
    for (char *l = text; l && *l;) {
      char *nl = strchr(l, '\n');
      size_t len;
      const char *b;
      if (nl == NULL)
        break;
      *nl = '\0';
      b = field(l, "build", &len);
      if (strncmp(l, "v1\t", 3) == 0 && b != NULL &&
          !(len == 1 && b[0] == '-')) {
        free(id);
        id = strndup(b, len);
      }
      *nl = '\n';
      l = nl + 1;
    }
  }
  for (char *l = text; l && *l;) {
    char *nl = strchr(l, '\n');
    size_t len;
    const char *b;
    if (nl == NULL)
      break; /* a torn last line */
    *nl = '\0';
    if (strncmp(l, "v1\t", 3) == 0) {
      account(total, l);
      b = field(l, "build", &len);
      if (id != NULL && b != NULL && strlen(id) == len &&
          strncmp(b, id, len) == 0)
        account(last, l);
    }
    l = nl + 1;
  }
  if (last_id)
    *last_id = id;
  else
    free(id);
  free(text);
  return 0;
}

/* One kind=sum line for s (see account_sum). */
static char *sum_line(const wrap_stats_sum *s) {
  char reasons[WRAP_STATS_MAX_REASONS * 180] = "";
  size_t o = 0;
  for (int i = 0; i < s->n_reasons && o < sizeof(reasons); i++)
    o += (size_t)snprintf(reasons + o, sizeof(reasons) - o,
                          "\tr%d=%" PRIu64 " %s", i, s->reasons[i].count,
                          s->reasons[i].text);
  return wrap_fmt(
      "v1\tt=%" PRId64 "\tbuild=-\tkind=sum\trecords=%" PRIu64
      "\tactions=%" PRIu64 "\thits=%" PRIu64 "\tremote=%" PRIu64
      "\terrors=%" PRIu64 "\tlocal=%" PRIu64 "\tfallbacks=%" PRIu64
      "\tearly=%" PRIu64 "\tup_raw=%" PRIu64 "\tup_wire=%" PRIu64
      "\tdown_raw=%" PRIu64 "\tdown_wire=%" PRIu64 "\tsaved_ms=%" PRId64
      "\texec_ms=%" PRId64 "\twall_ms=%" PRId64 "%s\n",
      wrap_now_ms(), s->records, s->actions, s->hits, s->remote, s->errors,
      s->local, s->fallbacks, s->early, s->up_raw, s->up_wire, s->down_raw,
      s->down_wire, s->saved_ms, s->exec_ms, s->wall_ms, reasons);
}

/* 1 if line belongs to a build in active: this process's build and those
 * that may still be running (a record newer than the keep window and no
 * end marker). */
static int keep_line(const char *line, const wrap_strv *active) {
  size_t len;
  const char *b = field(line, "build", &len);
  for (size_t i = 0; b != NULL && i < active->n; i++)
    if (strlen(active->v[i]) == len && strncmp(active->v[i], b, len) == 0)
      return 1;
  return 0;
}

/* Fold the records of builds that are over (and an earlier summary) into
 * one summary line; keep the others verbatim. Under the exclusive lock, or
 * not at all when another process holds it. */
static void maybe_compact(const char *path) {
  wrap_stats_sum old;
  wrap_strv active = {0}, ended = {0};
  char *text = NULL, *tmp = NULL, *head = NULL;
  size_t tlen = 0, klen = 0, folded = 0;
  int lk = lock_stats(path, LOCK_EX | LOCK_NB), fd;
  int64_t keep = env_num("CARGO_DISTBUILD_STATS_KEEP_MS", KEEP_MS);
  int64_t cut = keep > 0 ? wrap_now_ms() - keep : INT64_MAX;
  memset(&old, 0, sizeof(old));
  if (lk < 0 || wrap_read_file(path, 0, &text, &tlen) != 0)
    goto out;
  /* Builds with a recent record and no end marker may still run. */
  for (char *l = text; *l;) {
    char *nl = strchr(l, '\n');
    size_t len, kl;
    const char *b, *k;
    if (nl == NULL)
      break;
    *nl = '\0';
    b = field(l, "build", &len);
    k = field(l, "kind", &kl);
    if (strncmp(l, "v1\t", 3) == 0 && b != NULL && k != NULL &&
        !(len == 1 && b[0] == '-')) {
      int end = kl == 3 && strncmp(k, "end", 3) == 0;
      char *id = strndup(b, len);
      int bad = id == NULL;
      if (!bad && end && !wrap_strv_has(&ended, id))
        bad = wrap_strv_add(&ended, id) != 0;
      else if (!bad && !end && num(l, "t") >= cut &&
               !wrap_strv_has(&active, id))
        bad = wrap_strv_add(&active, id) != 0;
      free(id);
      if (bad)
        goto out;
    }
    *nl = '\n';
    l = nl + 1;
  }
  for (size_t i = 0; i < active.n;) {
    if (wrap_strv_has(&ended, active.v[i])) {
      free(active.v[i]);
      active.v[i] = active.v[--active.n];
    } else {
      i++;
    }
  }
  if (!wrap_strv_has(&active, wrap_stats_build_id()) &&
      wrap_strv_add(&active, wrap_stats_build_id()) != 0)
    goto out;
  /* Fold in place: kept lines move to the front of text. */
  for (char *l = text; *l;) {
    char *nl = strchr(l, '\n');
    size_t n;
    if (nl == NULL)
      break; /* a torn last line: dropped */
    n = (size_t)(nl - l) + 1;
    *nl = '\0';
    if (strncmp(l, "v1\t", 3) == 0 && !keep_line(l, &active)) {
      account(&old, l);
      folded++;
    } else {
      *nl = '\n';
      memmove(text + klen, l, n);
      klen += n;
    }
    l = nl + 1;
  }
  if (folded < 2) /* nothing gained */
    goto out;
  head = sum_line(&old);
  tmp = wrap_fmt("%s.tmp.%ld", path, (long)getpid());
  if (head == NULL || tmp == NULL)
    goto out;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    int ok = wrap_write_all(fd, head, strlen(head)) == 0 &&
             wrap_write_all(fd, text, klen) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0)
      (void)unlink(tmp);
  }
out:
  if (lk >= 0)
    close(lk);
  wrap_strv_free(&active);
  wrap_strv_free(&ended);
  free(head);
  free(tmp);
  free(text);
}

void wrap_stats_print(FILE *f, const char *title, const wrap_stats_sum *s) {
  char a[32], b[32], c[32], d[32];
  double rate = s->actions ? 100.0 * (double)s->hits / (double)s->actions : 0;
  fprintf(f, "%s\n", title);
  fprintf(f, "  actions (distributable rustc calls): %" PRIu64 "\n",
          s->actions);
  fprintf(f, "  action-cache hits:                   %" PRIu64 " (%.0f%%)\n",
          s->hits, rate);
  fprintf(f, "  remote executions:                   %" PRIu64, s->remote);
  if (s->errors)
    fprintf(f, " (%" PRIu64 " with compile errors)", s->errors);
  if (s->early)
    fprintf(f, " (%" PRIu64 " pipelined: metadata released early)", s->early);
  fprintf(f, "\n  local (non-distributable) calls:     %" PRIu64 "\n",
          s->local);
  fprintf(f, "  local fallbacks:                     %" PRIu64 "\n",
          s->fallbacks);
  for (int i = 0; i < s->n_reasons; i++)
    fprintf(f, "    %" PRIu64 " x %s\n", s->reasons[i].count,
            s->reasons[i].text);
  fprintf(f, "  hit rate:                            %.0f%%\n", rate);
  fprintf(f, "  uploaded:                            %s on the wire (%s raw)\n",
          wrap_fmt_bytes(s->up_wire, a, sizeof(a)),
          wrap_fmt_bytes(s->up_raw, b, sizeof(b)));
  fprintf(f, "  downloaded:                          %s on the wire (%s raw)\n",
          wrap_fmt_bytes(s->down_wire, c, sizeof(c)),
          wrap_fmt_bytes(s->down_raw, d, sizeof(d)));
  fprintf(f, "  time saved by cache hits:            %.2fs\n",
          (double)s->saved_ms / 1000.0);
}

void wrap_stats_json(FILE *f, const wrap_stats_sum *s) {
  double rate = s->actions ? (double)s->hits / (double)s->actions : 0;
  fprintf(f,
          "{\"actions\":%" PRIu64 ",\"action_cache_hits\":%" PRIu64
          ",\"remote_executions\":%" PRIu64 ",\"compile_errors\":%" PRIu64
          ",\"local\":%" PRIu64 ",\"fallbacks\":%" PRIu64
          ",\"hit_rate\":%.4f,\"bytes_uploaded\":%" PRIu64
          ",\"bytes_uploaded_raw\":%" PRIu64 ",\"bytes_downloaded\":%" PRIu64
          ",\"bytes_downloaded_raw\":%" PRIu64 ",\"time_saved_ms\":%" PRId64
          ",\"pipelined\":%" PRIu64 ",\"fallback_reasons\":{",
          s->actions, s->hits, s->remote, s->errors, s->local, s->fallbacks,
          rate, s->up_wire, s->up_raw, s->down_wire, s->down_raw, s->saved_ms,
          s->early);
  for (int i = 0; i < s->n_reasons; i++) {
    fputc('"', f);
    for (const char *p = s->reasons[i].text; *p; p++) {
      if (*p == '"' || *p == '\\')
        fputc('\\', f);
      if ((unsigned char)*p >= 0x20)
        fputc(*p, f);
    }
    fprintf(f, "\":%" PRIu64 "%s", s->reasons[i].count,
            i + 1 < s->n_reasons ? "," : "");
  }
  fputs("}}", f);
}
