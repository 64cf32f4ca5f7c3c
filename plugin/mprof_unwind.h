/* Stack walking for samples: the profiler's own unwinder over the DWARF call-frame information
 * (.eh_frame) of the loaded objects, x86-64 only.
 *
 * Each frame is stepped with a rule found for its address: where the canonical frame address
 * (CFA) is (rsp or rbp plus an offset, or loaded from rbp plus an offset for functions that
 * realign their stack), where the return address is saved, and where the caller's rbp is. Rules
 * come from a process-wide cache of MPROF_UNWIND_CACHE entries shared by every thread (filled
 * lock-free, 32 KiB of profiler memory mapped on the first walk); a miss finds the object with
 * glibc's _dl_find_object, the FDE through the object's .eh_frame_hdr search table, and runs the
 * CIE's and FDE's call-frame instructions up to the address. So a thread's first sample costs the
 * same as any other once the process has seen its addresses, a new address costs one table
 * search, and nothing is allocated, mapped or opened per thread.
 *
 * The cache is emptied whenever an object has been unloaded (dl_iterate_phdr's dlpi_subs counter,
 * read once per walk), so a rule never outlives the code it describes.
 *
 * The walk stops, keeping the frames found so far, at the outermost frame (return address marked
 * undefined, as glibc marks _start and a new thread's start), at code without call-frame
 * information (JIT code), at a frame whose rule it does not model (a signal frame, a PLT stub, a
 * CFA given by another register or a general expression), and at a frame that would not move
 * up the stack. */
#ifndef MPROF_UNWIND_H
#define MPROF_UNWIND_H

#include <stdint.h>

#define MPROF_UNWIND_CACHE 1024 /* cached rules (a power of two: 512 sets of 2) */

/* Walks the calling thread's stack from the caller of this function upwards. Return addresses
 * that lie in [drop_lo, drop_hi) before the first one outside it are dropped (the profiler's own
 * frames), then `skip` more; the next ones, at most `max`, are stored leaf first in pcs. Returns
 * how many were stored. Never allocates from the heap, takes no lock, opens nothing; safe to
 * call from inside malloc. */
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
