/* Allocation failure paths and resource limits through libmprof.so (linked). ctest runs this
 * with profiling off, at the default rate and with every allocation sampled.
 *
 *   - impossible sizes, calloc/reallocarray overflow, bad alignments: NULL with ENOMEM/EINVAL
 *     (posix_memalign returns the code and leaves errno alone), the old block of a failed
 *     realloc untouched, and no sample counted or dropped for an allocation that failed;
 *   - alignments above mimalloc's 16 MiB limit: either NULL with ENOMEM or a correctly aligned
 *     block (libmprof.so serves them; the sample is dropped and counted);
 *   - every alignment from 8 bytes to 1 MiB with sizes from 1 byte, including sizes below the
 *     alignment: the result is aligned;
 *   - at lg_prof_sample:0 every allocation of a thread is sampled, also after the profiler has
 *     allocated for itself on that thread;
 *   - the profiler's own memory exhausted under a small RLIMIT_AS (in a child process): every
 *     allocation still gets the POSIX answer (a block, or NULL with ENOMEM), the profiler counts
 *     what it dropped in stats.dropped_samples, says so in exactly one line on stderr, and works
 *     again (dumps included) once memory is back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mprof.h"

/* The impossible sizes are the point, and so is using a block after its realloc failed. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

static void* volatile sink;
static bool prof_on;
static size_t lg_sample;

static uint64_t stat_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  if (mprof_ctl(name, &v, &len, NULL, 0) != 0) return 0;
  return v;
}

typedef struct {
  uint64_t samples, dropped;
} counts_t;

static counts_t counts(void) {
  return (counts_t){stat_u64("stats.samples"), stat_u64("stats.dropped_samples")};
}

#define EXPECT_NULL_ERRNO(call, code)                                                              \
  do {                                                                                             \
    errno = 0;                                                                                     \
    sink = (call);                                                                                 \
    if (sink != NULL || errno != (code))                                                           \
      fail_msg("%s: got %p errno %d, want NULL errno %d", #call, sink, errno, (code));             \
  } while (0)

static void test_impossible_requests_fail_with_the_posix_errno(void** state) {
  (void)state;
  counts_t before = counts();
  for (int round = 0; round < 3; round++) { /* several times: each may be the sampled one */
    EXPECT_NULL_ERRNO(malloc(SIZE_MAX), ENOMEM);
    EXPECT_NULL_ERRNO(malloc(SIZE_MAX / 2 + 1), ENOMEM);
    EXPECT_NULL_ERRNO(malloc((size_t)PTRDIFF_MAX), ENOMEM);
    EXPECT_NULL_ERRNO(calloc(SIZE_MAX / 2, 3), ENOMEM);
    EXPECT_NULL_ERRNO(calloc(1, SIZE_MAX), ENOMEM);
    EXPECT_NULL_ERRNO(calloc(SIZE_MAX, SIZE_MAX), ENOMEM);
    EXPECT_NULL_ERRNO(valloc(SIZE_MAX), ENOMEM);
    EXPECT_NULL_ERRNO(pvalloc(SIZE_MAX), ENOMEM);
    EXPECT_NULL_ERRNO(aligned_alloc(64, SIZE_MAX - 63), ENOMEM);
    EXPECT_NULL_ERRNO(memalign(64, SIZE_MAX / 2), ENOMEM);
    EXPECT_NULL_ERRNO(aligned_alloc(3, 16), EINVAL);
    EXPECT_NULL_ERRNO(aligned_alloc(0, 16), EINVAL);
    EXPECT_NULL_ERRNO(aligned_alloc(48, 96), EINVAL);
    EXPECT_NULL_ERRNO(memalign(SIZE_MAX, 16), EINVAL);

    char* p = malloc(32);
    assert_non_null(p);
    strcpy(p, "still here");
    EXPECT_NULL_ERRNO(realloc(p, SIZE_MAX), ENOMEM);
    EXPECT_NULL_ERRNO(realloc(p, SIZE_MAX / 2), ENOMEM);
    EXPECT_NULL_ERRNO(reallocarray(p, SIZE_MAX / 2, 3), ENOMEM);
    EXPECT_NULL_ERRNO(reallocarray(p, 2, SIZE_MAX), ENOMEM);
    assert_string_equal(p, "still here"); /* the old block is untouched and still owned */
    free(p);

    void* q = (void*)0x1;
    const size_t bad_align[] = {0, 1, 2, 4, 3, 24, 48, 100, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_align / sizeof bad_align[0]; i++) {
      errno = 1234;
      assert_int_equal(posix_memalign(&q, bad_align[i], 16), EINVAL);
      assert_int_equal(errno, 1234); /* posix_memalign returns the code, errno unchanged */
      assert_ptr_equal(q, (void*)0x1);
    }
    errno = 1234;
    assert_int_equal(posix_memalign(&q, 64, SIZE_MAX / 2), ENOMEM);
    assert_int_equal(errno, 1234);
  }
  counts_t after = counts();
  assert_int_equal(after.dropped, before.dropped);  /* a failed allocation is no lost sample */
  assert_true(after.samples - before.samples <= 6); /* the 3 x 2 mallocs of 32 bytes at most */
}

static void test_alignments_above_16_mib_are_served_aligned_or_fail_with_enomem(void** state) {
  (void)state;
  const size_t aligns[] = {(size_t)1 << 24, (size_t)1 << 25, (size_t)1 << 27};
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
    size_t a = aligns[i];
    for (int k = 0; k < 3; k++) {
      errno = 0;
      void* p = k == 0 ? aligned_alloc(a, 100) : k == 1 ? memalign(a, 100) : NULL;
      if (k == 2) {
        int err = posix_memalign(&p, a, 100);
        assert_true(err == 0 || err == ENOMEM);
        if (err != 0) p = NULL;
      } else if (p == NULL) {
        assert_int_equal(errno, ENOMEM);
      }
      if (p != NULL) {
        assert_int_equal((uintptr_t)p % a, 0);
        memset(p, 1, 100);
        free(p);
      }
    }
  }
}

static void test_every_alignment_and_size_is_honoured(void** state) {
  (void)state;
  for (size_t a = 8; a <= ((size_t)1 << 20); a *= 2) {
    for (size_t n = 1; n <= 3 * a && n <= 70000; n = n < 64 ? n + 1 : n * 3 + 1) {
      void* p = NULL;
      assert_int_equal(posix_memalign(&p, a, n), 0);
      if ((uintptr_t)p % a != 0) fail_msg("posix_memalign(%zu, %zu) = %p", a, n, p);
      void* q = memalign(a, n);
      if ((uintptr_t)q % a != 0) fail_msg("memalign(%zu, %zu) = %p", a, n, q);
      void* r = aligned_alloc(a, (n + a - 1) / a * a);
      if ((uintptr_t)r % a != 0) fail_msg("aligned_alloc(%zu, %zu) = %p", a, n, r);
      memset(p, 1, n);
      memset(q, 2, n);
      free(p);
      free(q);
      free(r);
    }
  }
}

/* --- Every allocation sampled at lg_prof_sample:0 ------------------------------------------ */
static void* count_thread_samples(void* arg) {
  uint64_t* missed = arg;
  for (int i = 0; i < 500; i++) {
    uint64_t before = stat_u64("stats.samples");
    sink = malloc(1 + (size_t)i % 300);
    if (stat_u64("stats.samples") != before + 1) ++*missed;
    free(sink);
    if (i == 100) {
      const char* p = "/dev/null";
      mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p); /* the profiler allocates its own */
    }
  }
  return NULL;
}

static void test_every_allocation_is_sampled_at_lg_prof_sample_0(void** state) {
  (void)state;
  if (!prof_on || lg_sample != 0) skip();
  uint64_t missed_main = 0, missed_thread = 0;
  count_thread_samples(&missed_main);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, count_thread_samples, &missed_thread), 0);
  pthread_join(t, NULL);
  assert_int_equal(missed_main, 0);
  assert_int_equal(missed_thread, 0);
}

/* --- RLIMIT_AS ------------------------------------------------------------------------------- */
static size_t vm_size(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  size_t kb = 0;
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmSize: %zu kB", &kb) == 1) break;
  if (f != NULL) fclose(f);
  return kb * 1024;
}

/* Distinct call stacks: each depth is a new bucket for the profiler. */
__attribute__((noinline)) static void* deep(int depth) {
  if (depth == 0) return malloc(24);
  void* p = deep(depth - 1);
  __asm__ volatile("" ::: "memory");
  return p;
}

enum {
  CHILD_OK = 0,
  CHILD_BAD_ERRNO = 10,
  CHILD_NO_DROP,
  CHILD_NO_NULL,
  CHILD_DUMP_AFTER,
  CHILD_SAMPLING_AFTER
};

static int rlimit_child(void) {
  static void* keep[400000];
  size_t nkeep = 0;
  struct rlimit old;
  getrlimit(RLIMIT_AS, &old);
  size_t headroom = (size_t)4 << 20;
#ifdef MPROF_TEST_JEMALLOC
  /* jemalloc promotes each sampled small block to a 16 KiB extent of its own, so under the
   * limit jemalloc would run out before the profiler does. Give jemalloc address space that it
   * keeps once freed (it retains its mappings), and the profiler little room beside it. */
  static void* warm[16384];
  bool active = false;
  mprof_ctl("prof.active", NULL, NULL, &active, sizeof active);
  for (int i = 0; i < 16384; i++)
    warm[i] = malloc(16384);
  for (int i = 0; i < 16384; i++)
    free(warm[i]);
  active = true;
  mprof_ctl("prof.active", NULL, NULL, &active, sizeof active);
  headroom = (size_t)256 << 10;
#endif
  struct rlimit low = {vm_size() + headroom, old.rlim_max};
  if (setrlimit(RLIMIT_AS, &low) != 0) return 1;
  /* Phase 1: many live sampled blocks and many stacks: the profiler's own memory runs out. */
  for (int i = 0; i < 400000 && nkeep < 400000; i++) {
    errno = 0;
    void* p = (i % 4 == 0) ? deep(i % 500) : malloc(48);
    if (p == NULL && errno != ENOMEM) return CHILD_BAD_ERRNO;
    if (p != NULL) keep[nkeep++] = p;
  }
  if (stat_u64("stats.dropped_samples") == 0) {
    fprintf(stderr, "no sample dropped: %zu blocks kept, %llu samples, %llu bytes of metadata\n",
            nkeep, (unsigned long long)stat_u64("stats.samples"),
            (unsigned long long)stat_u64("stats.metadata_bytes"));
    return CHILD_NO_DROP;
  }
  /* A dump now may fail for lack of memory, with EAGAIN, but must not crash. */
  const char* p = "/dev/null";
  int err = mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p);
  if (err != 0 && err != EAGAIN) return 20 + err;
  /* Phase 2: unsampled allocations reach the limit: NULL with ENOMEM. */
  bool off = false;
  mprof_ctl("prof.active", NULL, NULL, &off, sizeof off);
  void* big[4096];
  int nbig = 0, nulls = 0;
  for (int i = 0; i < 4096 && nulls == 0; i++) {
    errno = 0;
    void* b = malloc((size_t)1 << 20);
    if (b == NULL) {
      if (errno != ENOMEM) return CHILD_BAD_ERRNO;
      nulls++;
    } else {
      big[nbig++] = b;
    }
  }
  if (nulls == 0) return CHILD_NO_NULL;
  for (int i = 0; i < nbig; i++)
    free(big[i]);
  for (size_t i = 0; i < nkeep; i++)
    free(keep[i]);
  /* Memory is back: the profiler works again. */
  setrlimit(RLIMIT_AS, &old);
  bool on = true;
  mprof_ctl("prof.active", NULL, NULL, &on, sizeof on);
  if (mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p) != 0) return CHILD_DUMP_AFTER;
  uint64_t s = stat_u64("stats.samples");
  for (int i = 0; i < 100; i++) {
    sink = malloc(4096);
    free(sink);
  }
  if (stat_u64("stats.samples") == s) return CHILD_SAMPLING_AFTER;
  return CHILD_OK;
}

static void test_exhausted_profiler_memory_is_counted_and_said_once(void** state) {
  (void)state;
  if (!prof_on || lg_sample != 0) skip();
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    _exit(rlimit_child());
  }
  close(fds[1]);
  char buf[8192];
  size_t got = 0;
  ssize_t n;
  while ((n = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
    got += (size_t)n;
  buf[got] = '\0';
  close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  fprintf(stderr, "child stderr:\n%s", buf);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), CHILD_OK);
  int lines = 0;
  for (size_t i = 0; i < got; i++)
    lines += buf[i] == '\n';
  assert_int_equal(lines, 1); /* "samples are being dropped", once */
  assert_non_null(strstr(buf, "dropped"));
}

int main(void) {
  size_t len = sizeof prof_on;
  mprof_ctl("opt.prof", &prof_on, &len, NULL, 0);
  len = sizeof lg_sample;
  mprof_ctl("opt.lg_prof_sample", &lg_sample, &len, NULL, 0);
  const struct CMUnitTest tests[] = {
      /* First: the "dropped" line is said once per process, and forked children inherit that. */
      cmocka_unit_test(test_exhausted_profiler_memory_is_counted_and_said_once),
      cmocka_unit_test(test_impossible_requests_fail_with_the_posix_errno),
      cmocka_unit_test(test_alignments_above_16_mib_are_served_aligned_or_fail_with_enomem),
      cmocka_unit_test(test_every_alignment_and_size_is_honoured),
      cmocka_unit_test(test_every_allocation_is_sampled_at_lg_prof_sample_0),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
