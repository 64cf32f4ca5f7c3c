/* The contention profile: who waits on locks, and for how long.
 *
 * A contended acquisition is one whose first try fails; uncontended acquisitions are never timed.
 * On average one in N contended acquisitions is sampled (N = prof_mutex_fraction, 0 = off) and
 * recorded with weight N: the waiting thread's stack and the time it waited (CLOCK_MONOTONIC).
 * Three sources feed it: the profiler's own locks (mprof_lock.h, leaf frame `mprof_lock:<name>`),
 * an allocator's locks reported by its glue (mprof__contention_report, leaf frame of the glue's
 * choosing) and, with prof_mutex_app, the program's pthread mutexes (mprof_mutex_app.c, in
 * libmprof.so only).
 *
 * Records live in the bucket table as MPROF_BUCKET_LOCK buckets, guarded by
 * mprof_contention_lock alone: heap flushes and dumps never wait on it, nor it on them. Counts
 * are cumulative.
 *
 * A thread that waits while it holds profiler or allocator locks must not take the table's locks
 * (lock order) nor allocate: it keeps the event in its pending slot, preallocated per thread, and
 * records it when it holds none any more (its last mprof__unlock, or mprof__contention_flush).
 * Profiler locks held are the lock module's per-thread count (mprof__lock_depth, mprof_lock.h),
 * the same count that refuses re-entry with EDEADLK; allocator locks are what the glue last
 * reported.
 * The slot holds one event: when it is taken, the larger delay is kept and the other is charged to
 * the sentinel frame `mprof_lost_contended_lock`. Contention met while recording contention is
 * charged to the sentinel too (no stack, no recursion). The sentinel is two atomic counters: it
 * needs no lock and no memory.
 *
 * Frames that are not code (lock names, the sentinel) are pseudo addresses from
 * MPROF_PSEUDO_PC_BASE up, which the writer names from a registry of names. */
#ifndef MPROF_MUTEX_H
#define MPROF_MUTEX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprof_profile.h"

/* Pseudo return addresses for named frames: in the kernel half, never user code. */
#define MPROF_PSEUDO_PC_BASE ((uintptr_t)0xffffffffff000000ull)
#define MPROF_PSEUDO_MAX 256    /* distinct names; further names are charged to the sentinel */
#define MPROF_MUTEX_NAME_MAX 64 /* bytes kept of a name, with the NUL */
#define MPROF_LOST_CONTENDED_LOCK "mprof_lost_contended_lock"

/* Per-thread state, initial-exec TLS (no allocation on first access). */
typedef struct mprof_mtx_thread_s {
  uint32_t recording;    /* nonzero while the thread records contention */
  uint32_t alloc_held;   /* the glue said the thread holds allocator locks (last report) */
  uint64_t rng;          /* sampling draws; 0 until seeded */
  uintptr_t* pend_stk;   /* the pending slot's stack (cap entries, profiler memory) */
  uintptr_t* scratch;    /* where the next event's stack is captured; swapped with pend_stk */
  uint32_t cap;          /* entries in each of pend_stk and scratch; 0 until allocated */
  uint32_t unregistered; /* buffers not yet registered for release at thread exit */
  uint32_t pend_n;       /* frames of the pending event; 0: the slot is free */
  uint64_t pend_weight;
  uint64_t pend_delay; /* ns waited, unweighted */
} mprof_mtx_thread_t;

extern __thread mprof_mtx_thread_t mprof__mtx_thread __attribute__((tls_model("initial-exec")));

/* Nonzero when the program's mutexes are profiled (prof_mutex_app, fraction > 0, profiling on). */
extern _Atomic int mprof__mutex_app_on;

/* Defined by the interposer (mprof_mutex_app.c) where it is linked in: the program's mutexes
 * start (on) or stop being profiled. A no-op otherwise. */
void mprof__mutex_app_switch(bool on);

/* Options in force: called at start-up, and by the control names. */
void mprof__mutex_start(unsigned fraction, bool app);
unsigned mprof__mutex_fraction(void);
void mprof__mutex_set_fraction(unsigned fraction);
bool mprof__mutex_app(void);
void mprof__mutex_set_app(bool app);

/* The sampling decision for one contended acquisition: 0 (do not time it) or its weight N. */
uint64_t mprof__mutex_sample(void);

/* CLOCK_MONOTONIC in ns. */
uint64_t mprof__mutex_now(void);

/* Allocates the thread's two stack buffers if it has none yet, when it holds no lock and records
 * nothing (profiler memory takes mprof_meta_lock). Returns whether it has them. Called before a
 * sampled wait, so that the capture after it needs no memory. taking: profiler locks the thread
 * counts but does not hold yet (1 from a wait on a profiler lock, whose count is raised before
 * the wait; 0 otherwise). */
bool mprof__mutex_prepare(mprof_mtx_thread_t* t, unsigned taking);

/* Captures the calling thread's stack into t->scratch, with a leaf frame naming the lock when
 * name is not NULL. Returns the frames captured, 0 if none could be (no buffers, or the thread
 * is recording: the event then goes to the sentinel). Called once the lock is acquired: a
 * capture before the wait would make the sampled thread late in the queue and its wait longer
 * than the waits it stands for (measured: +40 % and +60 % at fraction 10). Never allocates. */
uint32_t mprof__mutex_capture(mprof_mtx_thread_t* t, const char* name);

/* One sampled contended acquisition whose stack (n frames, 0 = none) is in t->scratch: recorded
 * now if the thread holds no profiler or allocator lock, else kept in the pending slot. */
void mprof__mutex_event(mprof_mtx_thread_t* t, uint32_t n, uint64_t weight, uint64_t delay_ns);

/* Records the pending event, if any, when the thread holds no lock and is not recording. */
void mprof__mutex_flush(void);

/* Pseudo address of a named frame (registered on first use, name copied), 0 if the registry is
 * full. The name of a pseudo address, or NULL for any other address. */
uintptr_t mprof__mutex_name_pc(const char* name);
const char* mprof__mutex_pc_name(uintptr_t pc);

/* Snapshot of the records (profiler memory; free with mprof__mutex_snapshot_free). */
int mprof__mutex_snapshot(mprof_mutex_profile_t* out, size_t* cap_bytes);
void mprof__mutex_snapshot_free(mprof_mutex_profile_t* p, size_t cap_bytes);

typedef struct mprof_mutex_stats_s {
  uint64_t contentions;      /* sampled contended acquisitions recorded (weighted) */
  uint64_t contentions_lost; /* of those, charged to the sentinel (weighted) */
  uint64_t buckets;          /* distinct contention stacks */
} mprof_mutex_stats_t;
void mprof__mutex_stats(mprof_mutex_stats_t* s);

/* Thread exit: records the pending event and releases the buffers. */
void mprof__mutex_thread_exit(void);

void mprof__mutex_fork_prepare(void);
void mprof__mutex_fork_parent(void);
void mprof__mutex_fork_child(void);

/* ---- The allocator glue's side (declared in mprof_hooks.h's terms, see docs/DESIGN.md) ---- */

/* True when contention is being sampled at all: a glue may skip timing its locks otherwise. */
bool mprof__contention_on(void);

/* A glue's lock `name` (e.g. "jemalloc_mutex:arena"; becomes the leaf frame; copied, at most
 * MPROF_MUTEX_NAME_MAX - 1 bytes) was contended and the thread waited wait_ns for it; call after
 * acquiring it. holds_alloc_locks: the thread holds allocator locks (counting this one), so the
 * event is kept in its pending slot, and nothing pending is recorded, until
 * mprof__contention_flush or a report with holds_alloc_locks false. Sampling (1 in N) is decided
 * here. Never allocates from the heap; takes profiler locks only when holds_alloc_locks is
 * false. */
void mprof__contention_report(const char* name, uint64_t wait_ns, bool holds_alloc_locks);

/* The thread holds no allocator lock any more: records its pending event, if any. Cheap. */
void mprof__contention_flush(void);

#endif
