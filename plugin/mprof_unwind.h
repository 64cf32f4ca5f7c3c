/* Stack walking for samples: the profiler's own unwinder over the DWARF call-frame information
 * (.eh_frame) of the loaded objects, x86-64 with glibc's _dl_find_object (MPROF_OWN_UNWIND; see
 * docs/DESIGN.md, "Stacks").
 *
 * Each frame is stepped with a rule found for its address: where the canonical frame address
 * (CFA) is (rsp or rbp plus an offset, or loaded from rbp plus an offset for functions that
 * realign their stack), where the return address is saved, and where the caller's rbp is. Rules
 * come from a process-wide cache of MPROF_UNWIND_CACHE entries shared by every thread (filled
 * lock-free, 32 KiB of profiler memory mapped on the first walk); a miss finds the object with
 * glibc's _dl_find_object (lock-free), the FDE through the object's .eh_frame_hdr search table,
 * and runs the CIE's and FDE's call-frame instructions up to the address. Code that no FDE covers
 * (JIT code, hand-written assembly) is stepped by the frame-pointer chain (CFA = rbp + 16).
 *
 * Locks: none. Not the loader's (no dl_iterate_phdr), not the allocator's, none of the
 * profiler's. The cache is invalidated by a generation counter that the core's dlclose bumps
 * after glibc's dlclose has returned; a walk reads it with one atomic load.
 *
 * Bounds: every word read is 8-aligned, at or above the walk's starting stack pointer and below
 * the top of the calling thread's stack (mprof__thread_stack_bounds, cached per thread). Off the
 * thread's stack (alternate signal stacks, coroutines), each new page is first checked with
 * process_vm_readv. So the walk never faults. A frame that would read outside the bounds, or whose
 * CFA does not move up the stack, ends the stack with the pseudo frame MPROF_UNWIND_BAD_FRAME.
 *
 * The walk also stops, unmarked, at the outermost frame (return address marked undefined, as
 * glibc marks _start and a new thread's start, or below 4096), at a frame whose rule it does not
 * model (a signal frame, a CFA given by another register or a general expression), and at code
 * without call-frame information whose rbp is 0. */
#ifndef MPROF_UNWIND_H
#define MPROF_UNWIND_H

#include <stdint.h>

#define MPROF_UNWIND_CACHE 1024 /* cached rules (a power of two: 512 sets of 2) */

/* The name of the frame that ends a stack the walk cut short at a frame it could not read. */
#define MPROF_UNWIND_BAD_FRAME "mprof_stack_walk_stopped_bad_frame"

/* Walks the calling thread's stack from the caller of this function upwards. Return addresses
 * that lie in [drop_lo, drop_hi) before the first one outside it are dropped (the profiler's own
 * frames), then `skip` more; the next ones, at most `max`, are stored leaf first in pcs. Returns
 * how many were stored, the bad-frame mark included. Never allocates from the heap, takes no
 * lock, never faults; safe to call from inside malloc. A thread's first walk finds its stack
 * bounds (mprof__thread_stack_bounds: pthread_getattr_np on threads other than the initial one). */
unsigned mprof__unwind(uintptr_t* pcs, unsigned max, uintptr_t drop_lo, uintptr_t drop_hi,
                       unsigned skip);

/* Walks a stack other than the caller's (another thread's, or the context a signal interrupted)
 * from the registers pc, sp and, if fp_known, rbp = fp. Every stack word is fetched through
 * read(arg, addr, &word), which returns 0 or nonzero when the word cannot be read (the walk then
 * stops): a reader that never faults (process_vm_readv) makes the walk fault-free even if the
 * stack goes away meanwhile. Stores at most max entries leaf first: pc + 1 (so that, as for
 * return addresses, entry - 1 lies in the instruction), then the return addresses. With rbp
 * unknown (fp_known 0), a frame whose CFA is given by rbp before any frame said where rbp was
 * saved has rbp looked for above sp: the slot of a "push rbp; mov rsp, rbp" frame whose return
 * address follows a direct call (or a call through memory) into that frame's function; the walk
 * stops when none is found. Takes no lock (but reads dl_iterate_phdr's counter, as
 * mprof__unwind does); safe in a signal handler once a walk has run (the first one maps the rule
 * cache). */
unsigned mprof__unwind_remote(uintptr_t pc, uintptr_t sp, uintptr_t fp, int fp_known,
                              int (*read)(void* arg, uintptr_t addr, uintptr_t* out), void* arg,
                              uintptr_t* pcs, unsigned max);

/* Rules computed from call-frame information so far (cache misses), for tests. */
uint64_t mprof__unwind_misses(void);

#endif
