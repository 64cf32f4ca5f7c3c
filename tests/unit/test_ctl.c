/* The control tree and the core behind it, driven through mprof_ctl and the glue callbacks
 * (no allocator: blocks are fake addresses). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mprof.h"
#include "mprof_core.h"
#include "mprof_hooks.h"
#include "mprof_mutex.h"
#include "mprof_thread.h"

#include <glob.h>

static const mprof_callbacks_t* cb;
static char dir[64];

static uint64_t stat_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  assert_int_equal(mprof_ctl(name, &v, &len, NULL, 0), 0);
  return v;
}

__attribute__((noinline)) static void site_a(mprof_sample_t* s, uintptr_t p, size_t n) {
  cb->on_alloc(s, (void*)p, n);
  __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void site_b(mprof_sample_t* s, uintptr_t p, size_t n) {
  cb->on_alloc(s, (void*)p, n);
  __asm__ volatile("" ::: "memory");
}

static int setup(void** state) {
  (void)state;
  mprof_opts_t o;
  mprof__opts_default(&o);
  o.lg_prof_sample = 0;
  snprintf(dir, sizeof dir, "/tmp/mprof-test-ctl.XXXXXX");
  if (mkdtemp(dir) == NULL) return -1;
  snprintf(o.prof_prefix, sizeof o.prof_prefix, "%s/auto", dir);
  cb = mprof__init_with_opts(&o);
  return cb == NULL ? -1 : 0;
}

static void test_version_reads_the_version_string(void** state) {
  (void)state;
  const char* v = NULL;
  size_t len = sizeof v;
  assert_int_equal(mprof_ctl("version", &v, &len, NULL, 0), 0);
  assert_string_equal(v, MPROF_VERSION_STRING);
  assert_int_equal(mprof_ctl("version", NULL, NULL, &v, sizeof v), EPERM);
}

static void test_unknown_names_are_enoent(void** state) {
  (void)state;
  uint64_t v;
  size_t len = sizeof v;
  assert_int_equal(mprof_ctl("no.such.name", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(mprof_ctl("opt.no_such_option", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(mprof_ctl("stats", &v, &len, NULL, 0), ENOENT);
  assert_int_equal(mprof_ctl(NULL, &v, &len, NULL, 0), ENOENT);
}

static void test_a_wrong_old_length_is_einval_after_copying_what_fits(void** state) {
  (void)state;
  uint64_t e = 0;
  size_t len = sizeof e;
  assert_int_equal(mprof_ctl("epoch", &e, &len, NULL, 0), 0);
  uint32_t small = 0xffffffff;
  len = sizeof small;
  assert_int_equal(mprof_ctl("epoch", &small, &len, NULL, 0), EINVAL);
  assert_int_equal(small, (uint32_t)e); /* little-endian low half */
  assert_int_equal(mprof_ctl("epoch", &e, NULL, NULL, 0), EINVAL);
}

static void test_opt_names_read_the_options_in_force(void** state) {
  (void)state;
  size_t lg = 99, len = sizeof lg;
  assert_int_equal(mprof_ctl("opt.lg_prof_sample", &lg, &len, NULL, 0), 0);
  assert_int_equal(lg, 0);
  unsigned depth = 0;
  len = sizeof depth;
  assert_int_equal(mprof_ctl("opt.prof_stack_depth", &depth, &len, NULL, 0), 0);
  assert_int_equal(depth, 128);
  bool b = false;
  len = sizeof b;
  assert_int_equal(mprof_ctl("opt.prof", &b, &len, NULL, 0), 0);
  assert_true(b);
  const char* prefix = NULL;
  len = sizeof prefix;
  assert_int_equal(mprof_ctl("opt.prof_prefix", &prefix, &len, NULL, 0), 0);
  assert_non_null(strstr(prefix, "/auto"));
  ssize_t iv = 0;
  len = sizeof iv;
  assert_int_equal(mprof_ctl("opt.lg_prof_interval", &iv, &len, NULL, 0), 0);
  assert_int_equal(iv, -1);
  assert_int_equal(mprof_ctl("opt.prof", NULL, NULL, &b, sizeof b), EPERM);
}

static void test_prof_active_reads_old_value_and_writes_new(void** state) {
  (void)state;
  bool old = false, on = false, bad_len = true;
  size_t len = sizeof old;
  assert_int_equal(mprof_ctl("prof.active", &old, &len, &on, sizeof on), 0);
  assert_true(old);
  assert_int_equal(mprof_ctl("prof.active", &old, &len, NULL, 0), 0);
  assert_false(old);
  assert_int_equal(mprof_ctl("prof.active", NULL, NULL, &bad_len, 4), EINVAL);
  unsigned char two = 2;
  assert_int_equal(mprof_ctl("prof.active", NULL, NULL, &two, 1), EINVAL);
  on = true;
  assert_int_equal(mprof_ctl("prof.active", NULL, NULL, &on, sizeof on), 0);
  assert_true(mprof__active_get());
}

static void test_epoch_write_advances_and_read_returns_it(void** state) {
  (void)state;
  uint64_t before = stat_u64("epoch"), one = 1, after = 0;
  size_t len = sizeof after;
  assert_int_equal(mprof_ctl("epoch", &after, &len, &one, sizeof one), 0);
  assert_int_equal(after, before + 1);
  assert_int_equal(mprof_ctl("epoch", NULL, NULL, &one, 4), EINVAL);
}

static void test_samples_and_frees_show_in_stats(void** state) {
  (void)state;
  uint64_t s0 = stat_u64("stats.samples"), f0 = stat_u64("stats.frees");
  uint64_t in0 = stat_u64("stats.sampled_bytes_in_use");
  mprof_sample_t a, b;
  site_a(&a, 0x10000, 100);
  site_b(&b, 0x20000, 300);
  assert_non_null(a.bucket);
  assert_non_null(b.bucket);
  assert_ptr_not_equal(a.bucket, b.bucket); /* distinct call sites, distinct buckets */
  assert_true(a.weight == 1.0);             /* lg_prof_sample:0: every allocation, weight 1 */
  assert_int_equal(stat_u64("stats.samples"), s0 + 2);
  assert_int_equal(stat_u64("stats.sampled_bytes_in_use"), in0 + 400);
  cb->on_free(&a, (void*)0x10000);
  assert_int_equal(stat_u64("stats.frees"), f0 + 1);
  assert_int_equal(stat_u64("stats.sampled_bytes_in_use"), in0 + 300);
  cb->on_free(&b, (void*)0x20000);
  assert_true(stat_u64("stats.buckets") >= 2);
  assert_true(stat_u64("stats.metadata_bytes") > 0);
  assert_int_equal(mprof_ctl("stats.samples", NULL, NULL, &s0, sizeof s0), EPERM);
}

static void test_reconciliation_names_read_the_estimate_and_the_rss(void** state) {
  (void)state;
  uint64_t e0 = stat_u64("stats.estimated_bytes_in_use");
  mprof_sample_t a;
  site_a(&a, 0x30000, 1000);
  assert_int_equal(stat_u64("stats.estimated_bytes_in_use"), e0 + 1000); /* weight 1 */
  cb->on_free(&a, (void*)0x30000);
  assert_int_equal(stat_u64("stats.estimated_bytes_in_use"), e0);
  uint64_t rss = stat_u64("stats.process_rss");
  assert_true(rss > 0 && rss != UINT64_MAX);
  /* No glue, so no allocator figures: every stats.allocator.* name reads UINT64_MAX. */
  const char* names[] = {"stats.allocator.committed", "stats.allocator.peak_committed",
                         "stats.allocator.rss",       "stats.allocator.peak_rss",
                         "stats.allocator.allocated", "stats.allocator.active",
                         "stats.allocator.resident"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    assert_int_equal(stat_u64(names[i]), UINT64_MAX);
    assert_int_equal(mprof_ctl(names[i], NULL, NULL, &rss, sizeof rss), EPERM);
  }
}

static bool is_gzip_file(const char* path) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) return false;
  unsigned char m[2] = {0, 0};
  size_t n = fread(m, 1, 2, f);
  fclose(f);
  return n == 2 && m[0] == 0x1f && m[1] == 0x8b;
}

static void test_dump_to_a_path_writes_a_gzipped_profile(void** state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof path, "%s/explicit.pb.gz", dir);
  const char* p = path;
  uint64_t d0 = stat_u64("stats.dumps");
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p), 0);
  assert_true(is_gzip_file(path));
  assert_int_equal(stat_u64("stats.dumps"), d0 + 1);
  char tmp[160];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  assert_int_not_equal(access(tmp, F_OK), 0); /* no temporary left behind */
}

static void test_dump_with_null_uses_the_automatic_name(void** state) {
  (void)state;
  const char* p = NULL;
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p), 0);
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, NULL, 0), 0);
  char want[160];
  /* Two manual dumps: m0 and m1; seq counts every automatic dump of the process. */
  snprintf(want, sizeof want, "%s/auto.%s.%ld.0.m0.pb.gz", dir, program_invocation_short_name,
           (long)getpid());
  assert_true(is_gzip_file(want));
  snprintf(want, sizeof want, "%s/auto.%s.%ld.1.m1.pb.gz", dir, program_invocation_short_name,
           (long)getpid());
  assert_true(is_gzip_file(want));
}

static void test_dump_errors_return_the_errno_and_keep_the_old_file(void** state) {
  (void)state;
  char path[160];
  const char* p = path;
  uint64_t e0 = stat_u64("stats.dump_errors");
  snprintf(path, sizeof path, "%s/missing-dir/x.pb.gz", dir);
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p), ENOENT);
  assert_int_not_equal(access(path, F_OK), 0);
  /* A parent that is a regular file. */
  snprintf(path, sizeof path, "%s/explicit.pb.gz/x", dir);
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p), ENOTDIR);
  p = "/dev/full";
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p), ENOSPC);
  struct stat st;
  assert_int_equal(stat("/dev/full", &st), 0);
  assert_true(S_ISCHR(st.st_mode)); /* written in place, never replaced */
  static char longpath[5000];
  memset(longpath, 'a', sizeof longpath - 1);
  p = longpath;
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p), ENAMETOOLONG);
  p = "";
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, sizeof p), EINVAL);
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, 3), EINVAL);
  size_t len = sizeof p;
  assert_int_equal(mprof_ctl("prof.dump", &p, &len, NULL, 0), EPERM);
  assert_int_equal(stat_u64("stats.dump_errors"), e0 + 4);
}

static void test_allocations_inside_the_profiler_leave_the_countdown_alone(void** state) {
  (void)state;
  /* lg_prof_sample:0: every allocation is sampled, the countdown stays 0. */
  mprof__thread.countdown = 0;
  assert_true(mprof__thread_countdown_expired(64));
  assert_true(mprof__sample_decide(64));
  assert_int_equal(mprof__thread.countdown, 0);
  mprof__enter(); /* the profiler allocates while handling that sample */
  assert_true(mprof__thread_countdown_expired(320));
  assert_false(mprof__sample_decide(320)); /* never sampled ... */
  mprof__leave();
  assert_int_equal(mprof__thread.countdown, 0); /* ... and the next allocation still is */
  assert_true(mprof__thread_countdown_expired(1));
  assert_true(mprof__sample_decide(1));
}

static void test_sampling_stops_and_resumes_with_prof_active(void** state) {
  (void)state;
  bool off = false, on = true;
  assert_int_equal(mprof_ctl("prof.active", NULL, NULL, &off, sizeof off), 0);
  mprof__thread.countdown = 0;
  assert_true(mprof__thread_countdown_expired(8));
  assert_false(mprof__sample_decide(8));
  assert_int_equal(mprof__thread.countdown, mprof__sample_interval()); /* looks again later */
  assert_int_equal(mprof_ctl("prof.active", NULL, NULL, &on, sizeof on), 0);
  mprof__thread.countdown = 0;
  assert_true(mprof__thread_countdown_expired(8));
  assert_true(mprof__sample_decide(8));
}

static void test_contention_profile_control_names(void** state) {
  (void)state;
  unsigned f = 99, v;
  size_t len = sizeof f;
  assert_int_equal(mprof_ctl("opt.prof_mutex_fraction", &f, &len, NULL, 0), 0);
  assert_int_equal(f, 0);
  bool app = true;
  len = sizeof app;
  assert_int_equal(mprof_ctl("opt.prof_mutex_app", &app, &len, NULL, 0), 0);
  assert_false(app);
  /* prof.mutex_fraction: rw, the read returns the value before the write. */
  v = 3;
  len = sizeof f;
  assert_int_equal(mprof_ctl("prof.mutex_fraction", &f, &len, &v, sizeof v), 0);
  assert_int_equal(f, 0);
  assert_int_equal(mprof_ctl("prof.mutex_fraction", &f, &len, NULL, 0), 0);
  assert_int_equal(f, 3);
  v = 0x80000000u;
  assert_int_equal(mprof_ctl("prof.mutex_fraction", NULL, NULL, &v, sizeof v), EINVAL);
  assert_int_equal(mprof_ctl("prof.mutex_fraction", NULL, NULL, &v, 8), EINVAL);
  assert_true(mprof__contention_on());
  /* prof.mutex_app */
  bool on = true, old = true;
  len = sizeof old;
  assert_int_equal(mprof_ctl("prof.mutex_app", &old, &len, &on, sizeof on), 0);
  assert_false(old);
  assert_true(mprof__mutex_app());
  assert_int_equal(mprof__mutex_app_on, 1);
  on = false;
  assert_int_equal(mprof_ctl("prof.mutex_app", NULL, NULL, &on, sizeof on), 0);
  assert_int_equal(mprof__mutex_app_on, 0);
  unsigned char two = 2;
  assert_int_equal(mprof_ctl("prof.mutex_app", NULL, NULL, &two, 1), EINVAL);
  /* An event shows in the stats. */
  v = 1;
  assert_int_equal(mprof_ctl("prof.mutex_fraction", NULL, NULL, &v, sizeof v), 0);
  uint64_t c0 = stat_u64("stats.contentions");
  mprof__contention_report("test:ctl", 100, false);
  assert_int_equal(stat_u64("stats.contentions"), c0 + 1);
  assert_true(stat_u64("stats.contention_buckets") >= 1);
  assert_int_equal(stat_u64("stats.contentions_lost"), 0);
  /* prof.mutex.dump: to a path, to the next automatic name, and its errors. */
  char path[128];
  snprintf(path, sizeof path, "%s/explicit.mutex.pb.gz", dir);
  const char* p = path;
  assert_int_equal(mprof_ctl("prof.mutex.dump", NULL, NULL, &p, sizeof p), 0);
  assert_true(is_gzip_file(path));
  assert_int_equal(mprof_ctl("prof.mutex.dump", NULL, NULL, NULL, 0), 0);
  char pattern[160];
  snprintf(pattern, sizeof pattern, "%s/auto.%s.%ld.*.m0.mutex.pb.gz", dir,
           program_invocation_short_name, (long)getpid());
  glob_t g;
  assert_int_equal(glob(pattern, 0, NULL, &g), 0);
  assert_int_equal(g.gl_pathc, 1);
  assert_true(is_gzip_file(g.gl_pathv[0]));
  globfree(&g);
  p = "";
  assert_int_equal(mprof_ctl("prof.mutex.dump", NULL, NULL, &p, sizeof p), EINVAL);
  len = sizeof p;
  assert_int_equal(mprof_ctl("prof.mutex.dump", &p, &len, NULL, 0), EPERM);
  snprintf(path, sizeof path, "%s/missing/x.pb.gz", dir);
  p = path;
  assert_int_equal(mprof_ctl("prof.mutex.dump", NULL, NULL, &p, sizeof p), ENOENT);
  v = 0;
  assert_int_equal(mprof_ctl("prof.mutex_fraction", NULL, NULL, &v, sizeof v), 0);
  assert_false(mprof__contention_on());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version_reads_the_version_string),
      cmocka_unit_test(test_unknown_names_are_enoent),
      cmocka_unit_test(test_a_wrong_old_length_is_einval_after_copying_what_fits),
      cmocka_unit_test(test_opt_names_read_the_options_in_force),
      cmocka_unit_test(test_prof_active_reads_old_value_and_writes_new),
      cmocka_unit_test(test_epoch_write_advances_and_read_returns_it),
      cmocka_unit_test(test_samples_and_frees_show_in_stats),
      cmocka_unit_test(test_reconciliation_names_read_the_estimate_and_the_rss),
      cmocka_unit_test(test_dump_to_a_path_writes_a_gzipped_profile),
      cmocka_unit_test(test_dump_with_null_uses_the_automatic_name),
      cmocka_unit_test(test_dump_errors_return_the_errno_and_keep_the_old_file),
      cmocka_unit_test(test_allocations_inside_the_profiler_leave_the_countdown_alone),
      cmocka_unit_test(test_sampling_stops_and_resumes_with_prof_active),
      cmocka_unit_test(test_contention_profile_control_names),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
