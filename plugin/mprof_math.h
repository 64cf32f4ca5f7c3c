/* The few elementary functions the profiler needs, so that libmprof.so does not load libm into
 * programs that do not use it (half a megabyte of resident pages for five functions).
 *
 * Accurate to a few units in the last place over the ranges the core uses: logarithms of
 * uniform variates in (0, 1] for the sampling intervals, exponentials of -size/interval for the
 * unbiasing weights. tests/unit/test_math.c compares them with libm. */
#ifndef MPROF_MATH_H
#define MPROF_MATH_H

#include <stdint.h>

/* Natural logarithm of x > 0 (x <= 0 gives -infinity). */
double mprof__log(double x);

/* e^x; 0 below -745, +infinity above 709.78. */
double mprof__exp(double x);

/* e^x - 1, without cancellation for small |x|. */
double mprof__expm1(double x);

/* x rounded to the nearest integer, halves away from zero; |x| < 2^62. */
static inline int64_t mprof__llround(double x) {
  return x >= 0 ? (int64_t)(x + 0.5) : -(int64_t)(-x + 0.5);
}

static inline double mprof__fmax(double a, double b) {
  return a > b ? a : b;
}

static inline double mprof__fabs(double x) {
  return x < 0 ? -x : x;
}

#endif
