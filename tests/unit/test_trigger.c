/* Dump triggers: prof_dump_signal (the handler only asks; the dump comes at the next slow path;
 * the previous handler is chained; other signals are left alone) and prof_dump_over (one dump,
 * the first time the threshold is reached). The core runs without an allocator: blocks are
 * fake addresses and the glue's slow path is called by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mprof.h"
#include "mprof_core.h"
#include "mprof_hooks.h"
#include "mprof_thread.h"

static const mprof_callbacks_t* cb;
static char dir[64];
static volatile sig_atomic_t old_calls;
static volatile int old_sig;
static struct sigaction usr2_before;

static void old_handler(int sig, siginfo_t* info, void* ctx) {
  (void)info;
  (void)ctx;
  old_calls++;
  old_sig = sig;
}

/* Files in dir whose names contain `part`. */
static int count_files(const char* part) {
  DIR* d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, part) != NULL) n++;
  closedir(d);
  return n;
}

static int setup(void** state) {
  (void)state;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = old_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR1, &sa, NULL) != 0) return -1;
  if (sigaction(SIGUSR2, NULL, &usr2_before) != 0) return -1;
  mprof_opts_t o;
  mprof__opts_default(&o);
  o.lg_prof_sample = 0;
  o.lg_prof_epoch = -1;
  strcpy(o.prof_dump_signal, "SIGUSR1");
  o.prof_dump_over = 10000;
  snprintf(dir, sizeof dir, "/tmp/mprof-test-trigger.XXXXXX");
  if (mkdtemp(dir) == NULL) return -1;
  snprintf(o.prof_prefix, sizeof o.prof_prefix, "%s/auto", dir);
  cb = mprof__init_with_opts(&o);
  return cb == NULL ? -1 : 0;
}

static void test_signal_dump_is_taken_at_the_next_slow_path_not_in_the_handler(void** state) {
  (void)state;
  mprof__thread.countdown = 1 << 20;
  raise(SIGUSR1);
  assert_int_equal(old_calls, 1); /* chained to the handler it replaced, with its signal */
  assert_int_equal(old_sig, SIGUSR1);
  assert_int_equal(mprof__thread.countdown, 0);  /* this thread's next allocation goes slow */
  assert_int_equal(count_files(".s0.pb.gz"), 0); /* nothing written by the handler */
  mprof__sample_decide(16);                      /* the glue's slow path */
  assert_int_equal(count_files(".s0.pb.gz"), 1);
  mprof__sample_decide(16); /* once per signal */
  assert_int_equal(count_files(".s"), 1);
  raise(SIGUSR1);
  mprof__sample_decide(16);
  assert_int_equal(count_files(".s1.pb.gz"), 1);
  assert_int_equal(old_calls, 2);
}

static void test_other_signals_keep_their_actions(void** state) {
  (void)state;
  struct sigaction now;
  assert_int_equal(sigaction(SIGUSR2, NULL, &now), 0);
  assert_ptr_equal((void*)(uintptr_t)now.sa_handler, (void*)(uintptr_t)usr2_before.sa_handler);
  assert_int_equal(now.sa_flags, usr2_before.sa_flags);
}

static void test_threshold_dumps_once(void** state) {
  (void)state;
  mprof_sample_t s[3];
  assert_int_equal(count_files(".o"), 0);
  cb->on_alloc(&s[0], (void*)0x10000, 6000);
  assert_int_equal(count_files(".o"), 0);
  errno = 4321;
  cb->on_alloc(&s[1], (void*)0x20000, 6000); /* 12000 >= 10000 */
  assert_int_equal(errno, 4321);
  assert_int_equal(count_files(".o0.pb.gz"), 1);
  cb->on_free(&s[1], (void*)0x20000);
  cb->on_alloc(&s[2], (void*)0x30000, 6000); /* crosses again */
  assert_int_equal(count_files(".o"), 1);
  cb->on_free(&s[0], (void*)0x10000);
  cb->on_free(&s[2], (void*)0x30000);
}

static int teardown(void** state) {
  (void)state;
  DIR* d = opendir(dir);
  if (d == NULL) return 0;
  struct dirent* e;
  char path[512];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_signal_dump_is_taken_at_the_next_slow_path_not_in_the_handler),
      cmocka_unit_test(test_other_signals_keep_their_actions),
      cmocka_unit_test(test_threshold_dumps_once),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
