/* Thread labels (prof_thread_labels): the name of the thread that allocated a sample.
 *
 * A label is the thread's name as pthread_setname_np/prctl(PR_SET_NAME) set it, read with
 * prctl(PR_GET_NAME) (one system call) at the thread's first sample and every 32nd after. A thread that was never named carries
 * the name of the thread that created it; so a thread other than the main one whose name equals
 * the process's name at start-up is labelled with its thread id (decimal) instead. Labels are
 * interned in a fixed table of MPROF_TLABEL_MAX names that only grows (lock-free, profiler
 * memory), and heap buckets are keyed by (label, stack): a tag is the label's index + 1. Once the
 * table is full, new names share the label "other". Names are never freed, so the strings stay
 * valid for the writers. */
#ifndef MPROF_TLABEL_H
#define MPROF_TLABEL_H

#include <stdint.h>

#define MPROF_TLABEL_MAX 4096

/* Reads the process's name (start-up; may run inside the first malloc: no heap, no stdio). */
void mprof__tlabel_init(void);

/* The tag (>= 1) of the calling thread's label. The name is read at the thread's first sample
 * and again every 32nd sample (a rename shows within 32 samples of the thread); the thread and
 * process ids are cached (and forgotten in a child after fork()). */
uint16_t mprof__tlabel_current(void);

/* In the child after fork(): forget the cached ids. */
void mprof__tlabel_fork_child(void);

/* The label of a tag, or NULL for tag 0. */
const char* mprof__tlabel_name(uint16_t tag);

#endif
