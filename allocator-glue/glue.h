/* What every allocator glue adds in the same way (allocator-glue/glue.c), whatever the allocator:
 *
 *   exit()   the final dump must finish before any thread ends the process: mprof__exit_wait,
 *            then libc's exit (mprof_hooks.h says why);
 *   pipe2()  where the core still unwinds with libunwind (not x86-64), libunwind's validation
 *            pipe, opened inside the profiler, is moved out of the program's low descriptors;
 *   the address range of the library's own code, whose frames the core drops from stacks.
 *
 * A glue calls mprof__glue_start from its constructor, before mprof__init. */
#ifndef MPROF_GLUE_H
#define MPROF_GLUE_H

#include <stdint.h>

/* Finds libc's exit (and pipe2), and the executable segment of the object that contains
 * `inside` (any address in the glue's library): [*lo, *hi), or 0 and 0 if it cannot. */
void mprof__glue_start(const void* inside, uintptr_t* lo, uintptr_t* hi);

#endif
