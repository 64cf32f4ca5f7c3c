/* The profiler's own elementary functions agree with libm to a few units in the last place. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "mprof_math.h"

static void check_close(const char* what, double x, double got, double want, double tol) {
  double err = want == 0 ? fabs(got) : fabs(got - want) / fabs(want);
  if (!(err <= tol))
    fail_msg("%s(%.17g) = %.17g, libm %.17g (relative error %g)", what, x, got, want, err);
}

static void test_log_matches_libm_from_subnormals_to_large_values(void** state) {
  (void)state;
  for (double x = 1e-318; x < 1e300; x *= 1.37)
    check_close("log", x, mprof__log(x), log(x), 1e-15);
  /* Uniform variates in (0, 1], as the sampling intervals draw them, and values near 1. */
  for (uint64_t i = 1; i <= 200000; i++) {
    double u = (double)((i * 0x9e3779b97f4a7c15ull >> 11) + 1) * (1.0 / 9007199254740992.0);
    check_close("log", u, mprof__log(u), log(u), 1e-15);
    double v = 1.0 + (double)i * 1e-12;
    double want = log(v);
    if (fabs(mprof__log(v) - want) > 1e-15 * fabs(want) + 1e-27)
      fail_msg("log(%.17g) = %.17g, libm %.17g", v, mprof__log(v), want);
  }
  assert_true(mprof__log(1.0) == 0.0);
  assert_true(isinf(mprof__log(0.0)) && mprof__log(0.0) < 0);
}

static void test_exp_and_expm1_match_libm(void** state) {
  (void)state;
  for (double x = -708.0; x <= 709.0; x += 0.0371)
    check_close("exp", x, mprof__exp(x), exp(x), 1e-15);
  /* Subnormal results carry fewer bits: compare absolutely there. */
  for (double x = -745.0; x < -708.0; x += 0.0371)
    if (fabs(mprof__exp(x) - exp(x)) > 1e-322)
      fail_msg("exp(%.17g) = %.17g, libm %.17g", x, mprof__exp(x), exp(x));
  for (double x = -40.0; x <= 40.0; x += 0.00137)
    check_close("expm1", x, mprof__expm1(x), expm1(x), 1e-15);
  /* -size/interval as the weights use it: tiny to large ratios. */
  for (double r = 1e-12; r < 1e3; r *= 1.1)
    check_close("expm1", -r, mprof__expm1(-r), expm1(-r), 1e-15);
  assert_true(mprof__exp(-1000.0) == 0.0);
  assert_true(isinf(mprof__exp(1000.0)));
  assert_true(mprof__expm1(0.0) == 0.0);
}

static void test_llround_rounds_halves_away_from_zero(void** state) {
  (void)state;
  const double xs[] = {0.0, 0.4, 0.5, 1.5, 2.5, -0.5, -1.5, -2.4, 123456789.5, -7.49, 1e15 + 0.5};
  for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
    assert_int_equal(mprof__llround(xs[i]), llround(xs[i]));
  assert_true(mprof__fmax(1.0, 2.0) == 2.0 && mprof__fabs(-3.0) == 3.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_matches_libm_from_subnormals_to_large_values),
      cmocka_unit_test(test_exp_and_expm1_match_libm),
      cmocka_unit_test(test_llround_rounds_halves_away_from_zero),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
