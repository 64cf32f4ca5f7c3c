/* Locks of the profiler.
 *
 * A thin wrapper over pthread mutexes so that every profiler lock has a rank (checked in debug
 * builds) and a single place where contention can be observed. Lock order, lowest rank first;
 * a thread only ever acquires a lock of higher rank than every lock it already holds:
 *
 *   MPROF_RANK_DUMP      mprof_dump_lock: one dump (or epoch write) at a time
 *   MPROF_RANK_CYCLE     mprof_cycle_lock: advancing the global cycle, flushed cycle marker
 *   MPROF_RANK_ACTIVE    mprof_active_lock: every bucket's published `active` record
 *   MPROF_RANK_FUTURE    mprof_future_lock[0..2][0..7]: per future cycle slot and bucket stripe
 *                        (never two at once)
 *   MPROF_RANK_CONTENTION mprof_contention_lock: the records of the contention profile
 *   MPROF_RANK_INSERT    mprof_insert_lock: insertion into the bucket table
 *   MPROF_RANK_BLOCKMAP  the sampled-block map's shard locks (never two at once)
 *   MPROF_RANK_META      mprof_meta_lock: the metadata allocator
 *
 * Threads that allocate or free take at most one future lock, the insertion lock, one blockmap
 * shard lock and the meta lock, each briefly and never nested except insert -> meta and
 * blockmap -> meta. A flush takes active and then future[C%3]; a dump takes dump, cycle, active.
 * fork() takes every lock in this order in the prepare handler.
 *
 * Every lock has a name; a contended acquisition (the first try fails) may be sampled for the
 * contention profile (mprof_mutex.h), whose records end in a frame `mprof_lock:<name>`. Each
 * thread counts the profiler locks it holds, so that contention met while holding one is kept
 * in the thread's pending slot and recorded once it holds none. */
#ifndef MPROF_LOCK_H
#define MPROF_LOCK_H

#include <pthread.h>
#include <stdbool.h>

typedef enum mprof_rank_e {
  MPROF_RANK_NONE = 0,
  MPROF_RANK_DUMP,
  MPROF_RANK_CYCLE,
  MPROF_RANK_ACTIVE,
  MPROF_RANK_FUTURE,
  MPROF_RANK_CONTENTION,
  MPROF_RANK_INSERT,
  MPROF_RANK_BLOCKMAP,
  MPROF_RANK_META,
} mprof_rank_t;

typedef struct mprof_lock_s {
  pthread_mutex_t mu;
  mprof_rank_t rank;
  const char* name; /* "mprof_lock:<name>": the leaf frame of its contention records */
} mprof_lock_t;

#define MPROF_LOCK_INIT(rank_, name_)                                                              \
  { PTHREAD_MUTEX_INITIALIZER, (rank_), "mprof_lock:" name_ }

void mprof__lock(mprof_lock_t* l);
void mprof__unlock(mprof_lock_t* l);
bool mprof__trylock(mprof_lock_t* l);
/* After fork() in the child: the lock is released and usable, whoever held it (the forking
 * thread held it: it is no longer counted among the locks that thread holds). */
void mprof__lock_reinit(mprof_lock_t* l);

#ifdef MPROF_DEBUG_LOCKS
void mprof__lock_assert_held(const mprof_lock_t* l);
#else
#define mprof__lock_assert_held(l) ((void)(l))
#endif

#endif
