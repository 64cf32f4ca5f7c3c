/* The stack walker (x86-64): the same return addresses as glibc's backtrace() through recursion,
 * libc callbacks, realigned and alloca frames, on the main thread and on new threads; the depth
 * cap, dropped leading frames and skip; a rule cache that serves repeated walks without new
 * lookups and is emptied when an object is unloaded, also while other threads walk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mprof_mutex.h"
#include "mprof_thread.h"
#include "mprof_unwind.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define MAXF 256

static uintptr_t mine[MAXF];
static unsigned nmine;
static void* ref[MAXF];
static int nref;

/* Walks here and with backtrace(). mine[0] returns into walk_here itself, mine[1] into its
 * caller; ref holds the same return addresses from backtrace() (under a sanitizer an interceptor
 * frame may come first, so the two are compared from mine[1] on). */
__attribute__((noinline)) static unsigned walk_here(void) {
  nmine = mprof__unwind(mine, MAXF, 0, 0, 0);
  nref = backtrace(ref, MAXF);
  __asm__ volatile("" ::: "memory");
  return nmine;
}

static void assert_same_as_backtrace(unsigned at_least) {
  assert_true(nmine >= at_least);
  int k = 0;
  while (k < nref && (uintptr_t)ref[k] != mine[1])
    k++;
  assert_true(k < nref);
  if ((unsigned)(nref - k) != nmine - 1) {
    for (int i = 0; i < nref || i < (int)nmine; i++)
      print_message("%d: ref %p mine %p\n", i, i < nref ? ref[i] : NULL,
                    i < (int)nmine ? (void*)mine[i] : NULL);
  }
  /* From the caller of walk_here to the outermost frame, frame for frame. */
  assert_int_equal((unsigned)(nref - k), nmine - 1);
  for (unsigned i = 1; i < nmine; i++)
    assert_int_equal(mine[i], (uintptr_t)ref[k + (int)i - 1]);
}

__attribute__((noinline)) static unsigned recurse(int d) {
  unsigned n = d > 0 ? recurse(d - 1) : walk_here();
  __asm__ volatile("" ::: "memory");
  return n;
}

__attribute__((noinline)) static unsigned realigned(int d) {
  char buf[64] __attribute__((aligned(64)));
  memset(buf, d, sizeof buf);
  __asm__ volatile("" : : "r"(buf) : "memory");
  return walk_here() + (unsigned)(buf[1] & 0);
}

__attribute__((noinline)) static unsigned with_alloca(int d) {
  char* p = __builtin_alloca(64 + (size_t)d);
  memset(p, d, 64);
  __asm__ volatile("" : : "r"(p) : "memory");
  return walk_here() + (unsigned)(p[1] & 0);
}

/* Realigned stack and alloca: gcc keeps the incoming frame in a register (DRAP) and gives the
 * CFA as DW_CFA_def_cfa_expression (DW_OP_breg6 -8; DW_OP_deref), rbp as saved at rbp + 0. */
__attribute__((noinline)) static unsigned realigned_with_alloca(int d) {
  char buf[64] __attribute__((aligned(64)));
  char* p = __builtin_alloca(64 + (size_t)d);
  memset(buf, d, sizeof buf);
  memset(p, d, 64);
  __asm__ volatile("" : : "r"(buf), "r"(p) : "memory");
  return walk_here() + (unsigned)(buf[1] & 0) + (unsigned)(p[1] & 0);
}

static int cmp_walking(const void* a, const void* b) {
  static int walked;
  if (!walked++) walk_here();
  return *(const int*)a - *(const int*)b;
}

static void test_the_walk_matches_backtrace_on_the_main_thread(void** state) {
  (void)state;
  recurse(0);
  assert_same_as_backtrace(3);
  recurse(40);
  assert_same_as_backtrace(43);
  realigned(1);
  assert_same_as_backtrace(3);
  with_alloca(3);
  assert_same_as_backtrace(3);
  realigned_with_alloca(5);
  assert_same_as_backtrace(3);
  int v[16] = {9, 3, 7, 1, 5, 2, 8, 4, 6, 0, 15, 11, 13, 10, 12, 14};
  qsort(v, 16, sizeof v[0], cmp_walking); /* through libc's frames */
  assert_same_as_backtrace(4);
}

static void* thread_walk(void* arg) {
  recurse((int)(uintptr_t)arg);
  return NULL;
}

static void
test_the_walk_matches_backtrace_on_a_new_thread_and_repeats_from_the_cache(void** state) {
  (void)state;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, thread_walk, (void*)(uintptr_t)7), 0);
  pthread_join(t, NULL);
  assert_same_as_backtrace(9);
  /* The same stack on a second new thread: the rules are in the cache. (At most two misses: in
   * the rare case that three of the walk's addresses hash to one set of two entries, they keep
   * evicting each other; without a cache every one of its 6 or more frames would miss.) */
  uint64_t misses = mprof__unwind_misses();
  assert_int_equal(pthread_create(&t, NULL, thread_walk, (void*)(uintptr_t)7), 0);
  pthread_join(t, NULL);
  assert_true(mprof__unwind_misses() <= misses + 2);
  assert_same_as_backtrace(9);
}

__attribute__((noinline)) static unsigned walk_capped(uintptr_t* out, unsigned max, uintptr_t lo,
                                                      uintptr_t hi, unsigned skip) {
  unsigned n = mprof__unwind(out, max, lo, hi, skip);
  __asm__ volatile("" ::: "memory");
  return n;
}

__attribute__((noinline)) static unsigned caller_of_capped(unsigned max, uintptr_t lo, uintptr_t hi,
                                                           unsigned skip) {
  unsigned n = walk_capped(mine, max, lo, hi, skip);
  __asm__ volatile("" ::: "memory");
  return n;
}

static void test_depth_dropped_frames_and_skip(void** state) {
  (void)state;
  unsigned all = caller_of_capped(MAXF, 0, 0, 0);
  assert_true(all >= 3);
  uintptr_t first = mine[0], second = mine[1];
  assert_true(first > (uintptr_t)&walk_capped && first < (uintptr_t)&walk_capped + 200);
  assert_true(second > (uintptr_t)&caller_of_capped && second < (uintptr_t)&caller_of_capped + 200);
  assert_int_equal(caller_of_capped(1, 0, 0, 0), 1);
  assert_int_equal(mine[0], first);
  /* The leading frame (returning into walk_capped) is dropped, then one more is skipped. */
  assert_int_equal(caller_of_capped(MAXF, first, first + 1, 0), all - 1);
  assert_int_equal(mine[0], second);
  assert_int_equal(caller_of_capped(MAXF, first, first + 1, 1), all - 2);
  assert_true(mine[0] != first && mine[0] != second); /* returns into this test function */
  /* Only leading frames are dropped: a range that holds no leading frame drops nothing. */
  assert_int_equal(caller_of_capped(MAXF, second, second + 1, 0), all);
}

static volatile sig_atomic_t in_handler;
static unsigned handler_frames;

static void on_signal(int sig) {
  (void)sig;
  in_handler = 1;
  handler_frames = walk_here();
}

static void test_a_walk_from_a_signal_handler_stops_at_the_signal_frame(void** state) {
  (void)state;
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGUSR1, &sa, &old);
  raise(SIGUSR1);
  sigaction(SIGUSR1, &old, NULL);
  assert_true(in_handler);
  /* walk_here's and the handler's frames, then the signal frame ends the walk. (TSan calls
   * handlers itself, outside any signal frame: there the walk may go on to the end.) */
  assert_true(handler_frames >= 2);
#if !defined(__SANITIZE_THREAD__)
  assert_true(handler_frames < (unsigned)nref);
#endif
}

#ifndef UNWIND_TESTLIB
#error "UNWIND_TESTLIB: path of the test module"
#endif

typedef unsigned (*lib_call_fn)(unsigned (*)(void));

static lib_call_fn load(void** handle) {
  *handle = dlopen(UNWIND_TESTLIB, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(*handle);
  void* sym = dlsym(*handle, "unwind_lib_call");
  assert_non_null(sym);
  lib_call_fn fn;
  memcpy(&fn, &sym, sizeof fn);
  return fn;
}

/* One call site, so that every call walks the same return addresses. */
__attribute__((noinline)) static unsigned through_lib(lib_call_fn call) {
  unsigned n = call(walk_here);
  __asm__ volatile("" ::: "memory");
  return n;
}

/* Loops that walk from one call site: not optimised, so that the compiler does not peel the
 * first iteration into a second call site with other return addresses. */
#define ONE_CALL_SITE __attribute__((noinline, optimize("O0")))

ONE_CALL_SITE static void test_unloading_an_object_empties_the_cache(void** state) {
  (void)state;
  void* h;
  lib_call_fn call = load(&h);
  uint64_t m1 = 0;
  for (int i = 0; i < 2; i++) { /* one call site */
    through_lib(call);
    assert_same_as_backtrace(5);
    if (i == 0) m1 = mprof__unwind_misses();
  }
  assert_true(mprof__unwind_misses() <= m1 + 2); /* the second walk found the rules cached */
  dlclose(h);
  call = load(&h);
  through_lib(call);
  assert_true(mprof__unwind_misses() >= m1 + 5); /* every frame looked up again after the unload */
  assert_same_as_backtrace(5);
  dlclose(h);
}

/* Walkers on several threads while another thread loads and unloads the module over and over,
 * so that rules are computed and cached concurrently, again and again: every walk must give the
 * same frames as the walker's first one. */
#define NWALKERS 3
static atomic_int churning;
static pthread_barrier_t ready;

ONE_CALL_SITE static void* walker(void* arg) {
  (void)arg;
  uintptr_t first[MAXF], again[MAXF];
  unsigned n0 = 0;
  long bad = 0;
  for (long i = 0;; i++) {
    unsigned n = walk_capped(i == 0 ? first : again, MAXF, 0, 0, 0); /* one call site */
    if (i == 0) {
      n0 = n;
      bad += n0 < 3;
      pthread_barrier_wait(&ready);
    } else if (n != n0 || memcmp(again, first, n * sizeof first[0]) != 0) {
      bad++;
    }
    if (!atomic_load(&churning)) break;
  }
  return (void*)bad;
}

static void test_walks_stay_right_while_the_cache_is_emptied_and_refilled(void** state) {
  (void)state;
  atomic_store(&churning, 1);
  pthread_barrier_init(&ready, NULL, NWALKERS + 1);
  pthread_t th[NWALKERS];
  for (int i = 0; i < NWALKERS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, walker, NULL), 0);
  pthread_barrier_wait(&ready);
  uint64_t m0 = mprof__unwind_misses();
  for (int i = 0; i < 30; i++) {
    void* h;
    through_lib(load(&h));
    dlclose(h);
  }
  atomic_store(&churning, 0);
  for (int i = 0; i < NWALKERS; i++) {
    void* bad;
    pthread_join(th[i], &bad);
    assert_null(bad);
  }
  pthread_barrier_destroy(&ready);
  assert_true(mprof__unwind_misses() >= m0 + 30); /* the cache was emptied each time */
}

/* ---------------------------------------------------------------------------------------------
 * Stack bounds, bad frames, code without call-frame information
 * ------------------------------------------------------------------------------------------- */
static uintptr_t bounds_lo, bounds_hi, bounds_here;

static void* thread_bounds(void* arg) {
  (void)arg;
  mprof__thread_stack_bounds(&bounds_lo, &bounds_hi);
  bounds_here = (uintptr_t)__builtin_frame_address(0);
  pthread_attr_t attr;
  void* addr = NULL;
  size_t size = 0;
  pthread_getattr_np(pthread_self(), &attr);
  pthread_attr_getstack(&attr, &addr, &size);
  pthread_attr_destroy(&attr);
  return (void*)((uintptr_t)addr + size);
}

static void test_stack_bounds_hold_the_running_frame(void** state) {
  (void)state;
  uintptr_t lo, hi, lo2, hi2;
  mprof__thread_stack_bounds(&lo, &hi);
  uintptr_t here = (uintptr_t)__builtin_frame_address(0);
  assert_true(lo < here && here < hi);
  assert_true(hi - here < (uintptr_t)64 << 20); /* the top of this stack, not of another */
  assert_int_equal(hi % 8, 0);
  mprof__thread_stack_bounds(&lo2, &hi2); /* cached: the same */
  assert_int_equal(lo, lo2);
  assert_int_equal(hi, hi2);
  pthread_t t;
  void* top;
  assert_int_equal(pthread_create(&t, NULL, thread_bounds, NULL), 0);
  pthread_join(t, &top);
  assert_true(bounds_lo < bounds_here && bounds_here < bounds_hi);
  assert_int_equal(bounds_hi, (uintptr_t)top & ~(uintptr_t)7);
  assert_true(bounds_hi != hi);
}

static bool ends_marked(void) {
  if (nmine == 0) return false;
  const char* name = mprof__mutex_pc_name(mine[nmine - 1]);
  return name != NULL && strcmp(name, MPROF_UNWIND_BAD_FRAME) == 0;
}

/* Walks without backtrace(), which faults on the garbage frame pointers below. */
__attribute__((noinline)) static unsigned walk_only(void) {
  nmine = mprof__unwind(mine, MAXF, 0, 0, 0);
  __asm__ volatile("" ::: "memory");
  return nmine;
}

/* Overwrites the frame pointer this function saved (its caller's) while it walks: the walk steps
 * into the caller, whose CFA is computed from that frame pointer. */
__attribute__((noinline)) static unsigned walk_with_bad_saved_fp(uintptr_t garbage) {
  uintptr_t* saved = __builtin_frame_address(0);
  uintptr_t keep = *saved;
  if (garbage != 0) *(volatile uintptr_t*)saved = garbage; /* 0: left intact */
  unsigned n = walk_only();
  *(volatile uintptr_t*)saved = keep;
  return n;
}

__attribute__((noinline, optimize("no-omit-frame-pointer"))) static unsigned
caller_with_fp(uintptr_t garbage) {
  unsigned n = walk_with_bad_saved_fp(garbage);
  __asm__ volatile("" ::: "memory");
  return n;
}

static void test_a_garbage_frame_pointer_ends_the_stack_marked(void** state) {
  (void)state;
  caller_with_fp(0); /* the frame pointer intact: no mark */
  unsigned good = nmine;
  assert_true(good >= 4);
  assert_false(ends_marked());
  uintptr_t lo, hi;
  mprof__thread_stack_bounds(&lo, &hi);
  (void)lo;
  /* Just above the main thread's stack nothing is mapped: a read there would fault. */
  uintptr_t garbage[] = {0x4141414141414141ull, hi + 64, hi + 4096 * 8 + 8, 8,
                         (uintptr_t)__builtin_frame_address(0) + 3};
  for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
    caller_with_fp(garbage[i]);
    /* walk_only, walk_with_bad_saved_fp, the return into caller_with_fp; then the mark. */
    assert_true(nmine >= 3);
    assert_true(nmine < good + 1);
    assert_true(ends_marked());
  }
  /* Garbage that is a plausible frame inside the stack is not detectable: the walk goes on in
   * bounds, and whatever it finds, it does not fault. */
  uintptr_t plausible[2] = {0, 0};
  caller_with_fp((uintptr_t)plausible);
  assert_true(nmine >= 3);
}

/* Hand-written assembly without call-frame information that keeps a frame pointer and calls
 * the function it is given. */
__asm__(".text\n"
        "nocfi_call:\n"
        "  push %rbp\n"
        "  mov %rsp, %rbp\n"
        "  call *%rdi\n"
        "  pop %rbp\n"
        "  ret\n"
        "nocfi_call_end:\n");
unsigned nocfi_call(unsigned (*fn)(void));
extern const char nocfi_call_end[];

__attribute__((noinline)) static unsigned through_nocfi(void) {
  unsigned n = nocfi_call(walk_here);
  __asm__ volatile("" ::: "memory");
  return n;
}

static void test_code_without_cfi_is_walked_by_its_frame_pointer(void** state) {
  (void)state;
  through_nocfi();
  /* walk_here's return into nocfi_call, then through_nocfi, this test and on to the end. */
  assert_true(nmine >= 5);
  assert_true(mine[1] > (uintptr_t)&nocfi_call && mine[1] <= (uintptr_t)nocfi_call_end);
  assert_true(mine[2] > (uintptr_t)&through_nocfi && mine[2] < (uintptr_t)&through_nocfi + 200);
  assert_false(ends_marked());
  /* From through_nocfi's caller on, the same frames as a walk from through_nocfi itself. */
  recurse(0);
  unsigned direct = nmine;
  through_nocfi();
  assert_int_equal(nmine, direct + 1);
}

/* A handler on an alternate signal stack: the stack pointer is outside the thread's stack, so the
 * walk checks each page it reads (process_vm_readv) and stops at the signal frame. */
static void test_a_walk_on_an_alternate_signal_stack(void** state) {
  (void)state;
  size_t size = 64 * 1024;
  void* mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(mem != MAP_FAILED);
  stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0}, old_ss;
  assert_int_equal(sigaltstack(&ss, &old_ss), 0);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR2, &sa, &old);
  in_handler = 0;
  handler_frames = 0;
  raise(SIGUSR2);
  sigaction(SIGUSR2, &old, NULL);
  sigaltstack(&old_ss, NULL);
  munmap(mem, size);
  assert_true(in_handler);
  assert_true(handler_frames >= 2);
  assert_false(ends_marked());
}

/* A coroutine on a stack of the program's own (makecontext): walked page by page to its start. */
static ucontext_t co_main, co_ctx;

static void co_entry(void) {
  recurse(3);
  __asm__ volatile("" ::: "memory"); /* not a tail call: co_entry keeps its frame */
}

static void test_a_walk_on_a_coroutine_stack(void** state) {
  (void)state;
  size_t size = 256 * 1024;
  char* mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(mem != MAP_FAILED);
  getcontext(&co_ctx);
  co_ctx.uc_stack.ss_sp = mem;
  co_ctx.uc_stack.ss_size = size;
  co_ctx.uc_link = &co_main;
  makecontext(&co_ctx, co_entry, 0);
  nmine = 0;
  swapcontext(&co_main, &co_ctx);
  munmap(mem, size);
  /* walk_here, recurse x 4, co_entry, then glibc's __start_context, whose return address is the
   * first byte of the function (no call-frame information covers the byte before it): there the
   * walk ends, marked or not, but never faults. */
  assert_true(nmine >= 6);
  assert_true(mine[5] > (uintptr_t)&co_entry && mine[5] < (uintptr_t)&co_entry + 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_walk_matches_backtrace_on_the_main_thread),
      cmocka_unit_test(test_the_walk_matches_backtrace_on_a_new_thread_and_repeats_from_the_cache),
      cmocka_unit_test(test_depth_dropped_frames_and_skip),
      cmocka_unit_test(test_a_walk_from_a_signal_handler_stops_at_the_signal_frame),
      cmocka_unit_test(test_unloading_an_object_empties_the_cache),
      cmocka_unit_test(test_walks_stay_right_while_the_cache_is_emptied_and_refilled),
      cmocka_unit_test(test_stack_bounds_hold_the_running_frame),
      cmocka_unit_test(test_a_garbage_frame_pointer_ends_the_stack_marked),
      cmocka_unit_test(test_code_without_cfi_is_walked_by_its_frame_pointer),
      cmocka_unit_test(test_a_walk_on_an_alternate_signal_stack),
      cmocka_unit_test(test_a_walk_on_a_coroutine_stack),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
