/* Re-entry, signals, thread teardown and exit under libmprof.so (LD_PRELOAD), driven by
 * rel_exit.sh, which reads the final profile and compares it with the counts printed here
 * ("SITE ALLOC_OBJECTS INUSE_OBJECTS" per line).
 *
 *   handler    a SIGUSR1 handler (on an alternate signal stack every other time) allocates,
 *              reallocates, frees and dumps; the signal is raised synchronously, so the thread
 *              is never inside malloc when it arrives (malloc is not async-signal-safe)
 *   atexit     an atexit handler frees everything main kept, allocates blocks that stay live,
 *              dumps, and registers a second handler (during exit) that allocates too; main
 *              returns. The final profile shows the heap after the program's own handlers.
 *   atexit-exit  the same, but main calls exit(0) (which a glue may interpose)
 *   tls        threads free their blocks from a C++-style thread_local destructor
 *              (__cxa_thread_atexit_impl), a pthread key destructor and a C11 tss destructor,
 *              and allocate (and free) inside those destructors
 *   multiexit  eight threads call exit() at the same moment while another one dumps in a loop
 *   exitdump   main calls exit() while other threads allocate and dump
 *
 * Usage: rel_exit MODE DIR */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <unistd.h>

typedef int (*ctl_fn)(const char*, void*, size_t*, void*, size_t);
static ctl_fn ctl;
static const char* dir;
static _Atomic int failures;

static void fail(const char* what) {
  fprintf(stderr, "rel_exit: %s\n", what);
  atomic_fetch_add(&failures, 1);
}

static int dump(const char* name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  const char* p = path;
  return ctl("prof.dump", NULL, NULL, &p, sizeof p);
}

#define SITE(name)                                                                                 \
  __attribute__((noinline)) static void* name(size_t n) {                                          \
    char* p = malloc(n);                                                                           \
    if (p == NULL)                                                                                 \
      fail(#name ": malloc failed");                                                               \
    else                                                                                           \
      p[0] = 1;                                                                                    \
    return p;                                                                                      \
  }

/* --- handler ---------------------------------------------------------------------------------- */
SITE(site_in_handler)
#define HANDLER_RUNS 200
#define HANDLER_KEEP 3
static void* handler_kept[HANDLER_RUNS * HANDLER_KEEP];
static volatile sig_atomic_t handler_runs;

static void on_usr1(int sig) {
  (void)sig;
  int saved = errno;
  int run = handler_runs;
  for (int i = 0; i < HANDLER_KEEP; i++)
    handler_kept[run * HANDLER_KEEP + i] = site_in_handler(64 + (size_t)i);
  void* tmp = site_in_handler(1000);
  tmp = realloc(tmp, 5000);
  free(tmp);
  if (run % 50 == 0 && dump("in-handler.pb.gz") != 0) fail("prof.dump in a signal handler");
  handler_runs = run + 1;
  errno = saved;
}

static int mode_handler(void) {
  static char altstack[1 << 16];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) fail("sigaltstack");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < HANDLER_RUNS; i++) {
    sa.sa_flags = i % 2 ? SA_ONSTACK : 0;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
  }
  if (handler_runs != HANDLER_RUNS) fail("the handler did not run every time");
  /* The handler's live blocks stay live through exit. The other frees are counted already. */
  printf("site_in_handler %d %d\n", HANDLER_RUNS * (HANDLER_KEEP + 1), HANDLER_RUNS * HANDLER_KEEP);
  return 0;
}

/* --- atexit ------------------------------------------------------------------------------------ */
SITE(site_main)
SITE(site_atexit)
SITE(site_atexit_nested)
#define MAIN_BLOCKS 500
#define EXIT_BLOCKS 300
static void* main_kept[MAIN_BLOCKS];
static void* exit_kept[2 * EXIT_BLOCKS];

static void nested_handler(void) {
  for (int i = 0; i < EXIT_BLOCKS; i++)
    exit_kept[EXIT_BLOCKS + i] = site_atexit_nested(48);
}

static void exit_handler(void) {
  for (int i = 0; i < MAIN_BLOCKS; i++)
    free(main_kept[i]);
  for (int i = 0; i < EXIT_BLOCKS; i++)
    exit_kept[i] = site_atexit(80);
  if (dump("in-atexit.pb.gz") != 0) fail("prof.dump in an atexit handler");
  if (atexit(nested_handler) != 0) fail("atexit during exit");
  if (failures != 0) _exit(1);
}

static int mode_atexit(void) {
  for (int i = 0; i < MAIN_BLOCKS; i++)
    main_kept[i] = site_main(200);
  if (atexit(exit_handler) != 0) fail("atexit");
  printf("site_main %d 0\nsite_atexit %d %d\nsite_atexit_nested %d %d\n", MAIN_BLOCKS, EXIT_BLOCKS,
         EXIT_BLOCKS, EXIT_BLOCKS, EXIT_BLOCKS);
  return 0;
}

/* --- tls ---------------------------------------------------------------------------------------- */
SITE(site_thread)
SITE(site_in_dtor)
#define TLS_THREADS 12
#define TLS_BLOCKS 50
extern int __cxa_thread_atexit_impl(void (*fn)(void*), void* arg, void* dso);
extern void* __dso_handle;
static pthread_key_t key;
static tss_t tss;
static _Atomic int dtor_runs;

static void free_list(void* arg) {
  void** list = arg;
  for (int i = 0; i < TLS_BLOCKS; i++)
    free(list[i]);
  void* tmp = site_in_dtor(333); /* allocation in a destructor: sampled or not, freed */
  free(tmp);
  free(list);
  atomic_fetch_add(&dtor_runs, 1);
}

static void* tls_thread(void* arg) {
  uintptr_t kind = (uintptr_t)arg % 3;
  void** list = malloc(TLS_BLOCKS * sizeof(void*));
  for (int i = 0; i < TLS_BLOCKS; i++)
    list[i] = site_thread(128);
  if (kind == 0)
    __cxa_thread_atexit_impl(free_list, list, &__dso_handle);
  else if (kind == 1)
    pthread_setspecific(key, list);
  else
    tss_set(tss, list);
  return NULL;
}

static int mode_tls(void) {
  pthread_key_create(&key, free_list);
  tss_create(&tss, free_list);
  pthread_t t[TLS_THREADS];
  for (uintptr_t i = 0; i < TLS_THREADS; i++)
    pthread_create(&t[i], NULL, tls_thread, (void*)i);
  for (int i = 0; i < TLS_THREADS; i++)
    pthread_join(t[i], NULL);
  if (dtor_runs != TLS_THREADS) fail("not every thread destructor ran");
  printf("site_thread %d 0\n", TLS_THREADS * TLS_BLOCKS);
  return 0;
}

/* --- multiexit / exitdump --------------------------------------------------------------------- */
SITE(site_live)
SITE(site_busy)
#define LIVE_BLOCKS 1000
static void* live_kept[LIVE_BLOCKS];
static pthread_barrier_t barrier;

static void* exiter(void* arg) {
  (void)arg;
  pthread_barrier_wait(&barrier);
  exit(0);
}

static void* looping_dumper(void* arg) {
  (void)arg;
  for (;;)
    dump("loop.pb.gz");
  return NULL;
}

static void* busy_allocator(void* arg) {
  (void)arg;
  for (;;) {
    void* p = site_busy(100);
    free(p);
  }
  return NULL;
}

static int mode_multiexit(bool all_threads) {
  for (int i = 0; i < LIVE_BLOCKS; i++)
    live_kept[i] = site_live(40);
  printf("site_live %d %d\n", LIVE_BLOCKS, LIVE_BLOCKS);
  fflush(stdout);
  pthread_t t;
  pthread_create(&t, NULL, looping_dumper, NULL);
  pthread_create(&t, NULL, busy_allocator, NULL);
  usleep(20000);
  if (!all_threads) exit(0);
  enum { EXITERS = 8 };
  pthread_barrier_init(&barrier, NULL, EXITERS + 1);
  for (int i = 0; i < EXITERS; i++)
    pthread_create(&t, NULL, exiter, NULL);
  pthread_barrier_wait(&barrier);
  exit(0);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: rel_exit handler|atexit|atexit-exit|tls|multiexit|exitdump DIR\n");
    return 2;
  }
  alarm(60); /* a deadlock ends in SIGALRM */
  dir = argv[2];
  void* sym = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (sym == NULL) {
    fprintf(stderr, "rel_exit: run under libmprof.so\n");
    return 2;
  }
  memcpy(&ctl, &sym, sizeof ctl);
  const char* mode = argv[1];
  int rc = 2;
  if (strcmp(mode, "handler") == 0)
    rc = mode_handler();
  else if (strcmp(mode, "atexit") == 0)
    rc = mode_atexit();
  else if (strcmp(mode, "atexit-exit") == 0) {
    mode_atexit();
    fflush(stdout);
    exit(failures != 0 ? 1 : 0);
  } else if (strcmp(mode, "tls") == 0)
    rc = mode_tls();
  else if (strcmp(mode, "multiexit") == 0)
    rc = mode_multiexit(true);
  else if (strcmp(mode, "exitdump") == 0)
    rc = mode_multiexit(false);
  fflush(stdout);
  return failures != 0 ? 1 : rc;
}
