/* Built without unwind tables or debug info (see CMakeLists.txt): a sampled allocation from here makes
 * libunwind fall back to the frame-pointer chain, which it validates through its pipe, leaving
 * EAGAIN in errno unless the profiler restores it. */
#include <stdlib.h>

void* rel_alloc_without_unwind_info(size_t n);

__attribute__((noinline)) void* rel_alloc_without_unwind_info(size_t n) {
  void* p = malloc(n);
  __asm__ volatile("" : : "r"(p) : "memory"); /* no tail call */
  return p;
}
