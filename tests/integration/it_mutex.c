/* Contention scenarios for the contention profile, run with libmprof.so.
 *
 *   it_mutex app DIR     4 threads contend on one pthread mutex (sleeping inside it), two in
 *                        contend_alpha and two in contend_beta; each measures its own time in pthread_mutex_lock and
 *                        prints the sums ("measured alpha_ns beta_ns"); writes DIR/app.pb.gz
 *                        with prof.mutex.dump
 *   it_mutex toggle DIR  the same, alpha with prof_mutex_app off, then prof.mutex_app written true
 *                        and beta; writes DIR/toggle.pb.gz
 *   it_mutex alloc DIR   8 threads hammer malloc/free (sampling every allocation), so the
 *                        profiler's own locks are contended; writes DIR/alloc.pb.gz
 *   it_mutex fork        threads wait on a mutex while the main thread forks; the child locks
 *                        the mutex (re-initialised) and exits 0
 *   it_mutex exit        threads wait on a mutex (held by main) while main calls exit()
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dlfcn.h>

typedef int (*ctl_fn)(const char*, void*, size_t*, void*, size_t);

static ctl_fn ctl(void) {
  ctl_fn f;
  *(void**)&f = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (f == NULL) {
    fprintf(stderr, "mprof_ctl not found\n");
    exit(2);
  }
  return f;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void spin_ns(uint64_t ns) {
  uint64_t end = now_ns() + ns;
  while (now_ns() < end) {
  }
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static volatile uint64_t shared_counter;
static _Atomic uint64_t waited[2];

#define ROUNDS 1500

/* One critical section per round that sleeps (~60 us with the timer slack), so the other threads
 * queue on the mutex whatever the number of cores and their waits are alike (a spinning one on a
 * busy machine gives few, long, preemption-made waits: a poor sample). The time spent in
 * pthread_mutex_lock is summed. */
static void contend(int which) {
  uint64_t w = 0;
  for (int i = 0; i < ROUNDS; i++) {
    uint64_t t0 = now_ns();
    pthread_mutex_lock(&mu);
    w += now_ns() - t0;
    shared_counter++;
    struct timespec ts = {0, 10000};
    nanosleep(&ts, NULL);
    pthread_mutex_unlock(&mu);
  }
  atomic_fetch_add(&waited[which], w);
}

__attribute__((noinline)) static void contend_alpha(void) {
  contend(0);
  __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void contend_beta(void) {
  contend(1);
  __asm__ volatile("" ::: "memory");
}

static void* alpha_main(void* arg) {
  (void)arg;
  contend_alpha();
  return NULL;
}

static void* beta_main(void* arg) {
  (void)arg;
  contend_beta();
  return NULL;
}

static int run_app(const char* dir) {
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, i % 2 ? beta_main : alpha_main, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  char path[4096];
  snprintf(path, sizeof path, "%s/app.pb.gz", dir);
  const char* p = path;
  int err = ctl()("prof.mutex.dump", NULL, NULL, &p, sizeof p);
  if (err) {
    fprintf(stderr, "prof.mutex.dump: %s\n", strerror(err));
    return 1;
  }
  printf("measured %llu %llu\n", (unsigned long long)waited[0], (unsigned long long)waited[1]);
  return 0;
}

/* prof.mutex_app switched at run time: a first round with it off (profile on), a second with it
 * on; the profile must show only contend_beta (the second round's function). */
static int run_toggle(const char* dir) {
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, alpha_main, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  bool on = true;
  int err = ctl()("prof.mutex_app", NULL, NULL, &on, sizeof on);
  if (err) {
    fprintf(stderr, "prof.mutex_app: %s\n", strerror(err));
    return 1;
  }
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, beta_main, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  char path[4096];
  snprintf(path, sizeof path, "%s/toggle.pb.gz", dir);
  const char* p = path;
  err = ctl()("prof.mutex.dump", NULL, NULL, &p, sizeof p);
  if (err) {
    fprintf(stderr, "prof.mutex.dump: %s\n", strerror(err));
    return 1;
  }
  printf("measured %llu %llu\n", (unsigned long long)waited[0], (unsigned long long)waited[1]);
  return 0;
}

static void* hammer(void* arg) {
  (void)arg;
  void* keep[64] = {0};
  for (int i = 0; i < 200000; i++) {
    int k = i & 63;
    free(keep[k]);
    keep[k] = malloc(16 + (size_t)(i % 512));
  }
  for (int k = 0; k < 64; k++)
    free(keep[k]);
  return NULL;
}

static int run_alloc(const char* dir) {
  pthread_t th[8];
  for (int i = 0; i < 8; i++)
    pthread_create(&th[i], NULL, hammer, NULL);
  for (int i = 0; i < 8; i++)
    pthread_join(th[i], NULL);
  char path[4096];
  snprintf(path, sizeof path, "%s/alloc.pb.gz", dir);
  const char* p = path;
  int err = ctl()("prof.mutex.dump", NULL, NULL, &p, sizeof p);
  if (err) {
    fprintf(stderr, "prof.mutex.dump: %s\n", strerror(err));
    return 1;
  }
  uint64_t n = 0, lost = 0;
  size_t len = sizeof n;
  ctl()("stats.contentions", &n, &len, NULL, 0);
  ctl()("stats.contentions_lost", &lost, &len, NULL, 0);
  printf("contentions %llu lost %llu\n", (unsigned long long)n, (unsigned long long)lost);
  return 0;
}

static void* waiter(void* arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static int run_fork(void) {
  pthread_mutex_lock(&mu);
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, waiter, NULL);
  spin_ns(50000000); /* let them block */
  pid_t pid = fork();
  if (pid == 0) {
    pthread_mutex_init(&mu, NULL);
    pthread_mutex_lock(&mu);
    void* p = malloc(1000);
    free(p);
    pthread_mutex_unlock(&mu);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "child status %d\n", st);
    return 1;
  }
  printf("fork ok\n");
  return 0;
}

static int run_exit(void) {
  pthread_mutex_lock(&mu);
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, waiter, NULL);
  spin_ns(50000000);
  printf("exiting\n");
  fflush(stdout);
  exit(0); /* the waiters are still blocked */
}

int main(int argc, char** argv) {
  if (argc >= 3 && strcmp(argv[1], "app") == 0) return run_app(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "alloc") == 0) return run_alloc(argv[2]);
  if (argc >= 3 && strcmp(argv[1], "toggle") == 0) return run_toggle(argv[2]);
  if (argc >= 2 && strcmp(argv[1], "fork") == 0) return run_fork();
  if (argc >= 2 && strcmp(argv[1], "exit") == 0) return run_exit();
  fprintf(stderr, "usage: it_mutex app|toggle|alloc DIR | fork | exit\n");
  return 2;
}
