/* Function names from ELF symbol tables: lookups in this test binary, and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mprof_maps.h"
#include "mprof_symtab.h"

__attribute__((noinline)) static int symtab_test_static_function(int x) {
  return x * 3 + 1;
}

__attribute__((noinline)) int symtab_test_global_function(int x);
__attribute__((noinline)) int symtab_test_global_function(int x) {
  return symtab_test_static_function(x) + 2;
}

static uintptr_t bias_of_main(void) {
  mprof_maps_t maps;
  assert_int_equal(mprof__maps_read(&maps), 0);
  ptrdiff_t m = mprof__maps_find(&maps, (uintptr_t)&symtab_test_global_function);
  assert_true(m >= 0);
  uintptr_t bias = maps.entries[m].bias;
  mprof__maps_free(&maps);
  return bias;
}

static void test_functions_of_this_binary_are_found_by_address(void** state) {
  (void)state;
  mprof_symtab_t st;
  assert_int_equal(mprof__symtab_open("/proc/self/exe", "", &st), 0);
  uintptr_t bias = bias_of_main();
  uintptr_t f = (uintptr_t)&symtab_test_static_function - bias;
  uintptr_t g = (uintptr_t)&symtab_test_global_function - bias;
  assert_string_equal(mprof__symtab_find(&st, f), "symtab_test_static_function");
  assert_string_equal(mprof__symtab_find(&st, f + 1), "symtab_test_static_function");
  assert_string_equal(mprof__symtab_find(&st, g + 4), "symtab_test_global_function");
  assert_null(mprof__symtab_find(&st, 0)); /* below every function */
  assert_null(mprof__symtab_find(&st, UINT64_MAX));
  mprof__symtab_close(&st);
  assert_null(st.file);
}

static void test_a_stripped_library_is_named_from_its_dynamic_symbols(void** state) {
  (void)state;
  Dl_info info;
  assert_int_not_equal(dladdr((const void*)(uintptr_t)&fopen, &info), 0);
  mprof_symtab_t st;
  assert_int_equal(mprof__symtab_open(info.dli_fname, "", &st), 0);
  const char* name = mprof__symtab_find(&st, (uintptr_t)&fopen - (uintptr_t)info.dli_fbase + 8);
  assert_non_null(name);
  assert_non_null(strstr(name, "fopen"));
  mprof__symtab_close(&st);
}

static void test_files_that_cannot_be_used_are_refused(void** state) {
  (void)state;
  mprof_symtab_t st;
  assert_int_equal(mprof__symtab_open("/nonexistent/file", "", &st), ENOENT);
  assert_int_equal(mprof__symtab_open("/etc/passwd", "", &st), ENOEXEC);
  assert_int_equal(mprof__symtab_open("/dev/null", "", &st), ENOEXEC);
  assert_int_equal(mprof__symtab_open("/proc/self/exe", "00112233445566778899", &st), ESTALE);
  /* A truncated copy of this binary: header present, section headers cut off. */
  char path[] = "/tmp/mprof-test-symtab.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE* in = fopen("/proc/self/exe", "rb");
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf, in);
  fclose(in);
  assert_int_equal(write(fd, buf, n), (ssize_t)n);
  close(fd);
  assert_int_equal(mprof__symtab_open(path, "", &st), ENOEXEC);
  unlink(path);
  assert_null(st.file);
  assert_null(st.syms);
}

static void test_the_build_id_of_the_running_binary_matches_its_file(void** state) {
  (void)state;
  mprof_maps_t maps;
  assert_int_equal(mprof__maps_read(&maps), 0);
  ptrdiff_t m = mprof__maps_find(&maps, (uintptr_t)&symtab_test_global_function);
  assert_true(m >= 0);
  mprof_symtab_t st;
  assert_int_equal(mprof__symtab_open(maps.entries[m].path, maps.entries[m].build_id, &st), 0);
  mprof__symtab_close(&st);
  mprof__maps_free(&maps);
}

int main(void) {
  (void)symtab_test_global_function(1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_functions_of_this_binary_are_found_by_address),
      cmocka_unit_test(test_a_stripped_library_is_named_from_its_dynamic_symbols),
      cmocka_unit_test(test_files_that_cannot_be_used_are_refused),
      cmocka_unit_test(test_the_build_id_of_the_running_binary_matches_its_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
