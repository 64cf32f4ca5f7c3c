/* The bucket table: one bucket per distinct call stack and profile type.
 *
 * Buckets are found without a lock and inserted under mprof_insert_lock. A bucket is fully
 * written before it is published (release store of a table slot or list head), and none of the
 * fields in the header or the stack is modified after that; only the per-type record changes,
 * under the locks its own module documents (mprof_cycle.h for heap records). Buckets are never
 * freed: a program has a bounded number of allocation sites, and a reader that walks the table
 * without a lock must never see a bucket go away. The table starts small and grows as buckets are
 * added (mprof_bucket.c says how readers stay safe while it does).
 *
 * The table is designed for several profile types: each type has its own list of all its
 * buckets (for writers) and its own record layout, and the same stack in two types gives two
 * buckets. */
#ifndef MPROF_BUCKET_H
#define MPROF_BUCKET_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "mprof_cycle.h"

typedef enum mprof_bucket_type_e {
  MPROF_BUCKET_HEAP = 0, /* sampled allocations: mprof_mem_record_t */
  MPROF_BUCKET_LOCK = 1, /* the contention profile: mprof_lock_record_t */
  MPROF_BUCKET_NTYPES
} mprof_bucket_type_t;

/* Contended lock acquisitions (mprof_mutex.h). Guarded by mprof_contention_lock. */
typedef struct mprof_lock_record_s {
  uint64_t count;   /* contended acquisitions */
  uint64_t wait_ns; /* nanoseconds spent waiting */
} mprof_lock_record_t;

typedef struct mprof_bucket_s mprof_bucket_t;
struct mprof_bucket_s {
  mprof_bucket_t* allnext; /* next bucket of the same type (newest first); immutable */
  uint64_t hash;           /* hash of type and stack */
  uint32_t nstk;           /* frames in stk, >= 1 */
  uint16_t type;           /* mprof_bucket_type_t */
  uint16_t tag;            /* part of the key besides the stack (the thread label), 0 = none */
  union {
    mprof_mem_record_t mem;   /* MPROF_BUCKET_HEAP */
    mprof_lock_record_t lock; /* MPROF_BUCKET_LOCK */
  } rec;
  uintptr_t stk[]; /* return addresses, leaf first */
};

/* Finds the bucket for (type, stack), creating it if `create` (under mprof_insert_lock). Returns
 * NULL if it does not exist and create is false, or if profiler memory is exhausted. */
mprof_bucket_t* mprof__bucket_get(mprof_bucket_type_t type, const uintptr_t* stk, uint32_t nstk,
                                  int create);

/* The same for the bucket keyed by (type, tag, stack): the same stack with two tags gives two
 * buckets. mprof__bucket_get is tag 0. */
mprof_bucket_t* mprof__bucket_get_tagged(mprof_bucket_type_t type, uint16_t tag,
                                         const uintptr_t* stk, uint32_t nstk, int create);

/* Head of the list of every bucket of `type`, newest first (acquire load: every bucket reached
 * from it is fully initialised). Buckets created after the call are not reached. */
mprof_bucket_t* mprof__bucket_list(mprof_bucket_type_t type);

/* Number of buckets of `type` (relaxed). */
size_t mprof__bucket_count(mprof_bucket_type_t type);

/* Slots of the current table (0 before the first bucket), for tests and statistics. */
size_t mprof__bucket_table_slots(void);

void mprof__bucket_fork_prepare(void);
void mprof__bucket_fork_parent(void);
void mprof__bucket_fork_child(void);

#endif
