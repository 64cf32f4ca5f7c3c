/* A program for the mprof command's tests, run under `mprof run`. Modes:
 *
 *   clean          allocates and frees everything, uses no stdio: nothing is in use at exit
 *   leak           leaks 4 MiB in 1 KiB blocks from leak_site
 *   grow DIR       keeps 1 MiB in grow_site, dumps DIR/a.pb.gz, keeps 8 MiB more, dumps
 *                  DIR/b.pb.gz (through mprof_ctl, looked up with dlsym)
 *   exit N         prints "tool_prog: exit N" and exits with status N
 *   kill           kills itself with SIGTERM
 *   threads        threads named worker-a and worker-b leak 1 MiB and 3 MiB in 4 KiB blocks
 *   hold           leaks 4 MiB from leak_site, prints "ready", then allocates and frees a small
 *                  block every 10 ms until a signal ends it
 *   stats          prints the reconciliation control names, one "name value" per line */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*ctl_fn)(const char*, void*, size_t*, void*, size_t);

static ctl_fn ctl(void) {
  ctl_fn f;
  *(void**)&f = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (f == NULL) {
    fprintf(stderr, "tool_prog: not running under libmprof.so\n");
    exit(3);
  }
  return f;
}

static volatile uintptr_t sink;

__attribute__((noinline)) static void churn_site(void) {
  for (int i = 0; i < 20000; i++) {
    char* p = malloc(1024);
    p[0] = (char)i;
    sink += (uintptr_t)p[0];
    free(p);
  }
}

__attribute__((noinline)) static void leak_site(void) {
  for (int i = 0; i < 4096; i++) {
    char* p = malloc(1024);
    memset(p, 1, 1024);
    sink ^= (uintptr_t)p;
  }
}

__attribute__((noinline)) static void** grow_site(void** list, size_t n) {
  for (size_t i = 0; i < n; i++) {
    void** node = malloc(4096);
    node[0] = list;
    list = node;
  }
  return list;
}

static void* worker(void* arg) {
  size_t mib = (size_t)(uintptr_t)arg;
  pthread_setname_np(pthread_self(), mib == 1 ? "worker-a" : "worker-b");
  for (size_t i = 0; i < mib * 256; i++) {
    char* p = malloc(4096);
    p[0] = 1;
    sink ^= (uintptr_t)p;
  }
  return NULL;
}

static void dump(const char* dir, const char* name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  const char* p = path;
  int err = ctl()("prof.dump", NULL, NULL, &p, sizeof p);
  if (err != 0) {
    fprintf(stderr, "tool_prog: prof.dump %s: %s\n", path, strerror(err));
    exit(3);
  }
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "clean";
  if (strcmp(mode, "clean") == 0) {
    churn_site();
    return 0;
  }
  if (strcmp(mode, "leak") == 0) {
    churn_site();
    leak_site();
    return 0;
  }
  if (strcmp(mode, "grow") == 0 && argc > 2) {
    void** list = grow_site(NULL, 256);
    dump(argv[2], "a.pb.gz");
    list = grow_site(list, 2048);
    churn_site();
    dump(argv[2], "b.pb.gz");
    sink ^= (uintptr_t)list;
    return 0;
  }
  if (strcmp(mode, "exit") == 0 && argc > 2) {
    printf("tool_prog: exit %s\n", argv[2]);
    return atoi(argv[2]);
  }
  if (strcmp(mode, "threads") == 0) {
    pthread_t a, b;
    pthread_create(&a, NULL, worker, (void*)(uintptr_t)1);
    pthread_join(a, NULL);
    pthread_create(&b, NULL, worker, (void*)(uintptr_t)3);
    pthread_join(b, NULL);
    return 0;
  }
  if (strcmp(mode, "hold") == 0) {
    leak_site();
    printf("ready\n");
    fflush(stdout);
    for (;;) {
      char* p = malloc(64);
      sink += (uintptr_t)p;
      free(p);
      usleep(10000);
    }
  }
  if (strcmp(mode, "kill") == 0) {
    kill(getpid(), SIGTERM);
    return 0;
  }
  if (strcmp(mode, "stats") == 0) {
    leak_site();
    const char* names[] = {
        "stats.estimated_bytes_in_use",   "stats.process_rss",      "stats.allocator.committed",
        "stats.allocator.peak_committed", "stats.allocator.rss",    "stats.allocator.peak_rss",
        "stats.allocator.allocated",      "stats.allocator.active", "stats.allocator.resident"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
      uint64_t v = 0;
      size_t len = sizeof v;
      int err = ctl()(names[i], &v, &len, NULL, 0);
      printf("%s %llu %d\n", names[i], (unsigned long long)v, err);
    }
    return 0;
  }
  fprintf(stderr, "tool_prog: unknown mode %s\n", mode);
  return 2;
}
