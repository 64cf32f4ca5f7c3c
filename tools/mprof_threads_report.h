/* `mprof threads`: a thread snapshot printed as text (tools/mprof_threads.c, docs/mprof.1). */
#ifndef MPROF_THREADS_REPORT_H
#define MPROF_THREADS_REPORT_H

#include <stdio.h>

/* Prints the snapshot at path to f: "threads profile: total N", then one block per group of
 * threads with the same state and stack, most threads first: "COUNT STATE @ ADDR...", the
 * threads ("# threads: NAME[TID] ..."), one "#\tADDR\tFUNCTION" line per frame (leaf first) and
 * the heap they hold. Returns 0, or a positive errno after a one-line message on stderr. */
int mprof__threads_print(FILE* f, const char* path);

#endif
