/* The table of loaded objects (mprof_maps): build ids read without faulting, by process_vm_readv
 * and, where a seccomp filter refuses it, through a pipe; an object whose file was truncated on
 * disk since it was loaded is left out or read without a build id, never a SIGBUS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mprof_maps.h"

#ifndef MAPS_TESTLIB
#error "MAPS_TESTLIB: path of a module to load"
#endif

/* The build id of the main program's entries ("" when it has none or there are none). */
static void main_build_id(char* out, size_t cap) {
  mprof_maps_t maps;
  assert_int_equal(mprof__maps_read(&maps), 0);
  out[0] = '\0';
  for (size_t i = 0; i < maps.n; i++) {
    if (maps.entries[i].is_main) {
      snprintf(out, cap, "%s", maps.entries[i].build_id);
      break;
    }
  }
  mprof__maps_free(&maps);
}

static void test_the_main_program_has_its_build_id(void** state) {
  (void)state;
  char id[256];
  main_build_id(id, sizeof id);
  /* gcc and ld on Debian write a 20-byte GNU build id by default. */
  assert_int_equal(strlen(id), 40);
  assert_int_equal(strspn(id, "0123456789abcdef"), 40);
}

/* A child that forbids process_vm_readv (EPERM, as seccomp sandboxes do) reads the same build
 * id, through the pipe. */
static void test_the_same_build_id_where_process_vm_readv_is_refused(void** state) {
  (void)state;
  char id[256];
  main_build_id(id, sizeof id);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      _exit(77);
    char b = 0;
    struct iovec l = {&b, 1}, r = {&b, 1};
    if (syscall(SYS_process_vm_readv, (long)getpid(), &l, 1L, &r, 1L, 0L) != -1 || errno != EPERM)
      _exit(3); /* the filter is not in force */
    char child_id[256];
    main_build_id(child_id, sizeof child_id);
    ssize_t n = write(fds[1], child_id, strlen(child_id) + 1);
    _exit(n > 0 ? 0 : 4);
  }
  close(fds[1]);
  char got[256] = {0};
  ssize_t n = read(fds[0], got, sizeof got - 1);
  close(fds[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    if (getenv("CI") != NULL && strcmp(getenv("CI"), "true") == 0) fail_msg("no seccomp here");
    skip();
  }
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_true(n > 0);
  assert_string_equal(got, id);
}

/* Same file: the loader names a library by the path it opened (maybe through a symbolic link),
 * /proc/self/maps by the resolved one. */
static bool same_file(const char* a, const char* b) {
  if (strcmp(a, b) == 0) return true;
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The table read from /proc/self/maps is the loader's (dl_iterate_phdr) view: the same objects,
 * segments, build ids, main program and vDSO, also with a loaded module and with an ELF file
 * that is only mapped as data (not loaded: left out by both). */
static void test_proc_maps_and_the_loader_agree(void** state) {
  (void)state;
  void* h = dlopen(MAPS_TESTLIB, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(h);
  int fd = open(MAPS_TESTLIB, O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  void* data = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
  assert_true(data != MAP_FAILED);
  close(fd);

  mprof_maps_t proc, loader;
  assert_int_equal(mprof__maps_read_proc(&proc), 0);
  assert_int_equal(mprof__maps_read_loader(&loader), 0);
  bool lib = false, main_seen = false, vdso = false;
  for (size_t i = 0; i < loader.n; i++) {
    const mprof_mapping_t* l = &loader.entries[i];
    lib |= same_file(l->path, MAPS_TESTLIB);
    main_seen |= l->is_main;
    vdso |= strcmp(l->path, "[vdso]") == 0;
  }
  assert_true(lib);
  assert_true(main_seen);
  assert_true(vdso == (getauxval(AT_SYSINFO_EHDR) != 0));
  assert_int_equal(proc.n, loader.n);
  for (size_t i = 0; i < loader.n; i++) {
    const mprof_mapping_t *p = &proc.entries[i], *l = &loader.entries[i];
    assert_true(p->start == l->start);
    assert_true(p->limit == l->limit);
    assert_true(p->offset == l->offset);
    assert_true(p->bias == l->bias);
    assert_int_equal(p->is_main, l->is_main);
    assert_string_equal(p->build_id, l->build_id);
    if (!same_file(p->path, l->path)) fail_msg("%s is %s to the loader", p->path, l->path);
  }
  mprof__maps_free(&proc);
  mprof__maps_free(&loader);
  munmap(data, (size_t)st.st_size);
  dlclose(h);
}

static int copy_file(const char* from, const char* to) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  if (in < 0 || out < 0) return -1;
  char buf[16384];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)n) != n) return -1;
  close(in);
  return close(out);
}

/* A library whose file is truncated after loading: its first page (program headers, notes) is
 * no longer backed, a plain read of it raises SIGBUS. The table is read anyway. */
static void test_a_library_truncated_on_disk_does_not_fault(void** state) {
  (void)state;
  char copy[64];
  snprintf(copy, sizeof copy, "/tmp/test_maps_%d.so", (int)getpid());
  assert_int_equal(copy_file(MAPS_TESTLIB, copy), 0);
  void* h = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(h);
  mprof_maps_t maps;
  assert_int_equal(mprof__maps_read(&maps), 0);
  size_t before = maps.n;
  int found = 0;
  for (size_t i = 0; i < maps.n; i++)
    found += strcmp(maps.entries[i].path, copy) == 0 && maps.entries[i].build_id[0] != '\0';
  mprof__maps_free(&maps);
  assert_true(found > 0);
  assert_int_equal(truncate(copy, 0), 0);
  assert_int_equal(mprof__maps_read(&maps), 0);
  for (size_t i = 0; i < maps.n; i++) /* left out, or at least without a build id */
    assert_false(strcmp(maps.entries[i].path, copy) == 0 && maps.entries[i].build_id[0] != '\0');
  assert_true(maps.n >= before - (size_t)found);
  mprof__maps_free(&maps);
  unlink(copy);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_the_main_program_has_its_build_id),
      cmocka_unit_test(test_the_same_build_id_where_process_vm_readv_is_refused),
      cmocka_unit_test(test_proc_maps_and_the_loader_agree),
      cmocka_unit_test(test_a_library_truncated_on_disk_does_not_fault),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  /* The truncated module's pages no longer hold its code as relocated: its destructors must not
   * run at exit. */
  fflush(NULL);
  _exit(rc);
}
