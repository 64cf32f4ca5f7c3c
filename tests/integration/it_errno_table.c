/* The malloc family's results and errno, one line per call (it_errno.sh): run with no preload
 * (glibc), with plain mimalloc or jemalloc, and with each mprof library, the lines are compared.
 *
 * Each call starts with errno at a sentinel, so "errno left alone" shows as that sentinel. A line
 * is "<call>: <NULL|ptr> errno=<name>" (posix_memalign: "ret=<name>"). Sizes include zero, the
 * largest sizes, products that overflow and sizes that overflow when rounded to a page;
 * alignments include 0, non-powers of two and one that is not a multiple of sizeof(void*). */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SENTINEL 4242

static const char* ename(int e) {
  switch (e) {
  case SENTINEL:
    return "unchanged";
  case 0:
    return "0";
  case ENOMEM:
    return "ENOMEM";
  case EINVAL:
    return "EINVAL";
  case EOVERFLOW:
    return "EOVERFLOW";
  default:
    return "other";
  }
}

static void line(const char* call, void* p) {
  int e = errno;
  printf("%-44s %s errno=%s\n", call, p ? "ptr " : "NULL", ename(e));
  free(p);
}

#define CALL(expr)                                                                                 \
  do {                                                                                             \
    errno = SENTINEL;                                                                              \
    void* p_ = (expr);                                                                             \
    line(#expr, p_);                                                                               \
  } while (0)

#define PM(align, size)                                                                            \
  do {                                                                                             \
    void* p_ = NULL;                                                                               \
    errno = SENTINEL;                                                                              \
    int r_ = posix_memalign(&p_, (align), (size));                                                 \
    int e_ = errno;                                                                                \
    printf("%-44s %s ret=%s errno=%s\n", "posix_memalign(" #align ", " #size ")",                  \
           r_ == 0 && p_ ? "ptr " : "NULL", ename(r_ ? r_ : 0), ename(e_));                        \
    if (r_ == 0) free(p_);                                                                         \
  } while (0)

int main(void) {
  const size_t big = SIZE_MAX, half = SIZE_MAX / 2 + 1, pd = (size_t)PTRDIFF_MAX + 1;
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  setvbuf(stdout, NULL, _IONBF, 0);
  CALL(malloc(0));
  CALL(malloc(1));
  CALL(malloc(big));
  CALL(malloc(pd));
  CALL(malloc(big - page));
  CALL(calloc(0, 0));
  CALL(calloc(0, big));
  CALL(calloc(half, 2));
  CALL(calloc(big, big));
  CALL(calloc(1, pd));
  CALL(realloc(NULL, 0));
  CALL(realloc(NULL, big));
  CALL(realloc(NULL, 16));
  {
    void* q = malloc(16);
    errno = SENTINEL;
    void* r = realloc(q, big);
    line("realloc(p, big)", r);
    errno = SENTINEL;
    r = realloc(q, pd);
    line("realloc(p, pd)", r);
    errno = SENTINEL;
    r = realloc(q, 0);
    line("realloc(p, 0)", r);
  }
  CALL(reallocarray(NULL, 0, 0));
  CALL(reallocarray(NULL, half, 2));
  CALL(reallocarray(NULL, 16, 16));
  CALL(reallocarray(NULL, 1, big));
  CALL(memalign(0, 16));
  CALL(memalign(1, 16));
  CALL(memalign(3, 16));
  CALL(memalign(24, 100));
  CALL(memalign(64, 0));
  CALL(memalign(64, big));
  CALL(memalign(64, pd));
  CALL(memalign(half, 16));
  CALL(memalign(half + 1, 16));
  CALL(memalign(big, 16));
  CALL(aligned_alloc(64, 64));
  CALL(aligned_alloc(64, 0));
  CALL(aligned_alloc(64, 100));
  CALL(aligned_alloc(64, big));
  CALL(aligned_alloc(8, 8));
  CALL(aligned_alloc(half, 16));
  CALL(aligned_alloc(0, 16));
  CALL(aligned_alloc(3, 16));
  CALL(aligned_alloc(24, 100));
  PM(64, 64);
  PM(64, 0);
  PM(8, 8);
  PM(16, 1);
  PM(0, 16);
  PM(3, 16);
  PM(4, 16);
  PM(24, 16);
  PM(64, big);
  PM(64, pd);
  PM(half, 16);
  CALL(valloc(0));
  CALL(valloc(1));
  CALL(valloc(big));
  CALL(valloc(big - page));
  CALL(pvalloc(0));
  CALL(pvalloc(1));
  CALL(pvalloc(big));
  CALL(pvalloc(big - page));
  CALL(pvalloc(big - 2 * page));
  CALL(pvalloc(pd));
  return 0;
}
