/* The profiler's own memory stays small (linked to libmprof.so; ctest runs it with
 * prof_active:false and at the default rate):
 *
 *   - a program that allocates but samples nothing (prof_active:false, or a tiny program at the
 *     default rate) has at most 256 KiB of stats.metadata_bytes;
 *   - at the default rate, with 24 MiB and then 64 MiB live, allocated from 16 sites on 4 threads
 *     (so 4 per-thread stack buffers as well), metadata stays under 1 % of the heap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprof.h"

#define KiB ((size_t)1024)
#define MiB (KiB * KiB)
#define NTHREADS 4

static uint64_t stat_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  assert_int_equal(mprof_ctl(name, &v, &len, NULL, 0), 0);
  return v;
}

static bool prof_active(void) {
  bool on = false;
  size_t len = sizeof on;
  return mprof_ctl("prof.active", &on, &len, NULL, 0) == 0 && on;
}

static void report(const char* what, size_t heap) {
  fprintf(stderr, "%s: heap %zu KiB, metadata %llu KiB, %llu samples, %llu buckets\n", what,
          heap / KiB, (unsigned long long)(stat_u64("stats.metadata_bytes") / KiB),
          (unsigned long long)stat_u64("stats.samples"),
          (unsigned long long)stat_u64("stats.buckets"));
}

/* Sixteen allocation sites, so that the profile has sixteen stacks per thread path. */
#define SITE(k)                                                                                    \
  __attribute__((noinline)) static void* site##k(size_t n) {                                       \
    void* p = malloc(n);                                                                           \
    if (p != NULL) memset(p, (int)k, n < 64 ? n : 64);                                             \
    return p;                                                                                      \
  }
SITE(0)
SITE(1)
SITE(2)
SITE(3)
SITE(4)
SITE(5)
SITE(6)
SITE(7)
SITE(8)
SITE(9)
SITE(10)
SITE(11)
SITE(12)
SITE(13)
SITE(14)
SITE(15)
static void* (*const sites[16])(size_t) = {site0,  site1,  site2,  site3, site4,  site5,
                                           site6,  site7,  site8,  site9, site10, site11,
                                           site12, site13, site14, site15};

typedef struct job_s {
  size_t live_bytes;  /* what this thread keeps allocated */
  size_t churn_bytes; /* allocated and freed again on top of it */
  uint64_t seed;
  void** blocks;
  size_t nblocks, cap;
} job_t;

static uint64_t next_rand(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* 16 B .. 32 KiB, log-uniform, from a random site. */
static void* one_alloc(uint64_t* s, size_t* n) {
  uint64_t r = next_rand(s);
  size_t base = (size_t)16 << (r % 11);
  *n = base + (size_t)((r >> 8) % base);
  return sites[(r >> 40) % 16](*n);
}

static void* worker(void* arg) {
  job_t* j = arg;
  size_t live = 0, churn = 0;
  while (live < j->live_bytes) {
    size_t n;
    void* p = one_alloc(&j->seed, &n);
    assert_non_null(p);
    if (j->nblocks == j->cap) {
      j->cap = j->cap ? j->cap * 2 : 1024;
      j->blocks = realloc(j->blocks, j->cap * sizeof *j->blocks);
      assert_non_null(j->blocks);
    }
    j->blocks[j->nblocks++] = p;
    live += n;
  }
  while (churn < j->churn_bytes) {
    size_t n;
    void* p = one_alloc(&j->seed, &n);
    assert_non_null(p);
    free(p);
    churn += n;
  }
  return NULL;
}

static void run_jobs(job_t* jobs) {
  pthread_t th[NTHREADS];
  for (int t = 0; t < NTHREADS; t++)
    assert_int_equal(pthread_create(&th[t], NULL, worker, &jobs[t]), 0);
  for (int t = 0; t < NTHREADS; t++)
    pthread_join(th[t], NULL);
}

static void free_jobs(job_t* jobs) {
  for (int t = 0; t < NTHREADS; t++) {
    for (size_t i = 0; i < jobs[t].nblocks; i++)
      free(jobs[t].blocks[i]);
    free(jobs[t].blocks);
    jobs[t].blocks = NULL;
    jobs[t].nblocks = jobs[t].cap = 0;
  }
}

static void test_a_program_that_samples_nothing_has_at_most_256_kib(void** state) {
  (void)state;
  if (prof_active()) {
    /* At the default rate: a tiny program, 64 KiB allocated in all, is most likely never
     * sampled; whether it is or not, its metadata stays within the bound. */
    void* p[64];
    for (int i = 0; i < 64; i++)
      p[i] = sites[i % 16](1024);
    for (int i = 0; i < 64; i++)
      free(p[i]);
    report("tiny program", 64 * KiB);
  } else {
    /* prof_active:false: 8 MiB live and 64 MiB churned on 4 threads, nothing sampled. */
    job_t jobs[NTHREADS] = {{0}};
    for (int t = 0; t < NTHREADS; t++)
      jobs[t] = (job_t){.live_bytes = 2 * MiB, .churn_bytes = 16 * MiB, .seed = 77 + (uint64_t)t};
    run_jobs(jobs);
    report("prof_active:false", 8 * MiB);
    assert_int_equal(stat_u64("stats.samples"), 0);
    free_jobs(jobs);
  }
  assert_true(stat_u64("stats.metadata_bytes") <= 256 * KiB);
}

static void test_metadata_stays_under_1_percent_of_a_heap_of_24_mib_and_more(void** state) {
  (void)state;
  if (!prof_active()) skip();
  job_t jobs[NTHREADS] = {{0}};
  const size_t heaps[] = {24 * MiB, 64 * MiB};
  for (size_t k = 0; k < sizeof heaps / sizeof heaps[0]; k++) {
    for (int t = 0; t < NTHREADS; t++) {
      jobs[t].live_bytes = heaps[k] / NTHREADS;
      jobs[t].churn_bytes = heaps[k] / NTHREADS;
      jobs[t].seed = 1000 * (k + 1) + (uint64_t)t;
    }
    run_jobs(jobs);
    size_t heap = 0;
    for (int t = 0; t < NTHREADS; t++)
      heap += jobs[t].live_bytes; /* at least this much is live */
    report(k == 0 ? "24 MiB heap" : "64 MiB heap", heap);
    /* About heap / 512 KiB samples are expected (≈ 96 at 24 MiB counting the churn): enough
     * that buckets, stack buffers and block-map entries exist. */
    assert_true(stat_u64("stats.samples") >= 20);
    assert_true(stat_u64("stats.sampled_blocks") >= 10);
    assert_true(stat_u64("stats.metadata_bytes") * 100 < heap);
    free_jobs(jobs);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_program_that_samples_nothing_has_at_most_256_kib),
      cmocka_unit_test(test_metadata_stays_under_1_percent_of_a_heap_of_24_mib_and_more),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
