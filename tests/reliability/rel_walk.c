/* The stack walk and the reading of loaded objects must never hang or fault the program
 * (LD_PRELOAD, every allocation sampled; docs/RELIABILITY.md "Stack walks").
 *
 *   rel_walk forkstorm LIB   threads allocate while two threads fork 1000 children; each child
 *                            allocates, loads and calls LIB, unloads it and exits. A child that
 *                            has not exited 30 s after its fork is killed: exit 1.
 *   rel_walk badfp           the saved frame pointer of a caller is overwritten with garbage
 *                            (0x4141414141414141, an unmapped address, an unreadable page) while
 *                            malloc is called in a loop: the program must run to its end.
 *   rel_walk overwrite A B   loads a copy of A, calls it, then overwrites the copy's file in
 *                            place with B (truncate + write, as `cp B copy` does) while it keeps
 *                            writing dumps: every dump must succeed, and nothing may fault.
 *
 * Exit status 0 on success, 1 on a failure (with a message). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile uintptr_t sink;

__attribute__((noinline)) static void* alloc_at(size_t n) {
  void* p = malloc(n);
  __asm__ volatile("" ::: "memory");
  sink += (uintptr_t)p;
  return p;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * forkstorm
 * ------------------------------------------------------------------------------------------- */
#define FORKS_PER_THREAD 500
#define ALLOCATORS 3
#define HANG_MS 30000 /* generous: a child does a few hundred allocations and one dlopen */

static atomic_int stop_allocating;
static atomic_int hung;
static const char* storm_lib;

static void* allocator(void* arg) {
  (void)arg;
  void* keep[64] = {0};
  for (unsigned i = 0; !atomic_load(&stop_allocating); i++) {
    free(keep[i % 64]);
    keep[i % 64] = alloc_at(16 + (i * 37) % 4000);
  }
  for (int i = 0; i < 64; i++)
    free(keep[i]);
  return NULL;
}

static void child(void) {
  for (int i = 0; i < 200; i++)
    free(alloc_at(32 + (size_t)i));
  void* h = dlopen(storm_lib, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) _exit(3);
  void* (*fn)(size_t);
  *(void**)&fn = dlsym(h, "rel_maplib_alloc");
  if (fn == NULL) _exit(4);
  free(fn(100));
  dlclose(h);
  for (int i = 0; i < 50; i++)
    free(alloc_at(64));
  _exit(0);
}

static void* forker(void* arg) {
  (void)arg;
  for (int i = 0; i < FORKS_PER_THREAD && !atomic_load(&hung); i++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("rel_walk: fork");
      atomic_fetch_add(&hung, 1);
      break;
    }
    if (pid == 0) child();
    int status = 0;
    long waited = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && waited < HANG_MS) {
      sleep_ms(1);
      waited++;
    }
    if (r == 0) {
      fprintf(stderr, "rel_walk: child %d of fork %d still running after %d s: killed\n", (int)pid,
              i, HANG_MS / 1000);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      atomic_fetch_add(&hung, 1);
      break;
    }
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "rel_walk: child of fork %d ended with status %#x\n", i, status);
      atomic_fetch_add(&hung, 1);
      break;
    }
  }
  return NULL;
}

static int forkstorm(const char* lib) {
  storm_lib = lib;
  pthread_t a[ALLOCATORS], f[2];
  for (int i = 0; i < ALLOCATORS; i++)
    pthread_create(&a[i], NULL, allocator, NULL);
  for (int i = 0; i < 2; i++)
    pthread_create(&f[i], NULL, forker, NULL);
  for (int i = 0; i < 2; i++)
    pthread_join(f[i], NULL);
  atomic_store(&stop_allocating, 1);
  for (int i = 0; i < ALLOCATORS; i++)
    pthread_join(a[i], NULL);
  if (atomic_load(&hung) != 0) return 1;
  printf("rel_walk: %d children forked, none hung\n", 2 * FORKS_PER_THREAD);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * badfp: the frame pointer this function saved (its caller's) is overwritten, so that every
 * walk from the mallocs below meets it when it steps into the caller (built with frame pointers:
 * the caller's CFA is computed from it).
 * ------------------------------------------------------------------------------------------- */
__attribute__((noinline)) static int with_bad_saved_fp(uintptr_t garbage) {
  uintptr_t* saved = __builtin_frame_address(0); /* *saved: the caller's rbp */
  uintptr_t keep = *saved;
  *(volatile uintptr_t*)saved = garbage;
  int ok = 1;
  for (int i = 0; i < 2000; i++) {
    void* p = alloc_at(24 + (size_t)(i % 200));
    if (p == NULL) ok = 0;
    free(p);
  }
  *(volatile uintptr_t*)saved = keep;
  return ok;
}

__attribute__((noinline)) static int caller_of_bad_fp(uintptr_t garbage) {
  int ok = with_bad_saved_fp(garbage);
  __asm__ volatile("" ::: "memory");
  return ok;
}

/* Runs on a thread whose stack is followed by an unreadable page and then an unmapped one, so
 * that garbage frame pointers can point just above the stack, where a walk that believed them
 * would read. */
#define BADFP_STACK (256 * 1024)
static char* badfp_top; /* one past the stack */
static atomic_int badfp_failed;

static void* badfp_thread(void* arg) {
  (void)arg;
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t values[] = {
      0x4141414141414141ull,
      (uintptr_t)badfp_top + 64,                             /* the unreadable page */
      (uintptr_t)badfp_top + (uintptr_t)page + 64,           /* the unmapped page */
      (uintptr_t)__builtin_frame_address(0) + 8,             /* inside the stack, no frame */
      (uintptr_t)__builtin_frame_address(0) + 4096 * 16 + 4, /* misaligned, beyond the top */
      1,
  };
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    if (!caller_of_bad_fp(values[i])) atomic_store(&badfp_failed, 1);
  }
  return NULL;
}

static int badfp(void) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char* m = mmap(NULL, BADFP_STACK + 3 * page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return 1;
  mprotect(m, page, PROT_NONE); /* the usual guard page below */
  badfp_top = m + page + BADFP_STACK;
  mprotect(badfp_top, page, PROT_NONE); /* unreadable */
  munmap(badfp_top + page, page);       /* unmapped */
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, m + page, BADFP_STACK);
  pthread_t t;
  if (pthread_create(&t, &attr, badfp_thread, NULL) != 0) return 1;
  pthread_join(t, NULL);
  /* And on the main thread, whose stack is the highest mapping: just above it nothing is mapped. */
  uintptr_t main_values[] = {0x4141414141414141ull,
                             ((uintptr_t)__builtin_frame_address(0) | 0xfffff) + 1 + 4096 * 64};
  for (size_t i = 0; i < 2; i++) {
    if (!caller_of_bad_fp(main_values[i])) atomic_store(&badfp_failed, 1);
  }
  if (atomic_load(&badfp_failed)) {
    fprintf(stderr, "rel_walk: malloc failed\n");
    return 1;
  }
  printf("rel_walk: 8 garbage frame pointers, no fault\n");
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * overwrite
 * ------------------------------------------------------------------------------------------- */
static int copy_into(const char* from, const char* to, int flags) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  int out = open(to, O_WRONLY | O_CLOEXEC | flags, 0755);
  if (in < 0 || out < 0) return -1;
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) {
    if (write(out, buf, (size_t)n) != n) return -1;
  }
  close(in);
  return close(out);
}

static int overwrite(const char* lib_a, const char* lib_b) {
  int (*ctl)(const char*, void*, size_t*, void*, size_t);
  *(void**)&ctl = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (ctl == NULL) {
    fprintf(stderr, "rel_walk: mprof_ctl not found (run with LD_PRELOAD)\n");
    return 1;
  }
  const char* dir = getenv("REL_WALK_DIR");
  if (dir == NULL) dir = "/tmp";
  char copy[4096], dump[4096];
  snprintf(copy, sizeof copy, "%s/rel_walk_lib_%d.so", dir, (int)getpid());
  snprintf(dump, sizeof dump, "%s/rel_walk_%d.pb.gz", dir, (int)getpid());
  if (copy_into(lib_a, copy, O_CREAT | O_TRUNC) != 0) {
    perror("rel_walk: copy");
    return 1;
  }
  void* h = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "rel_walk: %s\n", dlerror());
    return 1;
  }
  void* (*fn)(size_t);
  *(void**)&fn = dlsym(h, "rel_maplib_alloc");
  void* kept = fn(1000); /* a sampled block whose stack runs through the library */
  int failed = 0;
  for (int round = 0; round < 40 && !failed; round++) {
    if (round == 10 || round == 25) {
      /* In place: same inode, truncated then rewritten, as cp does. */
      if (copy_into(round == 10 ? lib_b : lib_a, copy, O_TRUNC) != 0) {
        perror("rel_walk: overwrite");
        return 1;
      }
    }
    if (round == 20 && truncate(copy, 0) != 0) {
      perror("rel_walk: truncate");
      return 1;
    }
    const char* path = dump;
    int err = ctl("prof.dump", NULL, NULL, &path, sizeof path);
    if (err != 0) {
      fprintf(stderr, "rel_walk: prof.dump failed in round %d: %s\n", round, strerror(err));
      failed = 1;
    }
  }
  free(kept);
  unlink(dump);
  unlink(copy);
  if (failed) return 1;
  printf("rel_walk: 40 dumps with the library overwritten on disk, no fault\n");
  /* The library's own code and data pages now read the new file: its destructors must not run
   * (a program without the profiler would crash there too). */
  fflush(stdout);
  _exit(0);
}

int main(int argc, char** argv) {
  if (argc >= 3 && strcmp(argv[1], "forkstorm") == 0) return forkstorm(argv[2]);
  if (argc >= 2 && strcmp(argv[1], "badfp") == 0) return badfp();
  if (argc >= 4 && strcmp(argv[1], "overwrite") == 0) return overwrite(argv[2], argv[3]);
  fprintf(stderr, "usage: rel_walk forkstorm LIB | badfp | overwrite LIB_A LIB_B\n");
  return 2;
}
