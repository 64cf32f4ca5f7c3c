/* The jeprof writer: a heap profile as jemalloc's `heap_v2` text, the format jemalloc's own
 * profiler dumps and its `jeprof` script reads (prof_format:jeprof or both).
 *
 *   heap_v2/<period>
 *     t*: <inuse objects>: <inuse bytes> [<alloc objects>: <alloc bytes>]
 *   @ 0x<pc> 0x<pc> ...                        one stack, leaf first
 *     t*: <inuse objects>: <inuse bytes> [<alloc objects>: <alloc bytes>]
 *   ...
 *   (blank line)
 *   MAPPED_LIBRARIES:
 *   <the process's /proc/self/maps, verbatim>
 *
 * The header's t*: line is the sum over the stacks. No per-thread lines are written (the core
 * does not count per thread); jeprof needs none.
 *
 * jeprof unbiases every (objects, bytes) pair itself, multiplying both by 1/(1-exp(-(b/o)/P))
 * for period P. The profile's values are already unbiased, so each pair is written as the
 * sampled figures that jeprof's correction turns back into them: objects o' = round(O * p) with
 * p = 1-exp(-(B/O)/P), and bytes b' = round(o' * B/O), or the b' for which jeprof's bytes are
 * exactly B when that keeps both figures closer. When every object of a stack has the same size,
 * o' is the exact number of samples and both figures come back exactly (up to integer rounding);
 * otherwise each comes back within the rounding of one sample (o' is rounded). A pair with no
 * bytes is written 0: 0 (jeprof cannot unbias a zero average size).
 *
 * The first address of each stack is written as the call address (return address - 1), the
 * others as return addresses, because jeprof subtracts 1 from every address but the first.
 *
 * Memory comes from profiler memory, output goes out with write(2); errno is preserved. */
#ifndef MPROF_JEPROF_H
#define MPROF_JEPROF_H

#include "mprof_profile.h"

#include <stdint.h>

/* Writes prof to fd. Returns 0 or a positive errno: EINVAL for a malformed profile, ENOMEM, or
 * the errno of a failed write(2). On failure part of the output may have been written. */
int mprof__jeprof_write_heap(int fd, const mprof_heap_profile_t* prof);

/* The (objects, bytes) pair written for unbiased figures (objs, bytes) at the given period, as
 * described above (exposed for tests). */
void mprof__jeprof_pair(int64_t objs, int64_t bytes, uint64_t period, int64_t* out_objs,
                        int64_t* out_bytes);

#endif
