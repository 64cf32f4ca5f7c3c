/* The pprof writer: a heap profile as a gzipped profile.proto message.
 *
 * The output reads with `go tool pprof` and google/pprof. Sample types are Go's four heap types
 * (alloc_objects/count, alloc_space/bytes, inuse_objects/count, inuse_space/bytes; inuse_space is
 * the default), one sample per record with a numeric label `bytes` (average object size) and the
 * record's labels (age_epochs, age_min_ms, thread: mprof_profile.h), one
 * location per distinct call address and one mapping per executable segment, the main program's
 * first, function names from the ELF symbol tables (no file or line: pprof adds those from DWARF),
 * and the comments "mprof heap profile" followed by the profile's own (mprof_profile.h).
 *
 * The encoder streams: memory stays bounded by zlib's state, a 64 KiB output buffer and a table
 * of the distinct locations, all from profiler memory (mprof_meta.h). No malloc, no stdio; errno
 * is preserved. The caller serializes calls that share an fd. */
#ifndef MPROF_PPROF_H
#define MPROF_PPROF_H

#include "mprof_maps.h"
#include "mprof_profile.h"

/* The profile's drop_frames: allocation wrappers, so that the leaf pprof shows is the code that
 * asked for memory, not malloc, operator new, the standard allocators or a library's own malloc
 * wrapper. pprof matches it against whole function names (parameters removed) and cuts each
 * stack at its root-most match, so the list holds only functions that never call back into
 * program code. The mprof command uses the same list for its sites (tools/mprof_report.h). */
#define MPROF_PPROF_DROP_FRAMES                                                                    \
  "malloc|calloc|realloc|reallocarray|free|aligned_alloc|posix_memalign|memalign|valloc|"          \
  "pvalloc|__libc_malloc|__libc_calloc|__libc_realloc|__libc_memalign|"                            \
  "operator new|operator new\\[\\]|__strdup|strdup|__strndup|strndup|"                             \
  "std::__new_allocator(<.*>)?::allocate|__gnu_cxx::new_allocator(<.*>)?::allocate|"               \
  "std::allocator(<.*>)?::allocate|std::allocator_traits(<.*>)?::allocate|"                        \
  "sqlite3Malloc.*|sqlite3DbMalloc.*|sqlite3Realloc|sqlite3DbRealloc.*|sqlite3_malloc(64)?|"       \
  "sqlite3_realloc(64)?|sqlite3DbStrDup|sqlite3DbStrNDup|"                                         \
  "g_malloc.*|g_realloc.*|g_try_malloc.*|g_try_realloc.*|g_slice_alloc.*|g_strdup|g_strndup|"      \
  "g_memdup2?|xmalloc|xcalloc|xrealloc|xstrdup|xstrndup|xzalloc|xmemdupz|"                         \
  "PyMem_.*|_PyMem_.*|PyObject_Malloc|PyObject_Calloc|PyObject_Realloc|_PyObject_Malloc|"          \
  "_PyObject_Calloc|_PyObject_Realloc|pymalloc_alloc|pymalloc_realloc|_PyObject_GC_.*|"            \
  "PyObject_GC_.*|_PyObject_New|_PyObject_NewVar|gc_alloc"

/* Writes prof to fd with the process's current mappings (mprof__maps_read). Returns 0 or a
 * positive errno: EINVAL for a malformed profile, ENOMEM when profiler memory runs out, or the
 * errno of the failed write(2) (e.g. ENOSPC, EBADF). On failure part of the output may have been
 * written. */
int mprof__pprof_write_heap(int fd, const mprof_heap_profile_t* prof);

/* Same with the mappings given (for tests, or to reuse one snapshot). */
int mprof__pprof_write_heap_maps(int fd, const mprof_heap_profile_t* prof,
                                 const mprof_maps_t* maps);

/* Writes a contention profile (Go's mutex profile layout: sample types contentions/count and
 * delay/nanoseconds, period_type contentions/count, period = the fraction). */
int mprof__pprof_write_mutex(int fd, const mprof_mutex_profile_t* prof);
int mprof__pprof_write_mutex_maps(int fd, const mprof_mutex_profile_t* prof,
                                  const mprof_maps_t* maps);

/* Writes a thread snapshot (mprof_threads.h): sample types threads/count (default),
 * inuse_space/bytes and alloc_space/bytes, one sample per thread with string labels thread and
 * state and the numeric label tid, comment "mprof threads profile" then the profile's own. */
int mprof__pprof_write_threads(int fd, const mprof_threads_profile_t* prof);
int mprof__pprof_write_threads_maps(int fd, const mprof_threads_profile_t* prof,
                                    const mprof_maps_t* maps);

#endif
