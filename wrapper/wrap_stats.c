/* Build statistics store; see wrap_stats.h. */
#include "wrap_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
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

int wrap_stats_append(const wrap_stat_rec *r) {
  char line[1024], crate[128], reason[256];
  char *path = wrap_stats_path();
  int fd, n, rv = 0;
  if (path == NULL)
    return DB_ENOMEM;
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
  if (n < 0 || (size_t)n >= sizeof(line)) {
    free(path);
    return DB_EINVAL;
  }
  fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    rv = db_err_from_errno(errno);
  else if (write(fd, line, (size_t)n) != n)
    rv = DB_EIO;
  if (fd >= 0)
    close(fd);
  free(path);
  return rv;
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

static void add_reason(wrap_stats_sum *s, const char *r, size_t len) {
  char text[160];
  if (len >= sizeof(text))
    len = sizeof(text) - 1;
  memcpy(text, r, len);
  text[len] = '\0';
  for (int i = 0; i < s->n_reasons; i++) {
    if (strcmp(s->reasons[i].text, text) == 0) {
      s->reasons[i].count++;
      return;
    }
  }
  if (s->n_reasons < WRAP_STATS_MAX_REASONS) {
    memcpy(s->reasons[s->n_reasons].text, text, len + 1);
    s->reasons[s->n_reasons].count = 1;
    s->n_reasons++;
  }
}

static void account(wrap_stats_sum *s, const char *line) {
  size_t kl, rl;
  const char *k = field(line, "kind", &kl);
  const char *r = field(line, "reason", &rl);
  if (k == NULL)
    return;
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
      add_reason(s, r, rl);
  } else if (kl == 5 && strncmp(k, "local", 5) == 0) {
    s->local++;
  }
  s->up_raw += (uint64_t)num(line, "up_raw");
  s->up_wire += (uint64_t)num(line, "up_wire");
  s->down_raw += (uint64_t)num(line, "down_raw");
  s->down_wire += (uint64_t)num(line, "down_wire");
  s->saved_ms += num(line, "saved_ms");
  s->exec_ms += num(line, "exec_ms");
  s->wall_ms += num(line, "wall_ms");
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
      if (strncmp(l, "v1\t", 3) == 0 && b != NULL) {
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
