/* First allocations (it_first.sh): each is sampled with the probability of its size, however
 * early it comes.
 *
 *   it_first threads OUT   the main thread's first allocation in main (64 MiB, first_main) and
 *                          the first allocation of each of 8 threads (8 MiB each, first_thread),
 *                          all kept; at any rate each is sampled (p = 1 - exp(-size/mean) ~ 1).
 *   it_first many OUT      1000 malloc(1000) in site_many, first thing in main: at
 *                          lg_prof_sample:0 exactly 1000 samples, even when a preloaded library
 *                          (libstdc++) allocated before the profiler's constructor.
 *
 * Then dumps a profile with mprof_ctl("prof.dump") to OUT. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((size_t)1 << 20)

static void* volatile keep[1024];

__attribute__((noinline)) static void first_main(void) {
  keep[0] = malloc(64 * MiB);
}

__attribute__((noinline)) static void first_thread(int i) {
  keep[1 + i] = malloc(8 * MiB);
}

static void* thread_main(void* arg) {
  first_thread((int)(long)arg);
  return NULL;
}

__attribute__((noinline)) static void site_many(void) {
  for (int i = 0; i < 1000; i++)
    keep[i] = malloc(1000);
}

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  if (strcmp(argv[1], "threads") == 0) {
    first_main();
    pthread_t t[8];
    /* Each thread is created and joined before the next, so its stack (allocated by
     * pthread_create, not by malloc) is all it has before its first malloc. */
    for (long i = 0; i < 8; i++) {
      if (pthread_create(&t[i], NULL, thread_main, (void*)i) != 0) return 1;
      pthread_join(t[i], NULL);
    }
  } else {
    site_many();
  }
  int (*ctl)(const char*, void*, size_t*, void*, size_t);
  *(void**)&ctl = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (ctl == NULL) return 2;
  const char* path = argv[2];
  return ctl("prof.dump", NULL, NULL, &path, sizeof path) != 0;
}
