/* The thread snapshot (prof.threads.dump, prof_dump_threads): the stack of every thread of the
 * process, its state (running, or the system call it is blocked in) and the heap it holds, as
 * Go's goroutine profile gives for goroutines, with no ptrace and no pause beyond each thread's
 * own stack walk.
 *
 * Capture, one thread after the other (the dumping thread itself is walked in place):
 *   - /proc/self/task/<tid>/syscall says whether the thread is blocked in a system call and gives
 *     its user sp and pc. A blocked thread is walked from there without a signal, every stack word
 *     read with process_vm_readv on the own pid (which returns an error, never faults, if the
 *     stack went away), and the walk is kept only if the thread was still blocked in the same call
 *     at the same place afterwards and never ran in between (/proc/self/task/<tid>/schedstat
 *     unchanged, where the kernel has it); otherwise it is looked at again (LOOKS times at
 *     most), and taken by the signal if it is found running.
 *   - A running thread is sent the real-time signal prof_threads_signal (rt_tgsigqueueinfo, so
 *     its handler knows the request); the handler walks the interrupted context's stack into the
 *     thread's slot and returns. The handler is installed (SA_RESTART, SA_SIGINFO) by the first
 *     snapshot, and only over the default action: a signal the program handles or ignores makes
 *     the snapshot fail with EBUSY. A thread that blocks the signal is not sent it.
 *   - The dumping thread waits for the answers for at most MPROF_THREADS_WAIT_MS; a thread that
 *     did not answer is written with the state "no answer" and no stack, a thread that exited
 *     meanwhile is left out.
 * Names (/proc/self/task/<tid>/comm) and the heap figures are gathered afterwards, while the
 * threads run. Without process_vm_readv (seccomp) every thread is taken by the signal; without
 * /proc/self/task only the threads that have sampled an allocation are known.
 *
 * Heap per thread: every sampled block records the serial number of the thread that allocated it
 * (mprof_sample_t.thread); a table indexed by serial keeps each thread's estimated bytes
 * allocated and still in use (two atomic adds per sampled allocation and per sampled free). A
 * serial stays with its kernel thread id until the thread ends, so a reused id never inherits
 * another thread's heap.
 *
 * x86-64 only (the stack walker and the signal context are); elsewhere a snapshot is ENOTSUP. */
#ifndef MPROF_THREADS_H
#define MPROF_THREADS_H

#include <stdbool.h>
#include <stdint.h>

#include "mprof_hooks.h"
#include "mprof_profile.h"

#define MPROF_THREADS_WAIT_MS 1000 /* longest wait for the signalled threads' answers */

/* A sampled allocation of est estimated bytes on the calling thread: sets data->thread. */
void mprof__threads_note_alloc(mprof_sample_t* data, int64_t est);

/* The block of data ends (freed, or cancelled: then its allocation is taken back too). */
void mprof__threads_note_end(const mprof_sample_t* data, int64_t est, bool cancel);

/* The calling thread ends (its per-thread state is torn down). */
void mprof__threads_exit(void);

/* In the child after fork(): only the calling thread lives on, under a new id. */
void mprof__threads_fork_child(void);

/* Takes a snapshot into *out (records and strings in profiler memory, released by
 * mprof__threads_snapshot_free). Callers serialise snapshots (mprof_dump_lock). Returns 0,
 * EBUSY (the program handles or ignores prof_threads_signal), EINVAL (prof_threads_signal names
 * no usable signal), ENOTSUP (not x86-64), ENOMEM. `depth` is the most frames kept per thread. */
int mprof__threads_snapshot(mprof_threads_profile_t* out, unsigned depth);
void mprof__threads_snapshot_free(mprof_threads_profile_t* out);

/* Costs of the last snapshot: the longest time a thread spent in the handler (its pause) and the
 * snapshot's own duration, in nanoseconds; 0 before the first. */
void mprof__threads_last_costs(uint64_t* longest_pause_ns, uint64_t* total_ns);

#endif
