/*
 * The durability mode the store tests open their stores in: ctest runs
 * each suite twice, once with CAS_STORE_TEST_SYNC=background.
 */
#ifndef CAS_STORE_TEST_MODE_H
#define CAS_STORE_TEST_MODE_H

#include <stdlib.h>
#include <string.h>

#include "cas_store.h"

static inline int store_sync_mode(void) {
  const char *v = getenv("CAS_STORE_TEST_SYNC");
  return v && strcmp(v, "background") == 0 ? CAS_SYNC_BACKGROUND
                                           : CAS_SYNC_EACH;
}

#endif
