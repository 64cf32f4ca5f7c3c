/* A library whose allocations are sampled, for rel_harden's fifo_mapping case: the test loads a
 * copy, then replaces the copy's file by a FIFO before it dumps. */
#include <stdlib.h>

void* rel_maplib_alloc(size_t n);

__attribute__((noinline, visibility("default"))) void* rel_maplib_alloc(size_t n) {
  void* p = malloc(n);
  __asm__ volatile("" ::: "memory"); /* keeps the call from becoming a tail call */
  return p;
}
