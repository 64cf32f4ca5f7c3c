/* Locks of the profiler.
 *
 * A thin wrapper over pthread mutexes so that every profiler lock has a rank (checked in debug
 * builds) and a single place where contention can be observed. This is the one list of the
 * profiler's locks and their order, lowest rank first; a thread only ever acquires a lock of
 * higher rank than every lock it already holds:
 *
 *   MPROF_RANK_DUMP      mprof_dump_lock: one dump (or epoch write) at a time; held across the
 *                        dump's writes, which may block on a pipe for as long as its reader
 *                        pleases: nothing that an allocating thread or fork() needs waits for it
 *   MPROF_RANK_DUMPFILE  mprof_dumpfile_lock (mprof_core.c): a dump's file open and commit and,
 *                        only where /proc is missing, its reading of the loaded objects through
 *                        dl_iterate_phdr: what fork() must not split; a few system calls, no
 *                        wait for a reader
 *   MPROF_RANK_CYCLE     mprof_cycle_lock: epoch boundaries and flushes (a flush folds the
 *                        buckets touched in one cycle), the snapshot copy flag
 *   MPROF_RANK_FUTURE    mprof_future_lock[0..2][0..7]: per future cycle slot and bucket stripe
 *                        (never two at once); held for a few stores
 *   MPROF_RANK_CONTENTION mprof_contention_lock: the records of the contention profile
 *   MPROF_RANK_INSERT    mprof_insert_lock: insertion into the bucket table (its O(n) growth
 *                        runs without it)
 *   MPROF_RANK_BLOCKMAP  the sampled-block map's shard locks (never two at once); held for an
 *                        insert, a remove, a shard rebuild or a copy of the shard
 *   MPROF_RANK_META      mprof_meta_lock: the metadata allocator (a few stores; a new chunk is
 *                        mapped without it)
 *
 * Allocating threads (seed 000): a sampled malloc or free takes one future lock, the block's
 * shard lock, and rarely the insert and meta locks, each briefly and never nested except
 * insert -> meta and blockmap -> meta. Whatever else an allocating thread starts (automatic
 * epoch, peak refresh, automatic dump) only tries the dump and cycle locks and skips the work
 * when one is taken or a snapshot copy is under way (mprof_cycle.h); under them it takes only
 * the brief locks above. So an allocating thread never waits for a dump, a flush or a copy.
 * A flush takes cycle, then future[C%3] one stripe at a time; a dump takes dump, dumpfile or
 * cycle briefly, and copies `active` with no lock held. fork()'s prepare handler takes every lock
 * but the dump lock in this order; the child frees them all (mprof_core.c).
 *
 * No pthread_cancel can leave a lock held: while a thread holds mprof_dump_lock (the only
 * sections with cancellation points: a dump's open, write and close) its cancellation is
 * disabled (pthread_setcancelstate; the previous state comes back with the unlock), so a cancel
 * takes effect at the thread's next cancellation point outside the profiler. The sections under
 * the other locks touch memory only, which deferred cancellation cannot interrupt.
 *
 * Every lock has a name; a contended acquisition (the first try fails) may be sampled for the
 * contention profile (mprof_mutex.h), whose records end in a frame `mprof_lock:<name>`. Each
 * thread counts the profiler locks it holds or is taking (mprof__lock_depth), one count for two
 * uses: re-entry from a signal handler is refused while it is nonzero (EDEADLK), and contention
 * met while it is nonzero is kept in the thread's pending slot and recorded when it drops to 0. */
#ifndef MPROF_LOCK_H
#define MPROF_LOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum mprof_rank_e {
  MPROF_RANK_NONE = 0,
  MPROF_RANK_DUMP,
  MPROF_RANK_DUMPFILE,
  MPROF_RANK_CYCLE,
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
/* After fork() in the child: the lock, which the forking thread took with mprof__lock in the
 * prepare handler, is released and usable again (and no longer counted among the locks that
 * thread holds). */
void mprof__lock_reinit(mprof_lock_t* l);

/* After fork() in the child: the lock, which some other thread of the parent may have held (the
 * forking thread did not take it), is released and usable again. */
void mprof__lock_reset(mprof_lock_t* l);

/* Profiler locks the calling thread holds or is taking (see above). */
extern __thread volatile unsigned mprof__lock_depth __attribute__((tls_model("initial-exec")));

/* The contention profile's part (mprof_mutex.c installs it when it starts, so that this module
 * also links without it): `contended` acquires a lock whose first try failed, timing the wait if
 * it samples it; `idle` runs on a thread whose count drops to 0 while mprof__lock_deferred is
 * nonzero (the profile keeps an event of the thread for that moment). Until then a contended lock
 * is just waited for. */
void mprof__lock_set_contention(void (*contended)(mprof_lock_t* l), void (*idle)(void));
extern __thread uint32_t mprof__lock_deferred __attribute__((tls_model("initial-exec")));

/* The pthread mutex lock the profiler's own waits use: glibc's, bypassing the interposer of the
 * program's mutexes (mprof_mutex_app.c) where that is linked in. */
int mprof__sys_mutex_lock(pthread_mutex_t* m);

/* True while the calling thread holds (or is taking) a profiler lock: code that would take a
 * lock again from a signal handler or another re-entry must refuse (EDEADLK) instead. */
bool mprof__lock_held_by_thread(void);

#ifdef MPROF_DEBUG_LOCKS
void mprof__lock_assert_held(const mprof_lock_t* l);
#else
#define mprof__lock_assert_held(l) ((void)(l))
#endif

#endif
