/* A module for test_unwind: loaded, called through and unloaded while stacks are walked. */
typedef unsigned (*walk_fn)(void);

unsigned unwind_lib_call(walk_fn fn);

__attribute__((noinline, visibility("default"))) unsigned unwind_lib_call(walk_fn fn) {
  unsigned n = fn();
  __asm__ volatile("" ::: "memory"); /* keeps the call from becoming a tail call */
  return n;
}
