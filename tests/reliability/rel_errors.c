/* Every documented error path of mprof_ctl through libmprof.so (this program is linked with it),
 * table by table: unknown names (ENOENT), wrong sizes (EINVAL, as much as fits still copied out,
 * the caller's size left alone), wrong direction (EPERM), invalid values (EINVAL), and prof.dump
 * to paths that cannot be written: a missing directory (ENOENT), a path under a regular file
 * (ENOTDIR), a directory the process may not write (EACCES; root's override is dropped with
 * capset for that case), /dev/full (ENOSPC), a too-long path or component (ENAMETOOLONG), a file
 * size limit (EFBIG). For each failing dump: the code is returned, at most one line is printed,
 * an older profile at that path is kept byte for byte, no temporary file is left, the failure
 * is counted in stats.dump_errors, and the program and the profiler keep working.
 *
 * Run with MPROF_CONF=lg_prof_sample:0 (profiling on, prof_prefix left at its default). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mprof.h"

static char dir[PATH_MAX];
static void* volatile sink;

/* --- Capturing stderr --------------------------------------------------------------------- */
static int saved_stderr = -1;
static char capture_path[PATH_MAX + 32];

static void capture_start(void) {
  snprintf(capture_path, sizeof capture_path, "%s/stderr.txt", dir);
  int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  saved_stderr = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  close(fd);
}

/* Returns the number of lines written to stderr since capture_start (and echoes them). */
static int capture_stop(void) {
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  FILE* f = fopen(capture_path, "r");
  assert_non_null(f);
  int lines = 0, c;
  while ((c = fgetc(f)) != EOF) {
    fputc(c, stderr);
    lines += c == '\n';
  }
  fclose(f);
  return lines;
}

static uint64_t stat_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  assert_int_equal(mprof_ctl(name, &v, &len, NULL, 0), 0);
  return v;
}

static int dump(const char* path) {
  return mprof_ctl("prof.dump", NULL, NULL, &path, sizeof path);
}

static size_t file_bytes(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, cap);
  close(fd);
  return n < 0 ? 0 : (size_t)n;
}

static int count_tmp_files(const char* d) {
  DIR* dd = opendir(d);
  if (dd == NULL) return 0;
  int n = 0;
  struct dirent* e;
  while ((e = readdir(dd)) != NULL)
    n += strstr(e->d_name, ".tmp.") != NULL;
  closedir(dd);
  return n;
}

/* --- Names ----------------------------------------------------------------------------------- */
static void test_unknown_names_are_enoent(void** state) {
  (void)state;
  static char huge[10000];
  memset(huge, 'a', sizeof huge - 1);
  const char* names[] = {
      "",       "nope",       "prof",        "prof.",    "prof.dumpx",        "stats",
      "stats.", "stats.nope", "opt.",        "opt.nope", "opt.prof_prefix.x", "epoch ",
      "EPOCH",  "version\n",  "prof.prefix", ".version", "opt.opt.prof",      huge};
  capture_start();
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    uint64_t v = 0;
    size_t len = sizeof v;
    assert_int_equal(mprof_ctl(names[i], &v, &len, NULL, 0), ENOENT);
    assert_int_equal(mprof_ctl(names[i], NULL, NULL, &v, sizeof v), ENOENT);
  }
  assert_int_equal(mprof_ctl(NULL, NULL, NULL, NULL, 0), ENOENT);
  assert_int_equal(capture_stop(), 0); /* ctl errors are returned, never printed */
}

typedef struct {
  const char* name;
  size_t size;
} sized_t;

static const sized_t readable[] = {
    {"version", sizeof(char*)},
    {"allocator", sizeof(char*)},
    {"epoch", 8},
    {"prof.active", sizeof(bool)},
    {"prof.lg_sample", sizeof(size_t)},
    {"prof.interval", 8},
    {"stats.samples", 8},
    {"stats.frees", 8},
    {"stats.dropped_samples", 8},
    {"stats.buckets", 8},
    {"stats.sampled_blocks", 8},
    {"stats.sampled_bytes_in_use", 8},
    {"stats.metadata_bytes", 8},
    {"stats.dumps", 8},
    {"stats.dump_errors", 8},
    {"opt.prof", sizeof(bool)},
    {"opt.lg_prof_sample", sizeof(size_t)},
    {"opt.prof_prefix", sizeof(char*)},
    {"opt.prof_stack_depth", sizeof(unsigned)},
    {"opt.lg_prof_interval", sizeof(ssize_t)},
};

static void test_wrong_read_sizes_are_einval_and_copy_what_fits(void** state) {
  (void)state;
  capture_start();
  for (size_t i = 0; i < sizeof readable / sizeof readable[0]; i++) {
    const sized_t* r = &readable[i];
    unsigned char right[16], wrong[24];
    size_t len = r->size;
    assert_int_equal(mprof_ctl(r->name, right, &len, NULL, 0), 0);
    assert_int_equal(len, r->size);
    const size_t sizes[] = {0, 1, r->size - 1, r->size + 1, 16};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      if (sizes[k] == r->size || sizes[k] > sizeof wrong) continue;
      memset(wrong, 0xee, sizeof wrong);
      len = sizes[k];
      assert_int_equal(mprof_ctl(r->name, wrong, &len, NULL, 0), EINVAL);
      assert_int_equal(len, sizes[k]); /* the caller's size is left alone */
      size_t fit = sizes[k] < r->size ? sizes[k] : r->size;
      bool stable = strncmp(r->name, "stats.", 6) != 0 && strcmp(r->name, "epoch") != 0;
      if (stable) assert_memory_equal(wrong, right, fit); /* as much as fits is copied */
      for (size_t b = fit; b < sizeof wrong; b++)
        assert_int_equal(wrong[b], 0xee); /* and nothing more */
    }
  }
  /* oldp without oldlenp */
  uint64_t v;
  assert_int_equal(mprof_ctl("stats.samples", &v, NULL, NULL, 0), EINVAL);
  assert_int_equal(capture_stop(), 0);
}

static void test_writes_with_a_wrong_size_or_value_are_einval(void** state) {
  (void)state;
  capture_start();
  uint64_t e = 1;
  uint32_t small = 1;
  bool on = true;
  unsigned char two = 2;
  const char* empty = "";
  const char* p = "/dev/null";
  assert_int_equal(mprof_ctl("epoch", NULL, NULL, &small, sizeof small), EINVAL);
  assert_int_equal(mprof_ctl("epoch", NULL, NULL, NULL, sizeof e), EINVAL);
  assert_int_equal(mprof_ctl("epoch", NULL, NULL, &e, sizeof e + 1), EINVAL);
  assert_int_equal(mprof_ctl("prof.active", NULL, NULL, &on, 0), EINVAL);
  assert_int_equal(mprof_ctl("prof.active", NULL, NULL, &e, sizeof e), EINVAL);
  assert_int_equal(mprof_ctl("prof.active", NULL, NULL, &two, 1), EINVAL); /* not a bool */
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &p, 4), EINVAL);
  assert_int_equal(mprof_ctl("prof.dump", NULL, NULL, &empty, sizeof empty), EINVAL);
  bool now = false;
  size_t len = sizeof now;
  assert_int_equal(mprof_ctl("prof.active", &now, &len, NULL, 0), 0);
  assert_true(now); /* the rejected writes changed nothing */
  assert_int_equal(capture_stop(), 0);
}

static void test_wrong_direction_is_eperm(void** state) {
  (void)state;
  capture_start();
  for (size_t i = 0; i < sizeof readable / sizeof readable[0]; i++) {
    const sized_t* r = &readable[i];
    if (strcmp(r->name, "epoch") == 0 || strcmp(r->name, "prof.active") == 0) continue;
    unsigned char v[16] = {0};
    assert_int_equal(mprof_ctl(r->name, NULL, NULL, v, r->size), EPERM);
    size_t len = r->size;
    assert_int_equal(mprof_ctl(r->name, v, &len, v, r->size), EPERM);
  }
  unsigned char buf[8];
  size_t len = sizeof(char*);
  assert_int_equal(mprof_ctl("prof.dump", buf, &len, NULL, 0), EPERM); /* write-only */
  assert_int_equal(capture_stop(), 0);
}

/* --- Dumps that cannot be written ----------------------------------------------------------- */

/* Drops root's permission overrides (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) from the
 * effective set of this process, so that permission bits apply as to any user. */
static void drop_dac_override(void) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  if (syscall(SYS_capget, &h, d) != 0) return;
  d[0].effective &= ~((1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH) | (1u << CAP_FOWNER));
  if (syscall(SYS_capset, &h, d) != 0) fprintf(stderr, "capset: %s\n", strerror(errno));
}

typedef struct {
  const char* what;
  int want;
  char path[PATH_MAX + 400];
  bool has_previous; /* a good profile is at the path before the failing dump */
  int setup; /* 0 none, 1 read-only directory (in a child without DAC override), 2 RLIMIT_FSIZE */
} dump_case_t;

static void test_failing_dumps_return_the_errno_and_keep_the_old_profile(void** state) {
  (void)state;
  static dump_case_t cases[8];
  int n = 0;
  char file[PATH_MAX], rodir[PATH_MAX];
  snprintf(file, sizeof file, "%s/regular", dir);
  FILE* f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  snprintf(rodir, sizeof rodir, "%s/readonly", dir);
  assert_int_equal(mkdir(rodir, 0755), 0);

  cases[n] = (dump_case_t){"missing directory", ENOENT, "", false, 0};
  snprintf(cases[n++].path, sizeof cases[0].path, "%s/missing/p.pb.gz", dir);
  cases[n] = (dump_case_t){"path under a regular file", ENOTDIR, "", false, 0};
  snprintf(cases[n++].path, sizeof cases[0].path, "%s/p.pb.gz", file);
  cases[n] = (dump_case_t){"read-only directory", EACCES, "", true, 1};
  snprintf(cases[n++].path, sizeof cases[0].path, "%s/p.pb.gz", rodir);
  cases[n] = (dump_case_t){"/dev/full", ENOSPC, "/dev/full", false, 0};
  n++;
  cases[n] = (dump_case_t){"path longer than PATH_MAX", ENAMETOOLONG, "", false, 0};
  memset(cases[n].path, 'x', PATH_MAX + 100);
  cases[n].path[0] = '/';
  cases[n++].path[PATH_MAX + 100] = '\0';
  cases[n] = (dump_case_t){"component longer than NAME_MAX", ENAMETOOLONG, "", false, 0};
  snprintf(cases[n++].path, sizeof cases[0].path, "%s/%0300d.pb.gz", dir, 1);
  cases[n] = (dump_case_t){"file size limit", EFBIG, "", true, 2};
  snprintf(cases[n++].path, sizeof cases[0].path, "%s/fsize.pb.gz", dir);

  for (int i = 0; i < 100; i++)
    sink = malloc(100 + (size_t)i); /* something to profile */
  for (int i = 0; i < n; i++) {
    dump_case_t* c = &cases[i];
    static char before[1 << 20], after[1 << 20];
    size_t nbefore = 0;
    if (c->has_previous) {
      assert_int_equal(dump(c->path), 0);
      nbefore = file_bytes(c->path, before, sizeof before);
      assert_true(nbefore > 20);
      for (int k = 0; k < 1000; k++)
        sink = malloc(1000); /* the next profile differs from the old one */
    }
    if (c->setup == 1) assert_int_equal(chmod(rodir, 0555), 0);
    uint64_t errors = stat_u64("stats.dump_errors");
    capture_start();
    int err;
    if (c->setup == 0) {
      err = dump(c->path);
    } else {
      /* In a child: the capability drop and the file size limit must not outlive the case. */
      pid_t pid = fork();
      assert_true(pid >= 0);
      if (pid == 0) {
        if (c->setup == 1) drop_dac_override();
        if (c->setup == 2) {
          signal(SIGXFSZ, SIG_IGN);
          struct rlimit rl = {(rlim_t)nbefore / 2, RLIM_INFINITY};
          setrlimit(RLIMIT_FSIZE, &rl);
        }
        int e = dump(c->path);
        uint64_t after_errors = stat_u64("stats.dump_errors");
        _exit(e == c->want && after_errors == errors + 1 ? 0 : e == 0 ? 99 : e);
      }
      int status;
      waitpid(pid, &status, 0);
      assert_true(WIFEXITED(status));
      err = WEXITSTATUS(status) == 0 ? c->want : WEXITSTATUS(status);
    }
    int lines = capture_stop();
    if (c->setup == 1) chmod(rodir, 0755);
    printf("%-32s -> %s (%d line%s on stderr)\n", c->what, strerror(err), lines,
           lines == 1 ? "" : "s");
    assert_int_equal(err, c->want);
    assert_true(lines <= 1);
    if (c->setup == 0) assert_int_equal(stat_u64("stats.dump_errors"), errors + 1);
    if (c->has_previous) {
      size_t nafter = file_bytes(c->path, after, sizeof after);
      assert_int_equal(nafter, nbefore);
      assert_memory_equal(after, before, nbefore); /* the old profile is intact */
    }
    assert_int_equal(count_tmp_files(dir), 0);
    assert_int_equal(count_tmp_files(rodir), 0);
  }
  /* The profiler still works: a dump to a good path succeeds, and sampling goes on. */
  char good[PATH_MAX + 16];
  snprintf(good, sizeof good, "%s/good.pb.gz", dir);
  uint64_t samples = stat_u64("stats.samples");
  sink = malloc(64);
  free(sink);
  assert_true(stat_u64("stats.samples") > samples);
  assert_int_equal(dump(good), 0);
}

static int setup(void** state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/mprof-rel-errors.XXXXXX");
  return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void** state) {
  (void)state;
  char cmd[PATH_MAX + 32];
  snprintf(cmd, sizeof cmd, "chmod -R u+w '%s'; rm -rf '%s'", dir, dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  bool prof = false;
  size_t len = sizeof prof;
  if (mprof_ctl("opt.prof", &prof, &len, NULL, 0) != 0 || !prof) {
    fprintf(stderr, "rel_errors: run with profiling on (MPROF_CONF=lg_prof_sample:0)\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unknown_names_are_enoent),
      cmocka_unit_test(test_wrong_read_sizes_are_einval_and_copy_what_fits),
      cmocka_unit_test(test_writes_with_a_wrong_size_or_value_are_einval),
      cmocka_unit_test(test_wrong_direction_is_eperm),
      cmocka_unit_test(test_failing_dumps_return_the_errno_and_keep_the_old_profile),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
