/*
 * Fair queue: one FIFO per tool_invocation_id, served round-robin, so a
 * build with thousands of queued actions cannot starve a small one. The
 * ring holds only invocations with queued ops; after an invocation is
 * served the cursor moves past it.
 */
#include "sched_int.h"

#include "db_err.h"

#include <stdlib.h>
#include <string.h>

struct sched_inv {
  char *id;
  sched_op *head, *tail;
  size_t n;
  sched_inv *next, *prev; /* ring; self-linked when alone */
  int in_ring;
};

int sched_queue_init(sched_queue *q) {
  memset(q, 0, sizeof(*q));
  return sched_map_new(&q->invs);
}

static int free_inv(const char *key, void *val, void *ctx) {
  sched_inv *inv = val;
  (void)key;
  (void)ctx;
  free(inv->id);
  free(inv);
  return 1;
}

void sched_queue_clear(sched_queue *q) {
  if (q->invs) {
    sched_map_sweep(q->invs, free_inv, NULL);
    sched_map_free(q->invs);
  }
  memset(q, 0, sizeof(*q));
}

static void ring_add(sched_queue *q, sched_inv *inv) {
  if (inv->in_ring)
    return;
  inv->in_ring = 1;
  if (!q->ring) {
    inv->next = inv->prev = inv;
    q->ring = inv;
    return;
  }
  /* Insert just before the cursor: the newcomer gets its turn at the end
   * of the current round, i.e. after at most one dispatch per waiting
   * invocation, however long their backlogs are. */
  inv->next = q->ring;
  inv->prev = q->ring->prev;
  q->ring->prev->next = inv;
  q->ring->prev = inv;
}

static void ring_del(sched_queue *q, sched_inv *inv) {
  if (!inv->in_ring)
    return;
  inv->in_ring = 0;
  if (inv->next == inv) {
    q->ring = NULL;
  } else {
    inv->prev->next = inv->next;
    inv->next->prev = inv->prev;
    if (q->ring == inv)
      q->ring = inv->next;
  }
  inv->next = inv->prev = NULL;
  /* Drop empty invocations so the map does not grow without bound. */
  sched_map_del(q->invs, inv->id);
  free(inv->id);
  free(inv);
}

int sched_queue_push(sched_queue *q, sched_op *op, const char *invocation,
                     int front) {
  sched_inv *inv = sched_map_get(q->invs, invocation);

  if (!inv) {
    inv = calloc(1, sizeof(*inv));
    if (!inv)
      return DB_ENOMEM;
    inv->id = strdup(invocation);
    if (!inv->id || sched_map_put(q->invs, invocation, inv)) {
      free(inv->id);
      free(inv);
      return DB_ENOMEM;
    }
  }
  op->inv = inv;
  if (front) {
    op->qprev = NULL;
    op->qnext = inv->head;
    if (inv->head)
      inv->head->qprev = op;
    else
      inv->tail = op;
    inv->head = op;
  } else {
    op->qnext = NULL;
    op->qprev = inv->tail;
    if (inv->tail)
      inv->tail->qnext = op;
    else
      inv->head = op;
    inv->tail = op;
  }
  inv->n++;
  q->depth++;
  ring_add(q, inv);
  return 0;
}

void sched_queue_remove(sched_queue *q, sched_op *op) {
  sched_inv *inv = op->inv;

  if (!inv)
    return;
  if (op->qprev)
    op->qprev->qnext = op->qnext;
  else
    inv->head = op->qnext;
  if (op->qnext)
    op->qnext->qprev = op->qprev;
  else
    inv->tail = op->qprev;
  op->qnext = op->qprev = NULL;
  op->inv = NULL;
  inv->n--;
  q->depth--;
  if (inv->n == 0)
    ring_del(q, inv);
}

sched_op *sched_queue_pick(sched_queue *q, int (*can_run)(sched_op *, void *),
                           void *ctx) {
  sched_inv *start = q->ring, *inv;

  if (!start)
    return NULL;
  inv = start;
  do {
    sched_op *op;
    for (op = inv->head; op; op = op->qnext) {
      if (can_run(op, ctx)) {
        sched_inv *next = inv->next;
        int alone = next == inv;
        sched_queue_remove(q, op); /* may free inv, never next */
        /* The next pick starts at the invocation after this one. */
        if (!alone)
          q->ring = next;
        return op;
      }
    }
    inv = inv->next;
  } while (inv != start);
  return NULL;
}

void sched_queue_each(sched_queue *q, void (*fn)(sched_op *, void *),
                      void *ctx) {
  sched_inv *inv = q->ring;
  if (!inv)
    return;
  do {
    sched_op *op, *next;
    sched_inv *ninv = inv->next;
    for (op = inv->head; op; op = next) {
      next = op->qnext;
      fn(op, ctx);
    }
    inv = ninv;
  } while (inv != q->ring);
}
