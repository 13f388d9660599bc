/*
 * Background durability (CAS_SYNC_BACKGROUND): group commit for the CAS
 * and the action cache.
 *
 * Blobs are renamed into place as soon as they are written and verified;
 * the syncer thread makes them durable shortly afterwards with one
 * syncfs() for everything written meanwhile. Action-cache entries are
 * different: an entry must never reach the disk before the blobs it
 * references, and a torn entry could parse as a shorter, wrong result.
 * So an entry waits in tmp/ (served from memory by cas_ac_get) until a
 * syncfs that started after it was written has succeeded, and only then
 * is it renamed into place.
 *
 * After a power loss, a blob written in the last interval may be missing,
 * empty or torn. The start-up scan drops empty and short files, readers
 * verify the digest (and drop a torn blob) and stored frames carry a zstd
 * checksum, so such a blob is a miss, never wrong data. A failed syncfs
 * drops every blob and entry it covered.
 */
#include "cas_store_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cas_ac_pending {
  cas_key k;
  uint8_t *data; /* served by cas_ac_get until renamed */
  size_t len;
  char tmp[CAS_PATH_MAX];
  int taken;   /* covered by the syncfs in progress */
  int removed; /* cas_ac_remove()d meanwhile: unlink, never rename */
  struct cas_ac_pending *next;
};

void cas_ac_path(const cas_key *k, char *buf) {
  char hex[65];
  cas_key_hex(k, hex);
  snprintf(buf, CAS_PATH_MAX, "ac/%.2s/%s-%lld", hex, hex, (long long)k->size);
}

static void wake_locked(cas_store *s) {
  s->sync_dirty = 1;
  pthread_cond_signal(&s->sync_cv);
}

int cas_sync_note_blob(cas_store *s, const cas_key *k) {
  int rv = 0;

  pthread_mutex_lock(&s->sync_mu);
  if (s->nepoch == s->epoch_cap) {
    size_t nc = s->epoch_cap ? s->epoch_cap * 2 : 64;
    cas_key *ne = realloc(s->epoch, nc * sizeof(*ne));
    if (!ne) {
      rv = DB_ENOMEM;
      goto out;
    }
    s->epoch = ne;
    s->epoch_cap = nc;
  }
  s->epoch[s->nepoch++] = *k;
out:
  /* Even without room to remember the key, the blob gets synced. */
  wake_locked(s);
  pthread_mutex_unlock(&s->sync_mu);
  return rv;
}

int cas_sync_ac_put(cas_store *s, const cas_key *k, const char *tmpname,
                    const void *data, size_t len) {
  cas_ac_pending *p = calloc(1, sizeof(*p));

  if (!p || !(p->data = malloc(len ? len : 1))) {
    free(p);
    return DB_ENOMEM;
  }
  memcpy(p->data, data, len);
  p->len = len;
  p->k = *k;
  snprintf(p->tmp, sizeof(p->tmp), "%s", tmpname);
  pthread_mutex_lock(&s->sync_mu);
  /* Newest first: cas_ac_get finds the latest put of a key first. */
  p->next = s->ac_pending;
  s->ac_pending = p;
  wake_locked(s);
  pthread_mutex_unlock(&s->sync_mu);
  return 0;
}

static int key_eq(const cas_key *a, const cas_key *b) {
  return a->size == b->size && memcmp(a->hash, b->hash, 32) == 0;
}

int cas_sync_ac_get(cas_store *s, const cas_key *k, uint8_t **data,
                    size_t *len) {
  int rv = DB_ENOTFOUND;

  pthread_mutex_lock(&s->sync_mu);
  for (cas_ac_pending *p = s->ac_pending; p; p = p->next) {
    if (!key_eq(&p->k, k))
      continue;
    if (p->removed)
      break; /* removed after its newest put: absent */
    *data = malloc(p->len ? p->len : 1);
    if (!*data) {
      rv = DB_ENOMEM;
      break;
    }
    memcpy(*data, p->data, p->len);
    *len = p->len;
    rv = 0;
    break;
  }
  pthread_mutex_unlock(&s->sync_mu);
  return rv;
}

int cas_sync_ac_remove(cas_store *s, const cas_key *k) {
  int found = 0;

  pthread_mutex_lock(&s->sync_mu);
  for (cas_ac_pending *p = s->ac_pending; p; p = p->next) {
    if (key_eq(&p->k, k) && !p->removed) {
      p->removed = 1;
      found = 1;
    }
  }
  pthread_mutex_unlock(&s->sync_mu);
  return found;
}

/* One group commit: syncfs everything written so far, then rename the
 * action-cache entries that were waiting for it. */
static void sync_round(cas_store *s) {
  cas_key *keys;
  size_t nkeys;
  cas_ac_pending *p, **pp, *done = NULL;
  int rc, err = 0;
  char path[CAS_PATH_MAX];

  pthread_mutex_lock(&s->sync_mu);
  keys = s->epoch;
  nkeys = s->nepoch;
  s->epoch = NULL;
  s->nepoch = s->epoch_cap = 0;
  s->sync_dirty = 0;
  s->rounds_started++;
  for (p = s->ac_pending; p; p = p->next)
    p->taken = 1;
  pthread_mutex_unlock(&s->sync_mu);

  rc = syncfs(s->syncfd);
  if (rc != 0) {
    err = errno;
    DB_ERROR("cas",
             "syncfs: %s; dropping %zu blob(s) written since the "
             "last sync",
             strerror(err), nkeys);
    for (size_t i = 0; i < nkeys; i++)
      cas_drop_key(s, &keys[i]);
  }

  /* Rename (or drop) the taken entries, oldest first, so that the newest
   * put of a key is the one left in place. */
  pthread_mutex_lock(&s->sync_mu);
  pp = &s->ac_pending;
  while ((p = *pp) != NULL) {
    if (!p->taken) {
      pp = &p->next;
      continue;
    }
    *pp = p->next;
    p->next = done; /* reverses: done is oldest first */
    done = p;
  }
  for (p = done; p; p = p->next) {
    if (rc == 0 && !p->removed) {
      cas_ac_path(&p->k, path);
      if (renameat(s->rootfd, p->tmp, s->rootfd, path) == 0)
        p->tmp[0] = '\0';
      else
        DB_WARN("cas", "action cache entry %s: %s", path, strerror(errno));
    }
    if (p->tmp[0])
      unlinkat(s->rootfd, p->tmp, 0);
  }
  s->syncs++;
  if (rc != 0)
    s->sync_failures++;
  pthread_cond_broadcast(&s->sync_done_cv);
  pthread_mutex_unlock(&s->sync_mu);
  while (done) {
    p = done->next;
    free(done->data);
    free(done);
    done = p;
  }
  free(keys);
}

static void *syncer_main(void *arg) {
  cas_store *s = arg;

  pthread_mutex_lock(&s->sync_mu);
  for (;;) {
    while (!s->sync_dirty && !s->sync_stop)
      pthread_cond_wait(&s->sync_cv, &s->sync_mu);
    if (!s->sync_dirty && s->sync_stop)
      break;
    if (!s->sync_stop && s->sync_delay_ms > 0) {
      /* Let a burst of writes (a build's uploads) share one syncfs. */
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_nsec += (long)s->sync_delay_ms * 1000000L;
      until.tv_sec += until.tv_nsec / 1000000000L;
      until.tv_nsec %= 1000000000L;
      while (!s->sync_stop && !s->sync_now &&
             pthread_cond_timedwait(&s->sync_cv, &s->sync_mu, &until) == 0)
        ;
    }
    s->sync_now = 0;
    pthread_mutex_unlock(&s->sync_mu);
    sync_round(s);
    pthread_mutex_lock(&s->sync_mu);
  }
  pthread_mutex_unlock(&s->sync_mu);
  return NULL;
}

int cas_sync_start(cas_store *s) {
  int rv;

  pthread_mutex_init(&s->sync_mu, NULL);
  pthread_cond_init(&s->sync_cv, NULL);
  pthread_cond_init(&s->sync_done_cv, NULL);
  s->sync_inited = 1;
  if (s->sync_mode != CAS_SYNC_BACKGROUND)
    return 0;
  /* A descriptor of our own, open for the store's lifetime: syncfs then
   * reports every writeback error since open (errseq), even one another
   * process's syncfs has already seen. */
  s->syncfd = openat(s->rootfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->syncfd < 0)
    return cas_err_errno();
  if ((rv = pthread_create(&s->syncer, NULL, syncer_main, s)) != 0)
    return rv == EAGAIN ? DB_ENOMEM : DB_EIO;
  s->syncer_started = 1;
  return 0;
}

int cas_store_flush(cas_store *s) {
  int rv = 0;

  if (!s || !s->syncer_started)
    return 0;
  pthread_mutex_lock(&s->sync_mu);
  if (s->sync_dirty || s->ac_pending) {
    /* The next round to start takes everything written before now; a
     * round already running may not cover it. Rounds finish in order. */
    uint64_t target = s->rounds_started + 1;
    s->sync_now = 1;
    s->sync_dirty = 1;
    pthread_cond_signal(&s->sync_cv);
    while (s->syncs < target)
      pthread_cond_wait(&s->sync_done_cv, &s->sync_mu);
  }
  if (s->sync_failures > s->flushed_failures) {
    s->flushed_failures = s->sync_failures;
    rv = DB_EIO;
  }
  pthread_mutex_unlock(&s->sync_mu);
  return rv;
}

void cas_sync_stop(cas_store *s) {
  if (!s->sync_inited)
    return;
  if (s->syncer_started) {
    pthread_mutex_lock(&s->sync_mu);
    s->sync_stop = 1;
    pthread_cond_signal(&s->sync_cv);
    pthread_mutex_unlock(&s->sync_mu);
    /* The syncer finishes the last round (blobs and pending entries)
     * before it exits. */
    pthread_join(s->syncer, NULL);
    s->syncer_started = 0;
  }
  while (s->ac_pending) { /* never started: nothing was taken */
    cas_ac_pending *p = s->ac_pending;
    s->ac_pending = p->next;
    if (p->tmp[0])
      unlinkat(s->rootfd, p->tmp, 0);
    free(p->data);
    free(p);
  }
  free(s->epoch);
  if (s->syncfd >= 0)
    close(s->syncfd);
  pthread_cond_destroy(&s->sync_done_cv);
  pthread_cond_destroy(&s->sync_cv);
  pthread_mutex_destroy(&s->sync_mu);
  s->sync_inited = 0;
}

void cas_sync_stats(cas_store *s, uint64_t *syncs, uint64_t *failures) {
  pthread_mutex_lock(&s->sync_mu);
  *syncs = s->syncs;
  *failures = s->sync_failures;
  pthread_mutex_unlock(&s->sync_mu);
}
