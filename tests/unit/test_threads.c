/* The thread snapshot (mprof_threads.h) inside one process: threads blocked in read(2) are walked
 * from outside and named with their call; a spinning thread is taken by the signal; the heap per
 * thread follows the samples; a program's own handler for the signal makes the snapshot EBUSY. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mprof_core.h"
#include "mprof_threads.h"

#if defined(__x86_64__)

static int pipefd[2];
static atomic_int stop;
static atomic_int started;
static _Atomic pid_t tids[4];

/* Whether one of the return addresses lies in fn's first `len` bytes (generous: sanitizers make
 * functions longer). */
static bool stack_has(const mprof_thread_rec_t* r, uintptr_t fn, uintptr_t len) {
  for (uint32_t i = 0; i < r->npcs; i++) {
    uintptr_t pc = r->pcs[i] - 1;
    if (pc >= fn && pc < fn + len) return true;
  }
  return false;
}

static const mprof_thread_rec_t* find(const mprof_threads_profile_t* p, pid_t tid) {
  for (size_t i = 0; i < p->nrecs; i++)
    if (p->recs[i].tid == tid) return &p->recs[i];
  return NULL;
}

static bool in_call(pid_t tid) {
  char path[64], buf[16] = "";
  snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
  FILE* f = fopen(path, "r");
  if (f == NULL) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strncmp(buf, "running", 7) != 0;
}

__attribute__((noinline)) static void wait_in_read(void) {
  char c;
  while (read(pipefd[0], &c, 1) < 0 && errno == EINTR) {
  }
  __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void spin_here(void) {
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
  }
  __asm__ volatile("" ::: "memory");
}

static void* reader(void* arg) {
  int k = (int)(intptr_t)arg;
  tids[k] = gettid();
  /* the heap: 2000 bytes allocated by this thread, 1000 of them freed again */
  mprof_sample_t a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  mprof__threads_note_alloc(&a, 1000);
  mprof__threads_note_alloc(&b, 1000 * (k + 1));
  mprof__threads_note_end(&a, 1000, false);
  atomic_fetch_add(&started, 1);
  wait_in_read();
  mprof__threads_exit();
  return NULL;
}

static void* spinner(void* arg) {
  (void)arg;
  tids[3] = gettid();
  atomic_fetch_add(&started, 1);
  spin_here();
  return NULL;
}

static void program_handler(int sig) {
  (void)sig;
}

static void test_program_handler_is_never_replaced(void** state) {
  (void)state;
  int sig = SIGRTMAX - 7;
  struct sigaction sa, now;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = program_handler;
  assert_int_equal(sigaction(sig, &sa, NULL), 0);
  mprof_threads_profile_t p;
  assert_int_equal(mprof__threads_snapshot(&p, 64), EBUSY);
  assert_int_equal(sigaction(sig, NULL, &now), 0);
  assert_ptr_equal(now.sa_handler, program_handler);
  sa.sa_handler = SIG_DFL;
  assert_int_equal(sigaction(sig, &sa, NULL), 0);
}

static void test_snapshot_of_every_thread(void** state) {
  (void)state;
  assert_int_equal(pipe(pipefd), 0);
  pthread_t th[4];
  for (int k = 0; k < 3; k++)
    assert_int_equal(pthread_create(&th[k], NULL, k < 2 ? reader : spinner, (void*)(intptr_t)k), 0);
  while (atomic_load(&started) < 3) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  for (int k = 0; k < 2; k++) {
    while (!in_call(tids[k])) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }

  mprof_threads_profile_t p;
  assert_int_equal(mprof__threads_snapshot(&p, 64), 0);
  assert_true(p.nrecs >= 4); /* this thread, two readers, the spinner */
  const mprof_thread_rec_t* self = find(&p, gettid());
  assert_non_null(self);
  assert_string_equal(self->state, "running");
  for (int k = 0; k < 2; k++) {
    const mprof_thread_rec_t* r = find(&p, tids[k]);
    assert_non_null(r);
    assert_string_equal(r->state, "read");
    assert_true(stack_has(r, (uintptr_t)wait_in_read, 512));
    assert_true(stack_has(r, (uintptr_t)reader, 1024));
    assert_int_equal(r->alloc_bytes, 1000 + 1000 * (k + 1));
    assert_int_equal(r->inuse_bytes, 1000 * (k + 1));
  }
  const mprof_thread_rec_t* sp = find(&p, tids[3]);
  assert_non_null(sp);
#if !defined(__SANITIZE_THREAD__) /* TSan holds signals back until a thread calls into it */
  assert_string_equal(sp->state, "running");
  assert_true(stack_has(sp, (uintptr_t)spin_here, 512));
  assert_true(stack_has(sp, (uintptr_t)spinner, 512));
  uint64_t pause, total;
  mprof__threads_last_costs(&pause, &total);
  assert_true(pause > 0);
  assert_true(total >= pause);
#endif
  mprof__threads_snapshot_free(&p);
  assert_null(p.recs);

  /* The readers end: their ids leave the heap table, so a later snapshot does not show them. */
  atomic_store(&stop, 1);
  close(pipefd[1]);
  for (int k = 0; k < 3; k++)
    pthread_join(th[k], NULL);
  assert_int_equal(mprof__threads_snapshot(&p, 64), 0);
  for (int k = 0; k < 2; k++)
    assert_null(find(&p, tids[k]));
  mprof__threads_snapshot_free(&p);
  close(pipefd[0]);
}

int main(void) {
  mprof__opts_default(&mprof__opts);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_program_handler_is_never_replaced),
      cmocka_unit_test(test_snapshot_of_every_thread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

#else
int main(void) {
  return 0; /* x86-64 only */
}
#endif
