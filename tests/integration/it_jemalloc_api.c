/* A jemalloc user's habits with libmprof-jemalloc.so (this program is linked with it):
 * jemalloc's API (mallctl, mallocx and friends) works, MALLOC_CONF still tunes jemalloc, and the
 * profiling names of mallctl reach the mprof core: "prof.dump" writes an mprof profile (in the
 * prof_format of MPROF_CONF), "prof.active" is mprof's flag. jemalloc's own profiling options are
 * fixed by the library (prof on, its own dumps off), whatever MALLOC_CONF says; the sampling rate
 * is MPROF_CONF's. ctest runs it three times: plain; with a MALLOC_CONF that asks for jemalloc's
 * profiler off, its final dump on, a 4-byte sampling rate, 2 arenas and no thread cache; and with
 * MALLOC_CONF=prof:true and MPROF_CONF=prof_format:both. */
#include <mprof.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* jemalloc's public API, as libmprof-jemalloc.so exports it (unprefixed). */
int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen);
void* mallocx(size_t size, int flags);
void* rallocx(void* ptr, size_t size, int flags);
size_t xallocx(void* ptr, size_t size, size_t extra, int flags);
size_t sallocx(const void* ptr, int flags);
void dallocx(void* ptr, int flags);
void sdallocx(void* ptr, size_t size, int flags);
size_t nallocx(size_t size, int flags);
#define MALLOCX_LG_ALIGN(la) ((int)(la))
#define MALLOCX_ZERO ((int)0x40)

static bool malloc_conf_case(void) {
  const char* mc = getenv("MALLOC_CONF");
  return mc != NULL && strstr(mc, "narenas:2") != NULL;
}

static uint64_t stat_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  assert_int_equal(mprof_ctl(name, &v, &len, NULL, 0), 0);
  return v;
}

static void test_versions(void** state) {
  (void)state;
  const char* v = NULL;
  size_t len = sizeof v;
  assert_int_equal(mallctl("version", &v, &len, NULL, 0), 0);
  assert_true(strncmp(v, "5.3.0-", 6) == 0);
  const char* a = NULL;
  len = sizeof a;
  assert_int_equal(mprof_ctl("allocator", &a, &len, NULL, 0), 0);
  assert_true(strncmp(a, "jemalloc 5.3.0", 14) == 0);
  /* 5.3.0 has no native sampling hooks (5.3.1 adds them): the glue binds at link time. */
  assert_int_equal(mallctl("experimental.hooks.prof_sample", NULL, NULL, NULL, 0), ENOENT);
  assert_int_equal(mallctl("experimental.hooks.prof_sample_free", NULL, NULL, NULL, 0), ENOENT);
}

static void test_extended_api(void** state) {
  (void)state;
  void* p = mallocx(100, MALLOCX_ZERO);
  assert_non_null(p);
  for (int i = 0; i < 100; i++)
    assert_int_equal(((unsigned char*)p)[i], 0);
  assert_true(sallocx(p, 0) >= 100);
  p = rallocx(p, 5000, 0);
  assert_non_null(p);
  assert_true(xallocx(p, 5000, 0, 0) >= 5000);
  dallocx(p, 0);
  void* q = mallocx(3000, MALLOCX_LG_ALIGN(12));
  assert_non_null(q);
  assert_int_equal((uintptr_t)q & 4095, 0);
  sdallocx(q, 3000, MALLOCX_LG_ALIGN(12));
  assert_true(nallocx(100, 0) >= 100);
  /* Many blocks through every entry point, some of them sampled (lg_prof_sample:0 samples all
   * when ctest sets it; the default rate samples some): all come back intact. */
  for (int i = 0; i < 20000; i++) {
    size_t n = 16 + (size_t)(i % 97) * 64;
    unsigned char* b = (i & 1) ? mallocx(n, 0) : malloc(n);
    assert_non_null(b);
    memset(b, i & 0xff, n);
    b = (i % 3) ? rallocx(b, n * 2, 0) : realloc(b, n * 2);
    assert_non_null(b);
    assert_int_equal(b[n - 1], i & 0xff);
    if (i % 4 == 0)
      free(b);
    else if (i % 4 == 1)
      dallocx(b, 0);
    else
      sdallocx(b, n * 2, 0);
  }
}

static void test_tuning_from_malloc_conf(void** state) {
  (void)state;
  bool prof = false, final = true, tcache = true;
  size_t len = sizeof prof;
  assert_int_equal(mallctl("opt.prof", &prof, &len, NULL, 0), 0);
  assert_true(prof); /* always: the library runs jemalloc's sampler */
  len = sizeof final;
  assert_int_equal(mallctl("opt.prof_final", &final, &len, NULL, 0), 0);
  assert_false(final); /* always: final dumps are mprof's (MPROF_CONF prof_final) */
  unsigned narenas = 0;
  len = sizeof narenas;
  assert_int_equal(mallctl("opt.narenas", &narenas, &len, NULL, 0), 0);
  len = sizeof tcache;
  assert_int_equal(mallctl("opt.tcache", &tcache, &len, NULL, 0), 0);
  if (malloc_conf_case()) {
    assert_int_equal(narenas, 2);
    assert_false(tcache);
  } else {
    assert_true(narenas != 2 || sysconf(_SC_NPROCESSORS_ONLN) <= 1);
    assert_true(tcache);
  }
  /* mprof's rate is MPROF_CONF's, not MALLOC_CONF's lg_prof_sample. */
  size_t lg = 0;
  len = sizeof lg;
  assert_int_equal(mprof_ctl("prof.lg_sample", &lg, &len, NULL, 0), 0);
  assert_int_equal(lg, 19);
}

static void test_sampling_happens(void** state) {
  (void)state;
  uint64_t before = stat_u64("stats.samples");
  void* keep[4096];
  for (int i = 0; i < 4096; i++)
    keep[i] = malloc(16384); /* 64 MiB: ~128 samples at the default 512 KiB */
  uint64_t after = stat_u64("stats.samples");
  assert_true(after - before > 40);
  uint64_t blocks = stat_u64("stats.sampled_blocks");
  assert_true(blocks >= after - before - 4);
  for (int i = 0; i < 4096; i++)
    free(keep[i]);
  assert_true(stat_u64("stats.sampled_blocks") + 4 < blocks);
}

static void test_prof_active_is_mprofs(void** state) {
  (void)state;
  bool on = false, off = false;
  size_t len = sizeof on;
  assert_int_equal(mallctl("prof.active", &on, &len, NULL, 0), 0);
  assert_true(on);
  assert_int_equal(mallctl("prof.active", NULL, NULL, &off, sizeof off), 0);
  bool m = true;
  len = sizeof m;
  assert_int_equal(mprof_ctl("prof.active", &m, &len, NULL, 0), 0);
  assert_false(m);
  uint64_t before = stat_u64("stats.samples");
  void* keep[1024];
  for (int i = 0; i < 1024; i++)
    keep[i] = malloc(65536);
  assert_int_equal(stat_u64("stats.samples"), before);
  for (int i = 0; i < 1024; i++)
    free(keep[i]);
  on = true;
  assert_int_equal(mprof_ctl("prof.active", NULL, NULL, &on, sizeof on), 0);
  bool j = false;
  len = sizeof j;
  assert_int_equal(mallctl("prof.active", &j, &len, NULL, 0), 0);
  assert_true(j);
}

static void test_prof_dump_writes_an_mprof_profile(void** state) {
  (void)state;
  char dir[] = "/tmp/it_jemalloc_api.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/je.pb.gz", dir);
  const char* p = path;
  uint64_t dumps = stat_u64("stats.dumps");
  assert_int_equal(mallctl("prof.dump", NULL, NULL, &p, sizeof p), 0);
  assert_int_equal(stat_u64("stats.dumps"), dumps + 1);
  int fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  unsigned char magic[2] = {0, 0};
  assert_int_equal(read(fd, magic, 2), 2);
  close(fd);
  assert_int_equal(magic[0], 0x1f); /* gzip: pprof, the default prof_format */
  assert_int_equal(magic[1], 0x8b);
  unlink(path);
  char heap[300];
  snprintf(heap, sizeof heap, "%s.heap", path);
  const char* conf = getenv("MPROF_CONF");
  fd = open(heap, O_RDONLY);
  if (conf != NULL && strstr(conf, "prof_format:both") != NULL) {
    /* prof_format:both: jeprof's text beside the pprof file */
    assert_true(fd >= 0);
    char head[8] = "";
    assert_int_equal(read(fd, head, 8), 8);
    assert_memory_equal(head, "heap_v2/", 8);
    close(fd);
    unlink(heap);
  } else {
    assert_true(fd < 0);
  }
  /* A path that cannot be written: jemalloc's error for a failed dump. */
  const char* bad = "/nonexistent-dir/x.pb.gz";
  assert_int_equal(mallctl("prof.dump", NULL, NULL, &bad, sizeof bad), EFAULT);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_versions),
      cmocka_unit_test(test_extended_api),
      cmocka_unit_test(test_tuning_from_malloc_conf),
      cmocka_unit_test(test_sampling_happens),
      cmocka_unit_test(test_prof_active_is_mprofs),
      cmocka_unit_test(test_prof_dump_writes_an_mprof_profile),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
