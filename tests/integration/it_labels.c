/* Programs with known heaps for the age, peak, thread-label and trigger tests (it_labels.sh),
 * run at lg_prof_sample:0 so that every figure is exact. mprof_ctl is looked up with dlsym.
 *
 *   it_labels age PATH1 PATH2   site_old: 10 x 1000 B, 4 freed; 5 epoch writes;
 *                               site_mid: 20 x 500 B; 3 epoch writes; site_new: 7 x 300 B;
 *                               dump to PATH1 (ages 8, 3, 0), dump to PATH2 (ages 10, 5, 2)
 *   it_labels peak PATH         site_a 16 x 64 KiB kept; site_b 10 MiB, freed; site_c
 *                               2 x 1 MiB kept; site_d 4 MiB, freed; prof.peak.dump to PATH.
 *                               Peak: site_a + site_b; at exit: site_a + site_c
 *   it_labels threads PATH      site_thread: 30 x 1000 B on "worker-a", 50 x 1000 B on
 *                               "worker-b", 20 x 1000 B on an unnamed thread (its tid printed),
 *                               10 x 1000 B on the main thread; dump to PATH
 *   it_labels signal DIR        site_kept: 100 x 1000 B; writes DIR/ready; then allocates and
 *                               frees 64 B every millisecond until DIR/stop exists (20 s at most)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

typedef int (*ctl_fn)(const char*, void*, size_t*, void*, size_t);
static ctl_fn ctl;
static void* volatile keep[1000];
static size_t nkeep;

static void must(int err, const char* what) {
  if (err != 0) {
    fprintf(stderr, "%s: error %d\n", what, err);
    exit(2);
  }
}

static void epoch(void) {
  uint64_t e = 1;
  must(ctl("epoch", NULL, NULL, &e, sizeof e), "epoch");
}

static void dump(const char* name, const char* path) {
  must(ctl(name, NULL, NULL, &path, sizeof path), name);
}

__attribute__((noinline)) static void site_old(void) {
  void* p[10];
  for (int i = 0; i < 10; i++)
    p[i] = malloc(1000);
  for (int i = 0; i < 10; i++) {
    if (i < 4)
      free(p[i]);
    else
      keep[nkeep++] = p[i];
  }
}

__attribute__((noinline)) static void site_mid(void) {
  for (int i = 0; i < 20; i++)
    keep[nkeep++] = malloc(500);
}

__attribute__((noinline)) static void site_new(void) {
  for (int i = 0; i < 7; i++)
    keep[nkeep++] = malloc(300);
}

static void run_age(const char* p1, const char* p2) {
  site_old();
  for (int i = 0; i < 5; i++)
    epoch();
  site_mid();
  for (int i = 0; i < 3; i++)
    epoch();
  site_new();
  dump("prof.dump", p1);
  dump("prof.dump", p2);
}

__attribute__((noinline)) static void site_a(void) {
  for (int i = 0; i < 16; i++)
    keep[nkeep++] = malloc(64 * KiB);
}

__attribute__((noinline)) static void* site_b(void) {
  return malloc(10 * MiB);
}

__attribute__((noinline)) static void site_c(void) {
  for (int i = 0; i < 2; i++)
    keep[nkeep++] = malloc(MiB);
}

__attribute__((noinline)) static void* site_d(void) {
  return malloc(4 * MiB);
}

static void run_peak(const char* path) {
  site_a();
  void* volatile b = site_b();
  free(b);
  site_c();
  void* volatile d = site_d();
  free(d);
  dump("prof.peak.dump", path);
}

__attribute__((noinline)) static void site_thread(int n) {
  for (int i = 0; i < n; i++)
    keep[__atomic_fetch_add(&nkeep, 1, __ATOMIC_RELAXED)] = malloc(1000);
}

static void* worker(void* arg) {
  const char* name = arg;
  if (name != NULL) pthread_setname_np(pthread_self(), name);
  int n = name == NULL ? 20 : strcmp(name, "worker-a") == 0 ? 30 : 50;
  if (name == NULL) printf("unnamed %ld\n", (long)syscall(SYS_gettid));
  site_thread(n);
  return NULL;
}

static void run_threads(const char* path) {
  static char a[] = "worker-a", b[] = "worker-b";
  char* names[3] = {a, b, NULL};
  for (int i = 0; i < 3; i++) {
    pthread_t t;
    must(pthread_create(&t, NULL, worker, names[i]), "pthread_create");
    must(pthread_join(t, NULL), "pthread_join");
  }
  site_thread(10);
  fflush(stdout);
  dump("prof.dump", path);
}

__attribute__((noinline)) static void site_kept(void) {
  for (int i = 0; i < 100; i++)
    keep[nkeep++] = malloc(1000);
}

__attribute__((noinline)) static void site_loop(void) {
  void* volatile p = malloc(64);
  free(p);
}

static void run_signal(const char* dir) {
  char ready[4096], stop[4096];
  snprintf(ready, sizeof ready, "%s/ready", dir);
  snprintf(stop, sizeof stop, "%s/stop", dir);
  site_kept();
  FILE* f = fopen(ready, "w");
  if (f == NULL) exit(2);
  fclose(f);
  for (int i = 0; i < 20000 && access(stop, F_OK) != 0; i++) {
    site_loop();
    usleep(1000);
  }
}

int main(int argc, char** argv) {
  ctl = (ctl_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (ctl == NULL || argc < 3) {
    fprintf(stderr, "usage: it_labels age|peak|threads|signal ARGS (under libmprof.so)\n");
    return 2;
  }
  if (strcmp(argv[1], "age") == 0 && argc == 4)
    run_age(argv[2], argv[3]);
  else if (strcmp(argv[1], "peak") == 0)
    run_peak(argv[2]);
  else if (strcmp(argv[1], "threads") == 0)
    run_threads(argv[2]);
  else if (strcmp(argv[1], "signal") == 0)
    run_signal(argv[2]);
  else
    return 2;
  return 0;
}
