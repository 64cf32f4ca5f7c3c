/* Costs and accuracy of the contention profile (docs/BENCHMARKS.md, "Contention profile").
 *
 *   bench_mutex pair N          N uncontended pthread_mutex_lock/unlock pairs in bench_mutex_loop
 *                               (the function callgrind counts); prints ns per pair
 *   bench_mutex cost R N        under libmprof.so: R interleaved rounds of N pairs each through
 *                               glibc's function called directly, the interposed one with the
 *                               profile off, and on (prof.mutex_app, fraction 1); min and median
 *                               ns per pair of each
 *   bench_mutex contend N PATH  4 threads take one mutex N times each, sleeping ~10 us inside
 *                               (so nearly every acquisition is contended); each sums its own
 *                               time inside pthread_mutex_lock; then the contention profile
 *                               is written to PATH (prof.mutex.dump). Prints the measured
 *                               wait and stats.contentions.
 *
 * Output lines: `RESULT key=value ...` (bench_common.h). */
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) void bench_mutex_loop(pthread_mutex_t* m, uint64_t n);
__attribute__((noinline)) void bench_mutex_loop(pthread_mutex_t* m, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    pthread_mutex_lock(m);
    __asm__ volatile("" ::: "memory");
    pthread_mutex_unlock(m);
  }
}

static int run_pair(uint64_t n) {
  bench_mutex_loop(&mu, n / 10 + 1); /* warm up, resolve symbols */
  uint64_t t0 = bench_now_ns();
  bench_mutex_loop(&mu, n);
  uint64_t t1 = bench_now_ns();
  printf("RESULT test=pair n=%llu ns_per_pair=%.3f\n", (unsigned long long)n,
         (double)(t1 - t0) / (double)n);
  return 0;
}

typedef int (*lock_fn)(pthread_mutex_t*);

__attribute__((noinline)) static void direct_loop(lock_fn lock, pthread_mutex_t* m, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    lock(m);
    __asm__ volatile("" ::: "memory");
    pthread_mutex_unlock(m);
  }
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

/* In one process, interleaved so that a noisy machine hits all three alike: glibc's
 * pthread_mutex_lock called directly, the interposed one with the profile off, and on. */
static int run_cost(int nrounds, uint64_t n) {
  bench_ctl_fn ctl;
  *(void**)&ctl = dlsym(RTLD_DEFAULT, "mprof_ctl");
  void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  lock_fn glibc_lock = NULL;
  if (libc != NULL) *(void**)&glibc_lock = dlsym(libc, "pthread_mutex_lock");
  if (ctl == NULL || glibc_lock == NULL) {
    fprintf(stderr, "cost: needs libmprof.so (mprof_ctl) and libc.so.6\n");
    return 1;
  }
  if (nrounds > 64) nrounds = 64;
  double t[3][64];
  bool app = true;
  ctl("prof.mutex_app", NULL, NULL, &app, sizeof app);
  for (int r = 0; r < nrounds; r++) {
    for (int c = 0; c < 3; c++) {
      unsigned f = c == 2 ? 1 : 0;
      ctl("prof.mutex_fraction", NULL, NULL, &f, sizeof f);
      uint64_t t0 = bench_now_ns();
      if (c == 0)
        direct_loop(glibc_lock, &mu, n);
      else
        bench_mutex_loop(&mu, n);
      t[c][r] = (double)(bench_now_ns() - t0) / (double)n;
    }
  }
  const char* names[3] = {"glibc", "off", "on"};
  for (int c = 0; c < 3; c++) {
    qsort(t[c], (size_t)nrounds, sizeof t[c][0], cmp_double);
    printf("RESULT test=cost config=%s min_ns=%.3f median_ns=%.3f\n", names[c], t[c][0],
           t[c][nrounds / 2]);
  }
  return 0;
}

static uint64_t rounds;
static _Atomic uint64_t waited_ns, acquisitions;
static volatile uint64_t counter;

static void* contender(void* arg) {
  (void)arg;
  uint64_t w = 0, seed = (uintptr_t)&w;
  for (uint64_t i = 0; i < rounds; i++) {
    uint64_t t0 = bench_now_ns();
    pthread_mutex_lock(&mu);
    w += bench_now_ns() - t0;
    /* A critical section that sleeps (~60 us with the timer slack): the others queue on the
     * mutex whatever the number of cores, so nearly every acquisition is contended. */
    counter += bench_rand(&seed) & 1;
    struct timespec ts = {0, 10000};
    nanosleep(&ts, NULL);
    pthread_mutex_unlock(&mu);
  }
  atomic_fetch_add(&waited_ns, w);
  atomic_fetch_add(&acquisitions, rounds);
  return NULL;
}

static int run_contend(uint64_t n, const char* path) {
  rounds = n;
  pthread_t th[4];
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, contender, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  uint64_t t1 = bench_now_ns();
  bench_ctl_fn ctl;
  *(void**)&ctl = dlsym(RTLD_DEFAULT, "mprof_ctl");
  uint64_t contentions = 0;
  if (ctl != NULL) {
    size_t len = sizeof contentions;
    ctl("stats.contentions", &contentions, &len, NULL, 0);
    int err = ctl("prof.mutex.dump", NULL, NULL, &path, sizeof path);
    if (err != 0) fprintf(stderr, "prof.mutex.dump: %s\n", strerror(err));
  }
  printf("RESULT test=contend rounds=%llu waited_ns=%llu wall_ns=%llu contentions=%llu\n",
         (unsigned long long)n, (unsigned long long)waited_ns, (unsigned long long)(t1 - t0),
         (unsigned long long)contentions);
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 3 && strcmp(argv[1], "pair") == 0) return run_pair(strtoull(argv[2], NULL, 10));
  if (argc >= 4 && strcmp(argv[1], "cost") == 0)
    return run_cost(atoi(argv[2]), strtoull(argv[3], NULL, 10));
  if (argc >= 4 && strcmp(argv[1], "contend") == 0)
    return run_contend(strtoull(argv[2], NULL, 10), argv[3]);
  fprintf(stderr, "usage: bench_mutex pair N | contend N PATH\n");
  return 2;
}
