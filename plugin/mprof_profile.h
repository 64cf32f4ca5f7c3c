/* A heap profile snapshot as the writers consume it.
 *
 * The core builds one of these from the published `active` records (see mprof_cycle.h) and hands
 * it to a writer (mprof_pprof.h). Values are already unbiased estimates of the program's real
 * allocation (each sample is weighted by the inverse of its probability of being sampled), so
 * writers do no statistics. The arrays live in profiler memory (mprof_meta.h). */
#ifndef MPROF_PROFILE_H
#define MPROF_PROFILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct mprof_heap_rec_s {
  const uintptr_t* pcs;  /* return addresses, leaf first: pcs[0] is the return address into the
                           function that called malloc; the writer adjusts each into its call */
  uint32_t npcs;         /* number of entries in pcs, >= 1 */
  int64_t alloc_objects; /* unbiased number of objects allocated at this stack, ever */
  int64_t alloc_bytes;   /* unbiased bytes allocated at this stack, ever */
  int64_t inuse_objects; /* unbiased number of those objects not yet freed */
  int64_t inuse_bytes;   /* unbiased bytes of those objects not yet freed */
  int64_t avg_bytes;     /* average object size, rounded; 0: the writer divides alloc_bytes by
                            alloc_objects, rounded */
  uint32_t labels;       /* MPROF_REC_* bits: which of the labels below the record carries */
  int64_t age_epochs;    /* MPROF_REC_AGE: lower edge of the age class (0, 1, 2, 4, ...) */
  int64_t age_min_ms;    /* MPROF_REC_AGE_TIME: milliseconds the objects have lived, at least */
  const char* thread;    /* MPROF_REC_THREAD: name of the allocating thread (outlives the dump) */
} mprof_heap_rec_t;

/* Labels of a record. A zero-initialised record carries none. */
enum {
  MPROF_REC_AGE = 1u << 0,
  MPROF_REC_AGE_TIME = 1u << 1,
  MPROF_REC_THREAD = 1u << 2,
};

typedef struct mprof_heap_profile_s {
  const mprof_heap_rec_t* recs;
  size_t nrecs;
  uint64_t period;    /* mean sampling interval in bytes (1 when every allocation is sampled) */
  int64_t time_nanos; /* CLOCK_REALTIME when the snapshot was taken */
  const char* const* comments; /* ncomments strings written as the profile's comments after
                                  "mprof heap profile" (the reconciliation figures) */
  size_t ncomments;
} mprof_heap_profile_t;

/* A contention profile snapshot: one record per stack. Values are weighted (each sampled event
 * counts N times, N the fraction in force when it was sampled). */
typedef struct mprof_mutex_rec_s {
  const uintptr_t* pcs; /* leaf first; pseudo addresses (mprof_mutex.h) name locks and the
                           sentinel and are written as they are, the others adjusted as above */
  uint32_t npcs;
  int64_t contentions; /* contended acquisitions */
  int64_t delay_ns;    /* nanoseconds waited */
} mprof_mutex_rec_t;

typedef struct mprof_mutex_profile_s {
  const mprof_mutex_rec_t* recs;
  size_t nrecs;
  uint64_t period;    /* the fraction in force (1 in `period` contended acquisitions sampled) */
  int64_t time_nanos; /* CLOCK_REALTIME when the snapshot was taken */
} mprof_mutex_profile_t;

/* A thread snapshot (mprof_threads.h): one record per thread. */
typedef struct mprof_thread_rec_s {
  const uintptr_t* pcs; /* leaf first, each entry a return address or the leaf pc + 1 */
  uint32_t npcs;        /* 0 when the thread's stack could not be taken */
  int64_t tid;          /* kernel thread id */
  const char* name;     /* the thread's name (comm) */
  const char* state;    /* "running", the system call it is blocked in, or "no answer" */
  int64_t inuse_bytes;  /* unbiased bytes the thread allocated that are still in use */
  int64_t alloc_bytes;  /* unbiased bytes the thread allocated, ever */
} mprof_thread_rec_t;

typedef struct mprof_threads_profile_s {
  const mprof_thread_rec_t* recs;
  size_t nrecs;
  int64_t time_nanos;          /* CLOCK_REALTIME when the snapshot was taken */
  const char* const* comments; /* written after "mprof threads profile" */
  size_t ncomments;
} mprof_threads_profile_t;

#endif
