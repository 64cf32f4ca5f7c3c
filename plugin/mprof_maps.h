/* The executable code mapped into the process, for profile writers.
 *
 * One entry per executable PT_LOAD segment of every loaded object (main program, shared
 * libraries, the vDSO): the segment's exact range and file offset (load bias + p_vaddr, p_memsz,
 * p_offset; /proc/self/maps shows the same mapping widened to whole pages), the object's path and
 * its GNU build id. Exact bounds are what pprof needs (see mprof_maps.c).
 *
 * Reading lists the file-backed mappings of /proc/self/maps (open/read, no stdio, no malloc, so
 * it may run inside the program's allocator, and no lock of the dynamic loader, so it may run in
 * a signal handler that interrupted dlopen, or while another thread holds the loader's lock at
 * fork). The mapping of an object's file offset 0 holds its ELF header; its program headers and
 * notes are copied out of memory with process_vm_readv on the own process (or, where that is
 * refused, through a pipe), which fail with EFAULT where a plain read would fault: a library file
 * overwritten on disk since it was loaded leaves its object out of the table, or without a build
 * id, instead of raising SIGBUS. A mapped ELF file whose executable segments are not mapped
 * executable where its header says (a file the program maps as data) is no loaded object and is
 * left out. Paths are the kernel's (symbolic links resolved, " (deleted)" dropped), as the
 * main program's always were (/proc/self/exe).
 *
 * Where /proc/self/maps cannot be opened, mprof__maps_read falls back to dl_iterate_phdr, which
 * takes the dynamic loader's lock, and dlopen calls malloc while holding it: that fallback must
 * not run while holding a lock that malloc may wait for, nor from a signal handler. A
 * snapshot does not follow later dlopen/dlclose calls. */
#ifndef MPROF_MAPS_H
#define MPROF_MAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mprof_mapping_s {
  uintptr_t start;      /* first address of the segment: load bias + p_vaddr */
  uintptr_t limit;      /* one past its last address: start + p_memsz */
  uint64_t offset;      /* file offset mapped at start: p_offset */
  uintptr_t bias;       /* load bias (dlpi_addr): runtime address - bias = address in the file */
  const char* path;     /* NUL-terminated; "[vdso]" for the vDSO */
  const char* build_id; /* lowercase hex of the NT_GNU_BUILD_ID note, "" when there is none */
  bool is_main;         /* a segment of the main executable */
  bool owns_strings;    /* private: this entry frees the block holding path and build_id */
} mprof_mapping_t;

/* Entries are sorted by start and do not overlap. */
typedef struct mprof_maps_s {
  mprof_mapping_t* entries; /* from mprof__meta_alloc */
  size_t n;
  size_t cap; /* private: entries allocated */
} mprof_maps_t;

#define MPROF_MAPS_INIT                                                                            \
  { NULL, 0, 0 }

/* Fills *out (overwritten, not freed) with the current mappings. Returns 0 or ENOMEM; on
 * failure *out is empty and needs no mprof__maps_free(). */
int mprof__maps_read(mprof_maps_t* out);

/* The two ways mprof__maps_read uses, same contract. mprof__maps_read_proc returns ENOSYS,
 * having done nothing, when /proc/self/maps cannot be opened; mprof__maps_read_loader takes the
 * dynamic loader's lock (dl_iterate_phdr). */
int mprof__maps_read_proc(mprof_maps_t* out);
int mprof__maps_read_loader(mprof_maps_t* out);
void mprof__maps_free(mprof_maps_t* maps);

/* Index of the entry whose [start, limit) contains addr, or -1. */
ptrdiff_t mprof__maps_find(const mprof_maps_t* maps, uintptr_t addr);

#endif
