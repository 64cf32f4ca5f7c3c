/* Unit tests for plugin/mprof_dumpfile.c: the path rules, with an O_TMPFILE and with a named
 * temporary, and the SIGPIPE guard. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mprof_dumpfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void at(char* buf, const char* name) {
  snprintf(buf, PATH_MAX, "%s/%s", dir, name);
}

static int dump_text(const char* path, bool automatic, const char* text) {
  mprof_dumpfile_t f;
  int err = mprof__dumpfile_open(&f, path, automatic);
  if (err != 0) return err;
  if (write(f.fd, text, strlen(text)) != (ssize_t)strlen(text)) {
    mprof__dumpfile_abort(&f);
    return errno;
  }
  return mprof__dumpfile_commit(&f);
}

static bool has_text(const char* path, const char* text) {
  char buf[256];
  int fd = open(path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0) return false;
  buf[n] = '\0';
  return strcmp(buf, text) == 0;
}

static int temporaries(void) {
  DIR* d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL)
    n += strncmp(e->d_name, ".mprof.tmp.", 11) == 0;
  closedir(d);
  return n;
}

static int setup(void** state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/mprof-test-dumpfile.XXXXXX");
  umask(022);
  return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void** state) {
  (void)state;
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  mprof__dumpfile_force_named = false;
  return system(cmd) == 0 ? 0 : -1;
}

static void rules_hold(bool named) {
  mprof__dumpfile_force_named = named;
  char p[PATH_MAX], q[PATH_MAX];
  struct stat st, st2;

  at(p, "new.pb.gz");
  assert_int_equal(dump_text(p, true, "one"), 0);
  assert_true(has_text(p, "one"));
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0644);
  assert_int_equal(dump_text(p, true, "two"), 0); /* a regular file is replaced */
  assert_int_equal(stat(p, &st2), 0);
  assert_true(has_text(p, "two"));
  assert_int_not_equal(st.st_ino, st2.st_ino);

  at(q, "victim");
  int fd = open(q, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "victim", 6), 6);
  close(fd);
  at(p, "link.pb.gz");
  unlink(p);
  assert_int_equal(symlink("victim", p), 0);
  assert_int_equal(dump_text(p, true, "auto"), EEXIST); /* automatic: never followed */
  assert_true(has_text(q, "victim"));
  assert_int_equal(dump_text(p, false, "explicit"), 0); /* explicit: the target is replaced */
  assert_true(has_text(q, "explicit"));
  assert_int_equal(lstat(p, &st), 0);
  assert_true(S_ISLNK(st.st_mode));

  at(p, "fifo");
  unlink(p);
  assert_int_equal(mkfifo(p, 0600), 0);
  assert_int_equal(dump_text(p, true, "x"), EEXIST);
  assert_int_equal(dump_text(p, false, "x"), ENXIO); /* nobody reads: no hang */

  char name[256];
  memset(name, 'n', 255);
  name[255] = '\0';
  at(p, name);
  assert_int_equal(dump_text(p, false, "long"), 0);
  assert_true(has_text(p, "long"));

  at(p, "aborted.pb.gz");
  mprof_dumpfile_t f;
  assert_int_equal(mprof__dumpfile_open(&f, p, false), 0);
  mprof__dumpfile_abort(&f);
  assert_int_equal(access(p, F_OK), -1);

  assert_int_equal(dump_text(dir, false, "x"), EISDIR);
  at(p, "missing/x");
  assert_int_equal(dump_text(p, false, "x"), ENOENT);
  assert_int_equal(temporaries(), 0);
}

static void test_rules_hold_with_an_unnamed_temporary(void** state) {
  (void)state;
  rules_hold(false);
}

static void test_rules_hold_with_a_named_temporary(void** state) {
  (void)state;
  rules_hold(true);
}

static void test_another_users_link_in_a_shared_directory_is_refused(void** state) {
  (void)state;
  if (geteuid() != 0) skip();
  char shared[PATH_MAX], p[PATH_MAX + 8];
  at(shared, "shared");
  assert_int_equal(mkdir(shared, 0777), 0);
  assert_int_equal(chmod(shared, 01777), 0);
  snprintf(p, sizeof p, "%s/link", shared);
  assert_int_equal(symlink("/dev/null", p), 0);
  assert_int_equal(lchown(p, 4242, 4242), 0);
  assert_int_equal(dump_text(p, false, "x"), EACCES);
  assert_int_equal(lchown(p, 0, 0), 0); /* ours: followed, written in place */
  assert_int_equal(dump_text(p, false, "x"), 0);
}

static void test_a_reader_that_left_gives_epipe_and_no_signal(void** state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  close(p[0]);
  sigset_t before, after, pending;
  sigemptyset(&before);
  sigemptyset(&after);
  pthread_sigmask(SIG_SETMASK, NULL, &before);
  mprof_sigpipe_guard_t g;
  mprof__sigpipe_block(&g);
  errno = 0;
  assert_int_equal(write(p[1], "x", 1), -1);
  assert_int_equal(errno, EPIPE);
  mprof__sigpipe_restore(&g, true);
  assert_int_equal(errno, EPIPE); /* kept for the caller */
  pthread_sigmask(SIG_SETMASK, NULL, &after);
  for (int sig = 1; sig < NSIG; sig++)
    assert_int_equal(sigismember(&before, sig), sigismember(&after, sig));
  sigpending(&pending);
  assert_false(sigismember(&pending, SIGPIPE));
  close(p[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rules_hold_with_an_unnamed_temporary),
      cmocka_unit_test(test_rules_hold_with_a_named_temporary),
      cmocka_unit_test(test_another_users_link_in_a_shared_directory_is_refused),
      cmocka_unit_test(test_a_reader_that_left_gives_epipe_and_no_signal),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
