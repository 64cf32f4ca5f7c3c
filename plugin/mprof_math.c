/* Elementary functions without libm (see mprof_math.h). */
#include "mprof_math.h"

#include <string.h>

#define LN2_HI 6.93147180369123816490e-01 /* ln 2, high part: exact in 32 bits */
#define LN2_LO 1.90821492927058770002e-10 /* ln 2 - LN2_HI */
#define INV_LN2 1.44269504088896338700e+00

/* 2^k for -1022 <= k <= 1023, built from the bits. */
static double pow2(int k) {
  uint64_t bits = (uint64_t)(k + 1023) << 52;
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

double mprof__log(double x) {
  if (!(x > 0)) return -1.0 / 0.0;
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int e = (int)((bits >> 52) & 0x7ff);
  if (e == 0) {               /* subnormal: scale up first */
    x *= 18014398509481984.0; /* 2^54 */
    memcpy(&bits, &x, sizeof bits);
    e = (int)((bits >> 52) & 0x7ff) - 54;
  }
  if (e == 0x7ff) return x; /* infinity */
  /* x = m * 2^k with m in [1, 2); then move m to [sqrt(1/2), sqrt(2)). */
  int k = e - 1023;
  bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
  double m;
  memcpy(&m, &bits, sizeof m);
  if (m > 1.41421356237309504880) {
    m *= 0.5;
    k++;
  }
  /* log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: the series to s^23. */
  double s = (m - 1.0) / (m + 1.0);
  double s2 = s * s;
  double t = 1.0 / 23;
  for (int n = 21; n >= 1; n -= 2)
    t = 1.0 / n + s2 * t;
  return (double)k * LN2_HI + ((double)k * LN2_LO + 2.0 * s * t);
}

/* e^r for |r| <= 0.35: Taylor series to r^14. */
static double exp_small(double r) {
  double t = 1.0;
  for (int n = 14; n >= 1; n--)
    t = 1.0 + r * t / n;
  return t;
}

double mprof__exp(double x) {
  if (x != x) return x;
  if (x < -745.2) return 0.0;
  if (x > 709.78) return 1.0 / 0.0;
  double kd = x * INV_LN2;
  int k = (int)(kd < 0 ? kd - 0.5 : kd + 0.5);
  double r = (x - (double)k * LN2_HI) - (double)k * LN2_LO;
  double y = exp_small(r);
  /* 2^k in two steps where it alone would be out of range. */
  if (k < -1021) return y * pow2(k + 600) * pow2(-600);
  if (k > 1023) return y * pow2(k - 600) * pow2(600);
  return y * pow2(k);
}

double mprof__expm1(double x) {
  if (x > -0.5 && x < 0.5) {
    /* x + x^2/2! + ... + x^20/20!: the terms fall by at least 2^-n each. */
    double t = 1.0;
    for (int n = 20; n >= 2; n--)
      t = 1.0 + x * t / n;
    return x * t;
  }
  return mprof__exp(x) - 1.0;
}
