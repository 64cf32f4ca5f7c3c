/* Tests of the option table and the MPROF_CONF parser (plugin/mprof_conf.c). */
#include "mprof_conf.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

#define MAX_LINES 8

typedef struct {
  unsigned n;
  char lines[MAX_LINES][512];
} capture_t;

/* The report callback: checks the line contract and keeps the first MAX_LINES lines. */
static void capture(const char* line, void* arg) {
  capture_t* c = arg;
  size_t len = strlen(line);
  assert_true(len < 512);
  for (size_t i = 0; i < len; i++) {
    assert_true(line[i] >= 0x20 && line[i] <= 0x7e); /* no newline, no control byte */
  }
  assert_memory_equal(line, "mprof: ", 7);
  if (c->n < MAX_LINES) memcpy(c->lines[c->n], line, len + 1);
  c->n++;
}

/* The conf string of the last parse(), named in failure messages of the checks below. */
static const char* current_conf = "";

#define EXPECT_INT(a, b)                                                                           \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) fail_msg("%s == %lld, expected %lld (conf \"%s\")", #a, a_, b_, current_conf);   \
  } while (0)
#define EXPECT_STR(a, b)                                                                           \
  do {                                                                                             \
    const char *a_ = (a), *b_ = (b);                                                               \
    if (strcmp(a_, b_) != 0)                                                                       \
      fail_msg("%s == \"%s\", expected \"%s\" (conf \"%s\")", #a, a_, b_, current_conf);           \
  } while (0)

/* Parses conf on top of opts, checks that the return value matches the lines reported. */
static unsigned parse(const char* conf, mprof_opts_t* opts, capture_t* c) {
  memset(c, 0, sizeof *c);
  current_conf = conf ? conf : "(null)";
  unsigned errors = mprof__conf_parse(conf, opts, capture, c);
  EXPECT_INT(errors, c->n);
  return errors;
}

static void assert_opts_equal(const mprof_opts_t* a, const mprof_opts_t* b) {
  EXPECT_INT(a->prof, b->prof);
  EXPECT_INT(a->prof_active, b->prof_active);
  EXPECT_INT(a->lg_prof_sample, b->lg_prof_sample);
  EXPECT_INT(a->prof_stack_depth, b->prof_stack_depth);
  EXPECT_STR(a->prof_prefix, b->prof_prefix);
  EXPECT_INT(a->prof_final, b->prof_final);
  EXPECT_INT(a->lg_prof_interval, b->lg_prof_interval);
  EXPECT_INT(a->prof_gdump, b->prof_gdump);
  EXPECT_STR(a->prof_format, b->prof_format);
  EXPECT_INT(a->lg_prof_epoch, b->lg_prof_epoch);
  EXPECT_INT(a->prof_leak, b->prof_leak);
  EXPECT_INT(a->prof_age, b->prof_age);
  EXPECT_INT(a->prof_peak, b->prof_peak);
  EXPECT_INT(a->prof_thread_labels, b->prof_thread_labels);
  EXPECT_STR(a->prof_dump_signal, b->prof_dump_signal);
  EXPECT_INT(a->prof_dump_over, b->prof_dump_over);
  EXPECT_INT(a->prof_mutex_fraction, b->prof_mutex_fraction);
  EXPECT_INT(a->prof_mutex_app, b->prof_mutex_app);
  EXPECT_INT(a->prof_dump_threads, b->prof_dump_threads);
  EXPECT_STR(a->prof_threads_signal, b->prof_threads_signal);
}

/* Reads a non-string option through its descriptor (the table itself is checked separately). */
static long long opt_get(const mprof_opts_t* o, const mprof_opt_desc_t* d) {
  const char* f = (const char*)o + d->offset;
  switch (d->type) {
  case MPROF_OPT_BOOL:
    return *(const bool*)f;
  case MPROF_OPT_SIZE:
    return (long long)*(const size_t*)f;
  case MPROF_OPT_SSIZE:
    return *(const ssize_t*)f;
  case MPROF_OPT_UNSIGNED:
    return *(const unsigned*)f;
  case MPROF_OPT_STRING:
    break;
  }
  fail_msg("opt_get on string option %s", d->name);
  return 0;
}

static void opt_set(mprof_opts_t* o, const mprof_opt_desc_t* d, long long v, const char* s) {
  char* f = (char*)o + d->offset;
  switch (d->type) {
  case MPROF_OPT_BOOL:
    *(bool*)f = v != 0;
    break;
  case MPROF_OPT_SIZE:
    *(size_t*)f = (size_t)v;
    break;
  case MPROF_OPT_SSIZE:
    *(ssize_t*)f = (ssize_t)v;
    break;
  case MPROF_OPT_UNSIGNED:
    *(unsigned*)f = (unsigned)v;
    break;
  case MPROF_OPT_STRING:
    strcpy(f, s);
    break;
  }
}

static const mprof_opt_desc_t* must_find(const char* name) {
  const mprof_opt_desc_t* d = mprof__opt_find(name, strlen(name));
  assert_non_null(d);
  return d;
}

/* ---------------------------------------------------------------------------------------------
 * Defaults and the descriptor table
 * ------------------------------------------------------------------------------------------- */

static void test_defaults_are_the_documented_values(void** state) {
  (void)state;
  mprof_opts_t o;
  memset(&o, 0x5a, sizeof o);
  mprof__opts_default(&o);
  assert_true(o.prof);
  assert_true(o.prof_active);
  EXPECT_INT(o.lg_prof_sample, 19);
  EXPECT_INT(o.prof_stack_depth, 128);
  EXPECT_STR(o.prof_prefix, "mprof");
  EXPECT_STR(o.prof_format, "pprof");
  assert_false(o.prof_final);
  EXPECT_INT(o.lg_prof_interval, -1);
  assert_false(o.prof_gdump);
  EXPECT_INT(o.lg_prof_epoch, 30);
  assert_false(o.prof_leak);
  assert_true(o.prof_age);
  assert_false(o.prof_peak);
  assert_false(o.prof_thread_labels);
  EXPECT_STR(o.prof_dump_signal, "");
  EXPECT_INT(o.prof_dump_over, 0);
  EXPECT_INT(o.prof_mutex_fraction, 0);
  assert_false(o.prof_mutex_app);
  assert_false(o.prof_dump_threads);
  EXPECT_STR(o.prof_threads_signal, "SIGRTMAX-7");
}

static void test_descriptor_table_lists_every_field_once_in_order(void** state) {
  (void)state;
  static const struct {
    const char* name;
    mprof_opt_type_t type;
    size_t offset;
    long long min, max;
  } want[] = {
      {"prof", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof), 0, 1},
      {"prof_active", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_active), 0, 1},
      {"lg_prof_sample", MPROF_OPT_SIZE, offsetof(mprof_opts_t, lg_prof_sample), 0, 62},
      {"prof_stack_depth", MPROF_OPT_UNSIGNED, offsetof(mprof_opts_t, prof_stack_depth), 1, 1024},
      {"prof_prefix", MPROF_OPT_STRING, offsetof(mprof_opts_t, prof_prefix), 0, 1023},
      {"prof_final", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_final), 0, 1},
      {"lg_prof_interval", MPROF_OPT_SSIZE, offsetof(mprof_opts_t, lg_prof_interval), -1, 62},
      {"prof_gdump", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_gdump), 0, 1},
      {"lg_prof_epoch", MPROF_OPT_SSIZE, offsetof(mprof_opts_t, lg_prof_epoch), -1, 62},
      {"prof_leak", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_leak), 0, 1},
      {"prof_age", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_age), 0, 1},
      {"prof_peak", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_peak), 0, 1},
      {"prof_thread_labels", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_thread_labels), 0, 1},
      {"prof_dump_signal", MPROF_OPT_STRING, offsetof(mprof_opts_t, prof_dump_signal), 0, 15},
      {"prof_dump_over", MPROF_OPT_SIZE, offsetof(mprof_opts_t, prof_dump_over), 0, LLONG_MAX},
      {"prof_format", MPROF_OPT_STRING, offsetof(mprof_opts_t, prof_format), 0, 6},
      {"prof_mutex_fraction", MPROF_OPT_UNSIGNED, offsetof(mprof_opts_t, prof_mutex_fraction), 0,
       2147483647},
      {"prof_mutex_app", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_mutex_app), 0, 1},
      {"prof_dump_threads", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_dump_threads), 0, 1},
      {"prof_threads_signal", MPROF_OPT_STRING, offsetof(mprof_opts_t, prof_threads_signal), 0, 15},
  };
  const size_t n = sizeof want / sizeof want[0];
  EXPECT_INT(mprof__opt_ndescs, n);
  for (size_t i = 0; i < n; i++) {
    const mprof_opt_desc_t* d = &mprof__opt_descs[i];
    EXPECT_STR(d->name, want[i].name);
    EXPECT_INT(d->type, want[i].type);
    EXPECT_INT(d->offset, want[i].offset);
    EXPECT_INT(d->min, want[i].min);
    EXPECT_INT(d->max, want[i].max);
    assert_non_null(d->doc);
    assert_true(strlen(d->doc) > 10);
    assert_ptr_equal(mprof__opt_find(d->name, strlen(d->name)), d);
  }
}

/* Starts from a state where every field differs from its default, parses "name:default" for
 * every descriptor (the default read through the table), and expects exactly the defaults: a
 * field missing from the table, or a descriptor that writes the wrong place, stays scrambled. */
static void test_every_descriptor_parses_its_default_back(void** state) {
  (void)state;
  mprof_opts_t def, o;
  mprof__opts_default(&def);
  mprof__opts_default(&o);
  o.prof = false;
  o.prof_active = false;
  o.lg_prof_sample = 3;
  o.prof_stack_depth = 7;
  strcpy(o.prof_prefix, "scrambled");
  o.prof_final = true;
  o.lg_prof_interval = 5;
  o.prof_gdump = true;
  o.lg_prof_epoch = 4;
  o.prof_leak = true;
  o.prof_age = false;
  o.prof_peak = true;
  o.prof_thread_labels = true;
  strcpy(o.prof_dump_signal, "USR1");
  o.prof_dump_over = 12345;
  strcpy(o.prof_format, "both");
  o.prof_mutex_fraction = 9;
  o.prof_mutex_app = true;
  o.prof_dump_threads = true;
  strcpy(o.prof_threads_signal, "USR2");

  static char conf[4096];
  size_t len = 0;
  for (size_t i = 0; i < mprof__opt_ndescs; i++) {
    const mprof_opt_desc_t* d = &mprof__opt_descs[i];
    const char* sep = i ? "," : "";
    if (d->type == MPROF_OPT_STRING) {
      len += (size_t)snprintf(conf + len, sizeof conf - len, "%s%s:%s", sep, d->name,
                              (const char*)&def + d->offset);
    } else if (d->type == MPROF_OPT_BOOL) {
      len += (size_t)snprintf(conf + len, sizeof conf - len, "%s%s:%s", sep, d->name,
                              opt_get(&def, d) ? "true" : "false");
    } else {
      len += (size_t)snprintf(conf + len, sizeof conf - len, "%s%s:%lld", sep, d->name,
                              opt_get(&def, d));
    }
    assert_true(len < sizeof conf);
  }
  capture_t c;
  EXPECT_INT(parse(conf, &o, &c), 0);
  assert_opts_equal(&o, &def);
}

static void test_find_matches_whole_names_only(void** state) {
  (void)state;
  EXPECT_STR(mprof__opt_find("prof", 4)->name, "prof");
  EXPECT_STR(mprof__opt_find("prof_active:true", 11)->name, "prof_active");
  EXPECT_STR(mprof__opt_find("prof_activeXYZ", 4)->name, "prof");
  assert_null(mprof__opt_find("prof", 3));
  assert_null(mprof__opt_find("prof_", 5));
  assert_null(mprof__opt_find("Prof", 4));
  assert_null(mprof__opt_find("", 0));
  assert_null(mprof__opt_find("prof_leak_x", 11));
}

/* ---------------------------------------------------------------------------------------------
 * One pair at a time, starting from the defaults
 * ------------------------------------------------------------------------------------------- */

typedef struct {
  const char* conf;
  const char* name;     /* the option checked afterwards */
  long long want;       /* its expected value (booleans as 0/1) */
  const char* want_str; /* or, for prof_prefix, its expected string */
  const char* msg;      /* NULL: no error; else the one expected report line */
} pair_case_t;

static const pair_case_t valid_cases[] = {
    {"prof:false", "prof", 0, NULL, NULL},
    {"prof:true", "prof", 1, NULL, NULL},
    {"prof_active:false", "prof_active", 0, NULL, NULL},
    {"lg_prof_sample:0", "lg_prof_sample", 0, NULL, NULL},
    {"lg_prof_sample:62", "lg_prof_sample", 62, NULL, NULL},
    {"lg_prof_sample:0x10", "lg_prof_sample", 16, NULL, NULL},
    {"lg_prof_sample:0X3e", "lg_prof_sample", 62, NULL, NULL},
    {"lg_prof_sample:010", "lg_prof_sample", 8, NULL, NULL},
    {"lg_prof_sample:00", "lg_prof_sample", 0, NULL, NULL},
    {"lg_prof_sample:0000000000000000000000000000000000000000000000000000000000000021",
     "lg_prof_sample", 17, NULL, NULL},
    {"prof_stack_depth:1", "prof_stack_depth", 1, NULL, NULL},
    {"prof_stack_depth:1024", "prof_stack_depth", 1024, NULL, NULL},
    {"prof_stack_depth:0x400", "prof_stack_depth", 1024, NULL, NULL},
    {"prof_stack_depth:0100", "prof_stack_depth", 64, NULL, NULL},
    {"prof_prefix:/tmp/heap", "prof_prefix", 0, "/tmp/heap", NULL},
    {"prof_prefix:", "prof_prefix", 0, "", NULL},
    {"prof_prefix:/a:b/c d", "prof_prefix", 0, "/a:b/c d", NULL},
    {"prof_format:jeprof", "prof_format", 0, "jeprof", NULL},
    {"prof_format:both", "prof_format", 0, "both", NULL},
    {"prof_format:pprof", "prof_format", 0, "pprof", NULL},
    {"prof_format:heap", "prof_format", 0, "pprof",
     "mprof: invalid conf pair \"prof_format:heap\": not one of pprof|jeprof|both"},
    {"prof_format:", "prof_format", 0, "pprof",
     "mprof: invalid conf pair \"prof_format:\": not one of pprof|jeprof|both"},
    {"prof_format:jeprofx", "prof_format", 0, "pprof",
     "mprof: invalid conf pair \"prof_format:jeprofx\": too long (at most 6 bytes)"},
    {"prof_final:true", "prof_final", 1, NULL, NULL},
    {"lg_prof_interval:-1", "lg_prof_interval", -1, NULL, NULL},
    {"lg_prof_interval:0", "lg_prof_interval", 0, NULL, NULL},
    {"lg_prof_interval:62", "lg_prof_interval", 62, NULL, NULL},
    {"lg_prof_interval:+30", "lg_prof_interval", 30, NULL, NULL},
    {"lg_prof_interval:-0x1", "lg_prof_interval", -1, NULL, NULL},
    {"lg_prof_interval:-01", "lg_prof_interval", -1, NULL, NULL},
    {"lg_prof_interval:-0", "lg_prof_interval", 0, NULL, NULL},
    {"lg_prof_interval:0x1F", "lg_prof_interval", 31, NULL, NULL},
    {"prof_gdump:true", "prof_gdump", 1, NULL, NULL},
    {"lg_prof_epoch:-1", "lg_prof_epoch", -1, NULL, NULL},
    {"lg_prof_epoch:0", "lg_prof_epoch", 0, NULL, NULL},
    {"lg_prof_epoch:62", "lg_prof_epoch", 62, NULL, NULL},
    {"lg_prof_epoch:0x1e", "lg_prof_epoch", 30, NULL, NULL},
    {"lg_prof_epoch:024", "lg_prof_epoch", 20, NULL, NULL},
    {"prof_leak:true", "prof_leak", 1, NULL, NULL},
    {"prof_age:false", "prof_age", 0, NULL, NULL},
    {"prof_peak:true", "prof_peak", 1, NULL, NULL},
    {"prof_thread_labels:true", "prof_thread_labels", 1, NULL, NULL},
    {"prof_dump_signal:SIGUSR2", "prof_dump_signal", 0, "SIGUSR2", NULL},
    {"prof_dump_signal:USR1", "prof_dump_signal", 0, "USR1", NULL},
    {"prof_dump_signal:12", "prof_dump_signal", 0, "12", NULL},
    {"prof_dump_signal:SIGRTMIN+2", "prof_dump_signal", 0, "SIGRTMIN+2", NULL},
    {"prof_dump_signal:RTMAX", "prof_dump_signal", 0, "RTMAX", NULL},
    {"prof_dump_signal:", "prof_dump_signal", 0, "", NULL},
    {"prof_dump_over:1048576", "prof_dump_over", 1048576, NULL, NULL},
    {"prof_dump_over:0x7fffffffffffffff", "prof_dump_over", LLONG_MAX, NULL, NULL},
};

static const pair_case_t invalid_cases[] = {
    {"prof_dump_signal:SIGFOO", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:SIGFOO\": not a signal name or number"},
    {"prof_dump_signal:0", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:0\": not a signal name or number"},
    {"prof_dump_signal:usr2", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:usr2\": not a signal name or number"},
    {"prof_dump_signal:SIGRTMAX+1", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:SIGRTMAX+1\": not a signal name or number"},
    {"prof_dump_signal:999", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:999\": not a signal name or number"},
    {"prof_dump_signal:SIGKILL", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:SIGKILL\": a signal mprof cannot use (it "
     "cannot be caught)"},
    {"prof_dump_signal:STOP", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:STOP\": a signal mprof cannot use (it cannot "
     "be caught)"},
    {"prof_dump_signal:11", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:11\": a signal mprof cannot use (raised by "
     "faults)"},
    {"prof_dump_signal:32", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:32\": a signal mprof cannot use (reserved by "
     "the C library)"},
    {"prof_dump_signal:SIGUSR2SIGUSR2XY", "prof_dump_signal", 0, "",
     "mprof: invalid conf pair \"prof_dump_signal:SIGUSR2SIGUSR2XY\": too long (at most 15 "
     "bytes)"},
    {"prof_dump_over:-1", "prof_dump_over", 0, NULL,
     "mprof: invalid conf pair \"prof_dump_over:-1\": not an integer"},
    {"prof_foo:1", "prof", 1, NULL, "mprof: invalid conf pair \"prof_foo:1\": unknown option"},
    {"Prof:false", "prof", 1, NULL, "mprof: invalid conf pair \"Prof:false\": unknown option"},
    {"prof_:", "prof", 1, NULL, "mprof: invalid conf pair \"prof_:\": unknown option"},
    {"prof:yes", "prof", 1, NULL,
     "mprof: invalid conf pair \"prof:yes\": not a boolean (expected true or false)"},
    {"prof:TRUE", "prof", 1, NULL,
     "mprof: invalid conf pair \"prof:TRUE\": not a boolean (expected true or false)"},
    {"prof:0", "prof", 1, NULL,
     "mprof: invalid conf pair \"prof:0\": not a boolean (expected true or false)"},
    {"prof_leak:", "prof_leak", 0, NULL,
     "mprof: invalid conf pair \"prof_leak:\": not a boolean (expected true or false)"},
    {"prof_final:true ", "prof_final", 0, NULL,
     "mprof: invalid conf pair \"prof_final:true \": not a boolean (expected true or false)"},
    {"lg_prof_sample:abc", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample:abc\": not an integer"},
    {"lg_prof_sample:", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample:\": not an integer"},
    {"lg_prof_sample:12k", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample:12k\": not an integer"},
    {"lg_prof_sample:0x", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample:0x\": not an integer"},
    {"lg_prof_sample:08", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample:08\": not an integer"},
    {"lg_prof_sample: 5", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample: 5\": not an integer"},
    {"lg_prof_sample:-1", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample:-1\": not an integer"},
    {"lg_prof_sample:+1", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample:+1\": not an integer"},
    {"prof_stack_depth:-5", "prof_stack_depth", 128, NULL,
     "mprof: invalid conf pair \"prof_stack_depth:-5\": not an integer"},
    {"lg_prof_interval:--1", "lg_prof_interval", -1, NULL,
     "mprof: invalid conf pair \"lg_prof_interval:--1\": not an integer"},
    {"lg_prof_interval:-", "lg_prof_interval", -1, NULL,
     "mprof: invalid conf pair \"lg_prof_interval:-\": not an integer"},
    {"lg_prof_sample:63", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample:63\": out of range (0..62)"},
    {"lg_prof_sample:9223372036854775808", "lg_prof_sample", 19, NULL,
     "mprof: invalid conf pair \"lg_prof_sample:9223372036854775808\": out of range (0..62)"},
    {"prof_stack_depth:0", "prof_stack_depth", 128, NULL,
     "mprof: invalid conf pair \"prof_stack_depth:0\": out of range (1..1024)"},
    {"prof_stack_depth:1025", "prof_stack_depth", 128, NULL,
     "mprof: invalid conf pair \"prof_stack_depth:1025\": out of range (1..1024)"},
    {"prof_stack_depth:4294967297", "prof_stack_depth", 128, NULL,
     "mprof: invalid conf pair \"prof_stack_depth:4294967297\": out of range (1..1024)"},
    {"lg_prof_interval:-2", "lg_prof_interval", -1, NULL,
     "mprof: invalid conf pair \"lg_prof_interval:-2\": out of range (-1..62)"},
    {"lg_prof_interval:-9223372036854775808", "lg_prof_interval", -1, NULL,
     "mprof: invalid conf pair \"lg_prof_interval:-9223372036854775808\": out of range (-1..62)"},
    {"lg_prof_interval:-9223372036854775809", "lg_prof_interval", -1, NULL,
     "mprof: invalid conf pair \"lg_prof_interval:-9223372036854775809\": out of range (-1..62)"},
    {"lg_prof_epoch:63", "lg_prof_epoch", 30, NULL,
     "mprof: invalid conf pair \"lg_prof_epoch:63\": out of range (-1..62)"},
    {"lg_prof_epoch:0xffffffffffffffffff", "lg_prof_epoch", 30, NULL,
     "mprof: invalid conf pair \"lg_prof_epoch:0xffffffffffffffffff\": out of range (-1..62)"},
};

static void run_pair_cases(const pair_case_t* cases, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const pair_case_t* tc = &cases[i];
    mprof_opts_t o, want;
    mprof__opts_default(&o);
    mprof__opts_default(&want);
    const mprof_opt_desc_t* d = must_find(tc->name);
    if (d->type == MPROF_OPT_STRING) {
      assert_non_null(tc->want_str);
      opt_set(&want, d, 0, tc->want_str);
    } else {
      opt_set(&want, d, tc->want, NULL);
    }
    capture_t c;
    unsigned errors = parse(tc->conf, &o, &c);
    if (tc->msg == NULL) {
      EXPECT_INT(errors, 0);
    } else {
      EXPECT_INT(errors, 1);
      EXPECT_STR(c.lines[0], tc->msg);
    }
    assert_opts_equal(&o, &want); /* and every other option kept its default */
  }
}

static void test_valid_values_are_applied(void** state) {
  (void)state;
  run_pair_cases(valid_cases, sizeof valid_cases / sizeof valid_cases[0]);
}

static void test_invalid_pairs_report_one_exact_line_and_keep_the_value(void** state) {
  (void)state;
  run_pair_cases(invalid_cases, sizeof invalid_cases / sizeof invalid_cases[0]);
}

/* A string value is stored byte for byte, whatever it contains (the quoting of messages is
 * for display only). */
static void test_prefix_keeps_every_byte_but_comma(void** state) {
  (void)state;
  mprof_opts_t o;
  mprof__opts_default(&o);
  capture_t c;
  EXPECT_INT(parse("prof_prefix:a\"b\\c\x01\xc3\xa9:x", &o, &c), 0);
  EXPECT_STR(o.prof_prefix, "a\"b\\c\x01\xc3\xa9:x");
}

/* Integer syntax and overflow must agree with strtoll(..., 0) on strings it consumes entirely
 * (leading white space aside, which mprof rejects). */
static void test_integers_read_like_strtoll(void** state) {
  (void)state;
  static const char* const nums[] = {
      "0",
      "00",
      "07",
      "08",
      "0x",
      "0X1f",
      "0x3E",
      "0xg",
      "1e3",
      "+",
      "-",
      "+-1",
      "-0x",
      "-0x1",
      "-01",
      "+62",
      "062",
      "0o7",
      "1_000",
      "99999999999999999999",
      "9223372036854775807",
      "9223372036854775808",
      "-9223372036854775808",
      "-9223372036854775809",
      "0x7fffffffffffffff",
      "0x8000000000000000",
      "0777777777777777777777",
      "01000000000000000000000",
      "0x000000000000000000000000000000003e",
      "-0000000000000000000000000000000000001",
      "12 ",
  };
  const mprof_opt_desc_t* d = must_find("lg_prof_interval");
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
    const char* s = nums[i];
    char* end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    bool whole = end != s && *end == '\0';
    bool range = errno != ERANGE;

    char conf[128];
    snprintf(conf, sizeof conf, "lg_prof_interval:%s", s);
    mprof_opts_t o;
    mprof__opts_default(&o);
    o.lg_prof_interval = 7;
    capture_t c;
    unsigned errors = parse(conf, &o, &c);
    char want_msg[256];
    if (!whole) {
      snprintf(want_msg, sizeof want_msg, "mprof: invalid conf pair \"%s\": not an integer", conf);
      EXPECT_INT(errors, 1);
      EXPECT_STR(c.lines[0], want_msg);
      EXPECT_INT(o.lg_prof_interval, 7);
    } else if (!range || v < d->min || v > d->max) {
      snprintf(want_msg, sizeof want_msg, "mprof: invalid conf pair \"%s\": out of range (-1..62)",
               conf);
      EXPECT_INT(errors, 1);
      EXPECT_STR(c.lines[0], want_msg);
      EXPECT_INT(o.lg_prof_interval, 7);
    } else {
      EXPECT_INT(errors, 0);
      EXPECT_INT(o.lg_prof_interval, v);
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * Several pairs
 * ------------------------------------------------------------------------------------------- */

static void test_a_bad_pair_keeps_the_previous_value_and_later_pairs_still_apply(void** state) {
  (void)state;
  mprof_opts_t o, want;
  mprof__opts_default(&o);
  mprof__opts_default(&want);
  capture_t c;
  unsigned errors = parse("lg_prof_sample:3,lg_prof_sample:99,prof:maybe,prof_leak:true,"
                          "prof_stack_depth:0,prof_final:true",
                          &o, &c);
  EXPECT_INT(errors, 3);
  EXPECT_STR(c.lines[0], "mprof: invalid conf pair \"lg_prof_sample:99\": out of range (0..62)");
  EXPECT_STR(c.lines[1], "mprof: invalid conf pair \"prof:maybe\": not a boolean "
                         "(expected true or false)");
  EXPECT_STR(c.lines[2], "mprof: invalid conf pair \"prof_stack_depth:0\": out of range (1..1024)");
  want.lg_prof_sample = 3;
  want.prof_leak = true;
  want.prof_final = true;
  assert_opts_equal(&o, &want);
}

static void test_parse_starts_from_the_callers_values_not_the_defaults(void** state) {
  (void)state;
  mprof_opts_t o, want;
  mprof__opts_default(&o);
  o.lg_prof_epoch = 12;
  strcpy(o.prof_prefix, "/var/tmp/p");
  want = o;
  capture_t c;
  EXPECT_INT(parse("lg_prof_epoch:x,prof_prefix:0123", &o, &c), 1);
  strcpy(want.prof_prefix, "0123");
  assert_opts_equal(&o, &want);
  EXPECT_INT(o.lg_prof_epoch, 12);
}

static void test_later_pairs_override_earlier_ones(void** state) {
  (void)state;
  mprof_opts_t o, want;
  mprof__opts_default(&o);
  mprof__opts_default(&want);
  capture_t c;
  EXPECT_INT(parse("lg_prof_sample:3,prof_prefix:a,prof_active:false,lg_prof_sample:5,"
                   "prof_prefix:bb,prof_active:true,lg_prof_interval:4,lg_prof_interval:-1",
                   &o, &c),
             0);
  want.lg_prof_sample = 5;
  strcpy(want.prof_prefix, "bb");
  assert_opts_equal(&o, &want);
}

static void test_every_error_is_counted_without_a_callback(void** state) {
  (void)state;
  mprof_opts_t o;
  mprof__opts_default(&o);
  EXPECT_INT(mprof__conf_parse("x:1,prof:2,lg_prof_sample:99,prof_leak:true", &o, NULL, NULL), 3);
  assert_true(o.prof_leak);
  EXPECT_INT(mprof__conf_parse("prof_final:true,bad key:1", &o, NULL, NULL), 1);
  assert_true(o.prof_final);
}

static void test_empty_and_null_conf_change_nothing(void** state) {
  (void)state;
  mprof_opts_t o, want;
  mprof__opts_default(&o);
  mprof__opts_default(&want);
  capture_t c;
  EXPECT_INT(parse("", &o, &c), 0);
  assert_opts_equal(&o, &want);
  EXPECT_INT(parse(NULL, &o, &c), 0);
  assert_opts_equal(&o, &want);
}

/* ---------------------------------------------------------------------------------------------
 * Malformed strings: parsing stops; pairs before the bad spot are applied
 * ------------------------------------------------------------------------------------------- */

typedef struct {
  const char* conf;
  const char* applied; /* a well-formed conf with the same effect as conf */
  unsigned errors;     /* invalid pairs before the malformed spot, plus one */
  const char* msg;     /* the last report line */
} malformed_case_t;

static const malformed_case_t malformed_cases[] = {
    {"prof", "", 1, "mprof: malformed conf string at \"prof\": missing ':' after key"},
    {"lg_prof_sample:3,prof", "lg_prof_sample:3", 1,
     "mprof: malformed conf string at \"prof\": missing ':' after key"},
    {"lg_prof_sample:3,prof,prof_leak:true", "lg_prof_sample:3", 1,
     "mprof: malformed conf string at \"prof,prof_leak:true\": missing ':' after key"},
    {":true", "", 1, "mprof: malformed conf string at \":true\": empty key"},
    {",", "", 1, "mprof: malformed conf string at \",\": empty key"},
    {"prof:false,,prof_leak:true", "prof:false", 1,
     "mprof: malformed conf string at \",prof_leak:true\": empty key"},
    {"prof-active:false", "", 1,
     "mprof: malformed conf string at \"prof-active:false\": invalid character in key"},
    {" prof:false", "", 1,
     "mprof: malformed conf string at \" prof:false\": invalid character in key"},
    {"prof:false, prof_leak:true", "prof:false", 1,
     "mprof: malformed conf string at \" prof_leak:true\": invalid character in key"},
    {"prof_final:true,prof active:false,prof_leak:true", "prof_final:true", 1,
     "mprof: malformed conf string at \"prof active:false,prof_leak:true\": invalid character in "
     "key"},
    {"prof\n:true", "", 1,
     "mprof: malformed conf string at \"prof\\x0a:true\": invalid character in key"},
    {"prof:false,", "prof:false", 1, "mprof: malformed conf string at \",\": trailing comma"},
    {"prof:nope,prof_gdump:true,", "prof_gdump:true", 2,
     "mprof: malformed conf string at \",\": trailing comma"},
    {"lg_prof_sample:7,lg_prof_sample:1,", "lg_prof_sample:1", 1,
     "mprof: malformed conf string at \",\": trailing comma"},
};

static void test_malformed_strings_stop_parsing_after_applying_earlier_pairs(void** state) {
  (void)state;
  for (size_t i = 0; i < sizeof malformed_cases / sizeof malformed_cases[0]; i++) {
    const malformed_case_t* tc = &malformed_cases[i];
    mprof_opts_t o, want;
    mprof__opts_default(&o);
    mprof__opts_default(&want);
    capture_t c;
    EXPECT_INT(parse(tc->applied, &want, &c), 0);
    EXPECT_INT(parse(tc->conf, &o, &c), tc->errors);
    EXPECT_STR(c.lines[tc->errors - 1], tc->msg);
    assert_opts_equal(&o, &want);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Lengths, quoting and the environment
 * ------------------------------------------------------------------------------------------- */

static void test_prefix_of_1023_bytes_is_accepted_and_1024_rejected(void** state) {
  (void)state;
  static char conf[2048], want_msg[512];
  const char* key = "prof_prefix:";
  const size_t klen = strlen(key);
  mprof_opts_t o;
  capture_t c;

  memcpy(conf, key, klen);
  memset(conf + klen, 'p', 1023);
  conf[klen + 1023] = '\0';
  mprof__opts_default(&o);
  EXPECT_INT(parse(conf, &o, &c), 0);
  EXPECT_INT(strlen(o.prof_prefix), 1023);
  assert_memory_equal(o.prof_prefix, conf + klen, 1024);

  conf[klen + 1023] = 'q';
  conf[klen + 1024] = '\0';
  mprof__opts_default(&o);
  EXPECT_INT(parse(conf, &o, &c), 1);
  EXPECT_STR(o.prof_prefix, "mprof");
  /* The quote holds the first 200 bytes of the pair, then "...". */
  int n = snprintf(want_msg, sizeof want_msg,
                   "mprof: invalid conf pair \"%.200s...\": too long "
                   "(at most 1023 bytes)",
                   conf);
  assert_true(n > 0 && (size_t)n < sizeof want_msg);
  EXPECT_STR(c.lines[0], want_msg);
  EXPECT_INT(strlen(c.lines[0]), 26 + 200 + 4 + 2 + 29);
}

static void test_quoted_text_is_escaped_and_cut_at_200_bytes(void** state) {
  (void)state;
  static char conf[512], want_msg[512];
  mprof_opts_t o;
  capture_t c;
  mprof__opts_default(&o);

  /* Exactly 200 bytes of pair: quoted whole, no "...". */
  memset(conf, 'k', 195);
  memcpy(conf + 195, ":true", 6);
  EXPECT_INT(parse(conf, &o, &c), 1);
  snprintf(want_msg, sizeof want_msg, "mprof: invalid conf pair \"%.200s\": unknown option", conf);
  EXPECT_STR(c.lines[0], want_msg);

  /* 201 bytes: cut. */
  memset(conf, 'k', 196);
  memcpy(conf + 196, ":true", 6);
  EXPECT_INT(parse(conf, &o, &c), 1);
  snprintf(want_msg, sizeof want_msg, "mprof: invalid conf pair \"%.200s...\": unknown option",
           conf);
  EXPECT_STR(c.lines[0], want_msg);

  /* Escapes count toward the 200 bytes and are never split. */
  memcpy(conf, "prof:", 5);
  memset(conf + 5, '\x7f', 60);
  conf[65] = '\0';
  EXPECT_INT(parse(conf, &o, &c), 1);
  char* q = want_msg;
  q += sprintf(q, "mprof: invalid conf pair \"prof:");
  for (int i = 0; i < 48; i++)
    q += sprintf(q, "\\x7f"); /* 5 + 48 * 4 = 197; one more is 201 */
  sprintf(q, "...\": not a boolean (expected true or false)");
  EXPECT_STR(c.lines[0], want_msg);

  EXPECT_INT(parse("prof:\"q\\\t", &o, &c), 1);
  EXPECT_STR(c.lines[0], "mprof: invalid conf pair \"prof:\\\"q\\\\\\x09\": not a boolean "
                         "(expected true or false)");

  /* A malformed rest is quoted the same way. */
  memset(conf, 'z', 300);
  conf[0] = '-';
  conf[300] = '\0';
  EXPECT_INT(parse(conf, &o, &c), 1);
  snprintf(want_msg, sizeof want_msg,
           "mprof: malformed conf string at \"%.200s...\": invalid character in key", conf);
  EXPECT_STR(c.lines[0], want_msg);
}

static void test_conf_is_read_from_MPROF_CONF(void** state) {
  (void)state;
  EXPECT_INT(setenv("MPROF_CONF", "prof_leak:true", 1), 0);
  const char* v = mprof__conf_from_env();
  assert_non_null(v);
  EXPECT_STR(v, "prof_leak:true");
  EXPECT_INT(unsetenv("MPROF_CONF"), 0);
  assert_null(mprof__conf_from_env());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_are_the_documented_values),
      cmocka_unit_test(test_descriptor_table_lists_every_field_once_in_order),
      cmocka_unit_test(test_every_descriptor_parses_its_default_back),
      cmocka_unit_test(test_find_matches_whole_names_only),
      cmocka_unit_test(test_valid_values_are_applied),
      cmocka_unit_test(test_invalid_pairs_report_one_exact_line_and_keep_the_value),
      cmocka_unit_test(test_prefix_keeps_every_byte_but_comma),
      cmocka_unit_test(test_integers_read_like_strtoll),
      cmocka_unit_test(test_a_bad_pair_keeps_the_previous_value_and_later_pairs_still_apply),
      cmocka_unit_test(test_parse_starts_from_the_callers_values_not_the_defaults),
      cmocka_unit_test(test_later_pairs_override_earlier_ones),
      cmocka_unit_test(test_every_error_is_counted_without_a_callback),
      cmocka_unit_test(test_empty_and_null_conf_change_nothing),
      cmocka_unit_test(test_malformed_strings_stop_parsing_after_applying_earlier_pairs),
      cmocka_unit_test(test_prefix_of_1023_bytes_is_accepted_and_1024_rejected),
      cmocka_unit_test(test_quoted_text_is_escaped_and_cut_at_200_bytes),
      cmocka_unit_test(test_conf_is_read_from_MPROF_CONF),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
