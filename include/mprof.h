/* mprof: mimalloc with a sampling heap profiler built in.
 *
 * Link with -lmprof (or LD_PRELOAD=libmprof.so) and the program's malloc, free and friends are
 * served by mimalloc while a sample of allocations is profiled. Configure it with the MPROF_CONF
 * environment variable (docs/OPTIONS.md) and control it at run time with mprof_ctl. */
#ifndef MPROF_H
#define MPROF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPROF_VERSION_MAJOR 0
#define MPROF_VERSION_MINOR 1
#define MPROF_VERSION_PATCH 0
#define MPROF_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define MPROF_EXPORT __attribute__((visibility("default")))
#else
#define MPROF_EXPORT
#endif

/* Reads and/or writes the control value `name`, with the contract of jemalloc's mallctl:
 *
 *   - to read, pass oldp and *oldlenp = the size of the buffer at oldp; on return *oldlenp is
 *     the size of the value. If the size is wrong the call fails with EINVAL, after copying as
 *     much of the value as fits.
 *   - to write, pass newp and newlen = the size of the value at newp.
 *   - either side may be NULL/0 to skip it.
 *
 * Returns 0 on success or a positive errno value:
 *   ENOENT  unknown name, or a profiling name while profiling is off (prof:false)
 *   EINVAL  wrong *oldlenp or newlen, or an invalid value (nothing is changed)
 *   EPERM   writing a read-only name or reading a write-only one (nothing is changed)
 *   EAGAIN  profiler memory exhausted
 *   EFAULT  the operation failed for another reason
 *   and, for prof.dump and prof.mutex.dump, the errno of the failing system call (ENOENT for a
 *   missing directory, EACCES, ENOSPC, ENAMETOOLONG, ...), EEXIST (a link, pipe or device at an
 *   automatic name), ENXIO (a pipe nobody reads), EPIPE (its reader left; no SIGPIPE is raised).
 *
 * Not async-signal-safe: prof.dump, prof.mutex.dump and epoch writes return EDEADLK from a signal
 * handler that interrupted the profiler on the same thread (they would wait for themselves).
 *
 * The names are listed in docs/OPTIONS.md: version, allocator, epoch, prof.dump, prof.peak.dump,
 * prof.active, prof.lg_sample, prof.interval, prof.mutex.dump, prof.mutex_fraction,
 * prof.mutex_app, opt.*, stats.*. ECANCELED: prof.dump or prof.mutex.dump after the final dump.
 * ENOENT: prof.peak.dump without prof_peak:true. */
MPROF_EXPORT int mprof_ctl(const char* name, void* oldp, size_t* oldlenp, void* newp,
                           size_t newlen);

#ifdef __cplusplus
}
#endif

#endif
