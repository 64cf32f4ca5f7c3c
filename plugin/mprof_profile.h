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
} mprof_heap_rec_t;

typedef struct mprof_heap_profile_s {
  const mprof_heap_rec_t* recs;
  size_t nrecs;
  uint64_t period;    /* mean sampling interval in bytes (1 when every allocation is sampled) */
  int64_t time_nanos; /* CLOCK_REALTIME when the snapshot was taken */
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

#endif
