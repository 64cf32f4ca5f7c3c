/* What the allocator glue must never do to a program, run under LD_PRELOAD=libmprof.so with
 * every allocation sampled (lg_prof_sample:0). Each test is named after a way an allocator
 * plugin can break a program:
 *   - C++ operator new in a library loaded with dlopen() not sampled, or its delete not counted;
 *   - glibc's __libc_memalign() served by another allocator than free();
 *   - a thread of the profiler's own (a process that must be single-threaded: unshare of a user
 *     namespace; a seccomp filter that forbids creating threads);
 *   - a large reservation of address space (RLIMIT_AS).
 * Usage: rel_glue CXXLIB (the path of rel_cxxlib.so), or rel_glue unshare | seccomp. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rel_proc.h"

typedef int (*ctl_fn)(const char*, void*, size_t*, void*, size_t);
static ctl_fn ctl;
static const char* cxxlib;
static void* volatile sink;

static uint64_t stat_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  assert_int_equal(ctl(name, &v, &len, NULL, 0), 0);
  return v;
}

/* Enough allocations that every lazy part of the profiler has started. */
static void allocate_a_lot(void) {
  for (int i = 0; i < 20000; i++) {
    sink = malloc(16 + (size_t)i % 5000);
    free(sink);
  }
}

static void test_cxx_new_in_a_dlopened_library_is_sampled_and_its_delete_counted(void** state) {
  (void)state;
  void* h = dlopen(cxxlib, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(h);
  char* (*make)(size_t);
  void (*drop)(char*);
  *(void**)&make = dlsym(h, "rel_cxx_make");
  *(void**)&drop = dlsym(h, "rel_cxx_drop");
  assert_non_null(make);
  assert_non_null(drop);
  uint64_t s0 = stat_u64("stats.samples"), f0 = stat_u64("stats.frees");
  char* p[100];
  for (int i = 0; i < 100; i++)
    p[i] = make(1000);
  uint64_t s1 = stat_u64("stats.samples");
  for (int i = 0; i < 100; i++)
    drop(p[i]);
  uint64_t f1 = stat_u64("stats.frees");
  /* Reading a stat allocates nothing, so exactly the library's 100 blocks were sampled and freed. */
  assert_int_equal(s1 - s0, 100);
  assert_int_equal(f1 - f0, 100);
  dlclose(h);
}

extern void* __libc_memalign(size_t align, size_t n);

static void test_libc_memalign_blocks_can_be_freed(void** state) {
  (void)state;
  uint64_t f0 = stat_u64("stats.frees");
  for (size_t a = 16; a <= 65536; a *= 2) {
    char* p = __libc_memalign(a, 100);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % a, 0);
    memset(p, 1, 100);
    assert_true(malloc_usable_size(p) >= 100);
    free(p);
  }
  assert_int_equal(stat_u64("stats.frees") - f0, 13);
}

static void test_the_profiler_starts_no_thread(void** state) {
  (void)state;
  allocate_a_lot();
  const char* path = "/dev/null";
  assert_int_equal(ctl("prof.dump", NULL, NULL, &path, sizeof path), 0);
  assert_true(stat_u64("stats.samples") > 1000);
  assert_int_equal(rel_task_count_settled(1), 1);
}

/* mimalloc's own aligned API, called directly: its fallback reports the over-allocation and
 * then the aligned block, and the glue must count each allocation once, at its own size. */
static void test_mi_malloc_aligned_counts_each_block_once_at_its_size(void** state) {
  (void)state;
  void* (*mi_aligned)(size_t, size_t);
  void (*mi_free_fn)(void*);
  *(void**)&mi_aligned = dlsym(RTLD_DEFAULT, "mi_malloc_aligned");
  *(void**)&mi_free_fn = dlsym(RTLD_DEFAULT, "mi_free");
  assert_non_null(mi_aligned);
  assert_non_null(mi_free_fn);
  uint64_t s0 = stat_u64("stats.samples"), b0 = stat_u64("stats.sampled_bytes_in_use");
  void* p[200];
  for (int i = 0; i < 200; i++) {
    size_t align = (size_t)64 << (i % 8); /* 64 B .. 8 KiB: mimalloc's over-allocating path */
    p[i] = mi_aligned(100 + (size_t)i, align);
    assert_non_null(p[i]);
    assert_int_equal((uintptr_t)p[i] % align, 0);
  }
  uint64_t want = 0;
  for (int i = 0; i < 200; i++)
    want += 100 + (uint64_t)i;
  assert_int_equal(stat_u64("stats.samples") - s0, 200);
  assert_int_equal(stat_u64("stats.sampled_bytes_in_use") - b0, want);
  for (int i = 0; i < 200; i++)
    mi_free_fn(p[i]);
  assert_int_equal(stat_u64("stats.sampled_bytes_in_use"), b0);
  assert_int_equal(stat_u64("stats.dropped_samples"), 0);
}

static char* blocks[1000];

static void* shrink_all(void* arg) {
  int* in_place = arg;
  for (int i = 0; i < 1000; i++) {
    char* q = realloc(blocks[i], 800); /* within mimalloc's in-place range */
    if (q == blocks[i]) ++*in_place;
    blocks[i] = q;
  }
  return NULL;
}

static void test_in_place_realloc_of_another_threads_block_is_sampled_and_counted(void** state) {
  (void)state;
  uint64_t s0 = stat_u64("stats.samples"), f0 = stat_u64("stats.frees");
  uint64_t d0 = stat_u64("stats.dropped_samples");
  for (int i = 0; i < 1000; i++)
    blocks[i] = malloc(1000);
  int in_place = 0;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, shrink_all, &in_place), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  for (int i = 0; i < 1000; i++)
    free(blocks[i]);
  assert_true(in_place > 900);
  /* 1000 mallocs + 1000 reallocs sampled; 1000 old blocks + 1000 new ones freed. The thread's
   * own start-up allocations are sampled and freed too, hence at least. */
  assert_true(stat_u64("stats.samples") - s0 >= 2000);
  assert_true(stat_u64("stats.frees") - f0 >= 2000);
  assert_int_equal(stat_u64("stats.dropped_samples"), d0);
}

/* Run as the whole process (mode "unshare"): unshare(CLONE_NEWUSER) fails with EINVAL in a
 * multithreaded process. Exit status 77 where user namespaces are not available at all. */
static int unshare_main(void) {
  allocate_a_lot();
  if (unshare(CLONE_NEWUSER) == 0) return 0;
  if (errno == EINVAL) {
    fprintf(stderr, "unshare(CLONE_NEWUSER): EINVAL: the process is not single-threaded\n");
    return 1;
  }
  fprintf(stderr, "user namespaces are not available here: %s\n", strerror(errno));
  return 77;
}

/* Run as the whole process (mode "seccomp"), before anything else: a filter that kills the
 * process on clone() with CLONE_THREAD and on clone3(), as a sandbox that forbids new threads
 * does; then sample, dump and exit. */
static int seccomp_main(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    fprintf(stderr, "cannot install a seccomp filter: %s\n", strerror(errno));
    return 77;
  }
  allocate_a_lot();
  const char* path = "/dev/null";
  int err = ctl("prof.dump", NULL, NULL, &path, sizeof path);
  if (err != 0) {
    fprintf(stderr, "prof.dump: %s\n", strerror(err));
    return 1;
  }
  size_t n = 0;
  uint64_t samples = 0;
  n = sizeof samples;
  ctl("stats.samples", &samples, &n, NULL, 0);
  if (samples < 1000) {
    fprintf(stderr, "only %llu samples\n", (unsigned long long)samples);
    return 1;
  }
  return 0;
}

/* VmSize of this process in KiB. */
static long vm_size_kib(void) {
  FILE* f = fopen("/proc/self/status", "r");
  assert_non_null(f);
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmSize: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

static void test_no_large_address_space_reservation(void** state) {
  (void)state;
  allocate_a_lot();
  /* mimalloc maps its segments as it needs them; the profiler maps its own small chunks. A
   * program this size stays far below 1 GiB of address space (a reservation for sampled blocks
   * took 64 GiB, or a third of RLIMIT_AS). */
  long kib = vm_size_kib();
  print_message("VmSize %ld KiB\n", kib);
  assert_true(kib > 0 && kib < 1024 * 1024);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: rel_glue CXXLIB | unshare | seccomp\n");
    return 2;
  }
  void* sym = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (sym == NULL) {
    fprintf(stderr, "rel_glue: mprof_ctl not found: run under libmprof.so\n");
    return 2;
  }
  memcpy(&ctl, &sym, sizeof ctl);
  if (strcmp(argv[1], "seccomp") == 0) return seccomp_main();
  if (strcmp(argv[1], "unshare") == 0) return unshare_main();
  cxxlib = argv[1];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cxx_new_in_a_dlopened_library_is_sampled_and_its_delete_counted),
      cmocka_unit_test(test_libc_memalign_blocks_can_be_freed),
      cmocka_unit_test(test_the_profiler_starts_no_thread),
      cmocka_unit_test(test_mi_malloc_aligned_counts_each_block_once_at_its_size),
      cmocka_unit_test(test_in_place_realloc_of_another_threads_block_is_sampled_and_counted),
      cmocka_unit_test(test_no_large_address_space_reservation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
