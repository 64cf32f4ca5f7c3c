/* Options: this file owns the table of start-up options (names, types, ranges, defaults, one
 * line of documentation each), the parser of the MPROF_CONF string and the reading of that
 * variable from the environment. It does not decide where configuration comes from or in which
 * order sources apply, and it never prints: errors go to the caller's report callback.
 *
 * Everything here runs before the host allocator is ready, possibly from inside the first
 * malloc: no allocation (no stdio, no strtoll copies on the heap), no locks, no mutable static
 * state. Integers are therefore read by a small strtoll-compatible reader that works on a
 * length-delimited value, and messages are assembled by hand in a stack buffer. */
#include "mprof_conf.h"

#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES 512 /* report lines, including the NUL */
#define QUOTE_MAX 200      /* bytes of quoted input in a report line, escapes included */

static const char* check_signal(const char* v, size_t n);
static const char* check_format(const char* v, size_t n);

const mprof_opt_desc_t mprof__opt_descs[] = {
    {"prof", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof), 0, 1,
     "Profiling is enabled in this process; false means no allocation is ever sampled.", NULL},
    {"prof_active", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_active), 0, 1,
     "Sampling is on at start; it can be switched at run time through prof.active.", NULL},
    {"lg_prof_sample", MPROF_OPT_SIZE, offsetof(mprof_opts_t, lg_prof_sample), 0, 62,
     "Mean sampling interval is 2^n bytes allocated; 0 samples every allocation.", NULL},
    {"prof_stack_depth", MPROF_OPT_UNSIGNED, offsetof(mprof_opts_t, prof_stack_depth), 1, 1024,
     "Maximum number of frames kept per sampled stack.", NULL},
    {"prof_prefix", MPROF_OPT_STRING, offsetof(mprof_opts_t, prof_prefix), 0, MPROF_PREFIX_MAX - 1,
     "Path prefix of automatic dump files (cannot contain a comma); empty disables them.", NULL},
    {"prof_final", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_final), 0, 1,
     "Write a dump when the process exits.", NULL},
    {"lg_prof_interval", MPROF_OPT_SSIZE, offsetof(mprof_opts_t, lg_prof_interval), -1, 62,
     "Write a dump every 2^n bytes allocated on average; -1 disables interval dumps.", NULL},
    {"prof_gdump", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_gdump), 0, 1,
     "Write a dump at each new high-water mark of sampled in-use bytes.", NULL},
    {"lg_prof_epoch", MPROF_OPT_SSIZE, offsetof(mprof_opts_t, lg_prof_epoch), -1, 62,
     "Start a new epoch every 2^n bytes allocated (estimated); -1 disables automatic epochs.",
     NULL},
    {"prof_leak", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_leak), 0, 1,
     "Print a one-line summary of sampled memory still in use to stderr at exit.", NULL},
    {"prof_age", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_age), 0, 1,
     "Heap dumps split each stack's in-use figures by age in epochs (label age_epochs).", NULL},
    {"prof_peak", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_peak), 0, 1,
     "Keep the sampled in-use state at its peak, written by prof.peak.dump and at exit.", NULL},
    {"prof_thread_labels", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_thread_labels), 0, 1,
     "Label heap samples with the name (else the id) of the thread that allocated.", NULL},
    {"prof_dump_signal", MPROF_OPT_STRING, offsetof(mprof_opts_t, prof_dump_signal), 0,
     MPROF_SIGNAL_MAX - 1, "Signal (name or number) on which a dump is written; empty: none.",
     check_signal},
    {"prof_dump_over", MPROF_OPT_SIZE, offsetof(mprof_opts_t, prof_dump_over), 0, LLONG_MAX,
     "One dump the first time estimated in-use bytes reach this many; 0 disables it.", NULL},
    {"prof_format", MPROF_OPT_STRING, offsetof(mprof_opts_t, prof_format), 0, 6,
     "Format of dump files: pprof (gzipped profile.proto), jeprof (jemalloc's heap_v2 text) or "
     "both.",
     check_format},
    {"prof_mutex_fraction", MPROF_OPT_UNSIGNED, offsetof(mprof_opts_t, prof_mutex_fraction), 0,
     INT32_MAX,
     "Contention profile: one in n contended lock acquisitions is recorded; 0 disables it.", NULL},
    {"prof_mutex_app", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_mutex_app), 0, 1,
     "The contention profile includes the program's own pthread mutexes.", NULL},
    {"prof_dump_threads", MPROF_OPT_BOOL, offsetof(mprof_opts_t, prof_dump_threads), 0, 1,
     "prof_dump_signal and the final dump also write a thread snapshot (*.threads.pb.gz).", NULL},
    {"prof_threads_signal", MPROF_OPT_STRING, offsetof(mprof_opts_t, prof_threads_signal), 0,
     MPROF_SIGNAL_MAX - 1,
     "Signal that takes running threads' stacks for a thread snapshot; empty: none.", check_signal},
};
const size_t mprof__opt_ndescs = sizeof mprof__opt_descs / sizeof mprof__opt_descs[0];

void mprof__opts_default(mprof_opts_t* o) {
  memset(o, 0, sizeof *o);
  o->prof = true;
  o->prof_active = true;
  o->lg_prof_sample = 19;
  o->prof_stack_depth = 128;
  memcpy(o->prof_prefix, "mprof", sizeof "mprof");
  o->prof_final = false;
  o->lg_prof_interval = -1;
  o->prof_gdump = false;
  o->lg_prof_epoch = 30;
  o->prof_leak = false;
  o->prof_age = true;
  o->prof_peak = false;
  o->prof_thread_labels = false;
  o->prof_dump_signal[0] = '\0';
  o->prof_dump_over = 0;
  memcpy(o->prof_format, "pprof", sizeof "pprof");
  o->prof_mutex_fraction = 0;
  o->prof_mutex_app = false;
  o->prof_dump_threads = false;
  memcpy(o->prof_threads_signal, "SIGRTMAX-7", sizeof "SIGRTMAX-7");
}

mprof_format_t mprof__opts_format(const mprof_opts_t* o) {
  if (strcmp(o->prof_format, "jeprof") == 0) return MPROF_FORMAT_JEPROF;
  if (strcmp(o->prof_format, "both") == 0) return MPROF_FORMAT_BOTH;
  return MPROF_FORMAT_PPROF;
}

/* The REASON when a prof_format value is not one of the formats. */
static const char* check_format(const char* v, size_t n) {
  static const char* const names[] = {"pprof", "jeprof", "both"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strlen(names[i]) == n && memcmp(names[i], v, n) == 0) return NULL;
  return "not one of pprof|jeprof|both";
}

const mprof_opt_desc_t* mprof__opt_find(const char* name, size_t len) {
  for (size_t i = 0; i < mprof__opt_ndescs; i++) {
    const mprof_opt_desc_t* d = &mprof__opt_descs[i];
    if (strlen(d->name) == len && memcmp(d->name, name, len) == 0) return d;
  }
  return NULL;
}

const char* mprof__conf_from_env(void) {
  return secure_getenv("MPROF_CONF");
}

/* ---------------------------------------------------------------------------------------------
 * Report lines, built in a fixed stack buffer. Appends past the end are dropped; the layout
 * below keeps every line far below LINE_MAX_BYTES anyway (at most ~330 bytes).
 * ------------------------------------------------------------------------------------------- */

typedef struct {
  char buf[LINE_MAX_BYTES];
  size_t len;
} line_t;

static void put_mem(line_t* l, const char* s, size_t n) {
  size_t room = sizeof l->buf - 1 - l->len;
  if (n > room) n = room;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
  l->buf[l->len] = '\0';
}

static void put_str(line_t* l, const char* s) {
  put_mem(l, s, strlen(s));
}

static void put_ll(line_t* l, long long v) {
  char digits[24];
  size_t i = sizeof digits;
  unsigned long long mag = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    digits[--i] = (char)('0' + mag % 10);
    mag /= 10;
  } while (mag != 0);
  if (v < 0) digits[--i] = '-';
  put_mem(l, digits + i, sizeof digits - i);
}

/* Appends s[0..n) (stopping early at a NUL) between double quotes, escaped so that the line
 * stays printable ASCII, and cut with "..." once QUOTE_MAX bytes have been written. */
static void put_quoted(line_t* l, const char* s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t used = 0;
  size_t i = 0;
  put_mem(l, "\"", 1);
  for (; i < n && s[i] != '\0'; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[4];
    size_t elen;
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      elen = 2;
    } else if (c < 0x20 || c > 0x7e) {
      esc[0] = '\\';
      esc[1] = 'x';
      esc[2] = hex[c >> 4];
      esc[3] = hex[c & 0xf];
      elen = 4;
    } else {
      esc[0] = (char)c;
      elen = 1;
    }
    if (used + elen > QUOTE_MAX) break;
    put_mem(l, esc, elen);
    used += elen;
  }
  if (i < n && s[i] != '\0') put_mem(l, "...", 3);
  put_mem(l, "\"", 1);
}

typedef struct {
  void (*report)(const char* line, void* arg);
  void* arg;
  unsigned errors;
} sink_t;

static void invalid_pair(sink_t* sk, const char* pair, size_t len, const char* reason,
                         const mprof_opt_desc_t* range) {
  sk->errors++;
  if (sk->report == NULL) return;
  line_t l = {.len = 0};
  put_str(&l, "mprof: invalid conf pair ");
  put_quoted(&l, pair, len);
  put_str(&l, ": ");
  put_str(&l, reason);
  if (range != NULL && range->type == MPROF_OPT_STRING) {
    put_str(&l, " (at most ");
    put_ll(&l, range->max);
    put_str(&l, " bytes)");
  } else if (range != NULL) {
    put_str(&l, " (");
    put_ll(&l, range->min);
    put_str(&l, "..");
    put_ll(&l, range->max);
    put_str(&l, ")");
  }
  sk->report(l.buf, sk->arg);
}

static void malformed(sink_t* sk, const char* rest, const char* reason) {
  sk->errors++;
  if (sk->report == NULL) return;
  line_t l = {.len = 0};
  put_str(&l, "mprof: malformed conf string at ");
  put_quoted(&l, rest, SIZE_MAX);
  put_str(&l, ": ");
  put_str(&l, reason);
  sk->report(l.buf, sk->arg);
}

/* ---------------------------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------------------------- */

typedef enum { INT_OK, INT_SYNTAX, INT_OVERFLOW } int_result_t;

static unsigned digit_value(char c) {
  if (c >= '0' && c <= '9') return (unsigned)(c - '0');
  if (c >= 'a' && c <= 'f') return (unsigned)(c - 'a' + 10);
  if (c >= 'A' && c <= 'F') return (unsigned)(c - 'A' + 10);
  return 99;
}

/* Reads all of s[0..n) the way strtoll(s, &end, 0) reads a string it consumes entirely: an
 * optional sign (only if allow_sign), then `0x`/`0X` and hex digits, or `0` and octal digits, or
 * decimal digits. Unlike strtoll it rejects leading white space, and it needs no NUL. A value
 * outside long long is INT_OVERFLOW (strtoll's ERANGE), reported only if the syntax is valid. */
static int_result_t read_int(const char* s, size_t n, bool allow_sign, long long* out) {
  size_t i = 0;
  bool neg = false;
  if (i < n && (s[i] == '+' || s[i] == '-')) {
    if (!allow_sign) return INT_SYNTAX;
    neg = s[i] == '-';
    i++;
  }
  unsigned base = 10;
  if (i < n && s[i] == '0') {
    base = 8; /* the leading 0 is itself an octal digit, so "0" reads as zero */
    if (i + 1 < n && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
      base = 16;
      i += 2;
    }
  }
  if (i == n) return INT_SYNTAX;
  const unsigned long long limit = neg ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX;
  unsigned long long mag = 0;
  bool overflow = false;
  for (; i < n; i++) {
    unsigned d = digit_value(s[i]);
    if (d >= base) return INT_SYNTAX;
    if (mag > (limit - d) / base)
      overflow = true;
    else
      mag = mag * base + d;
  }
  if (overflow) return INT_OVERFLOW;
  /* -(LLONG_MAX + 1) is computed in unsigned arithmetic and then converted: no signed overflow. */
  *out = neg ? (mag == limit ? LLONG_MIN : -(long long)mag) : (long long)mag;
  return INT_OK;
}

/* Applies one well-formed pair; key[0..klen) and val[0..vlen) are contiguous around a ':'. */
static void apply_pair(sink_t* sk, mprof_opts_t* opts, const char* key, size_t klen,
                       const char* val, size_t vlen) {
  const size_t plen = klen + 1 + vlen;
  const mprof_opt_desc_t* d = mprof__opt_find(key, klen);
  if (d == NULL) {
    invalid_pair(sk, key, plen, "unknown option", NULL);
    return;
  }
  char* field = (char*)opts + d->offset;
  switch (d->type) {
  case MPROF_OPT_BOOL: {
    bool b;
    if (vlen == 4 && memcmp(val, "true", 4) == 0)
      b = true;
    else if (vlen == 5 && memcmp(val, "false", 5) == 0)
      b = false;
    else {
      invalid_pair(sk, key, plen, "not a boolean (expected true or false)", NULL);
      return;
    }
    *(bool*)field = b;
    return;
  }
  case MPROF_OPT_SIZE:
  case MPROF_OPT_SSIZE:
  case MPROF_OPT_UNSIGNED: {
    long long v = 0;
    int_result_t r = read_int(val, vlen, d->min < 0, &v);
    if (r == INT_SYNTAX) {
      invalid_pair(sk, key, plen, "not an integer", NULL);
      return;
    }
    if (r == INT_OVERFLOW || v < d->min || v > d->max) {
      invalid_pair(sk, key, plen, "out of range", d);
      return;
    }
    /* The ranges in the table fit every field type, so these conversions are exact. */
    if (d->type == MPROF_OPT_SIZE)
      *(size_t*)field = (size_t)v;
    else if (d->type == MPROF_OPT_SSIZE)
      *(ssize_t*)field = (ssize_t)v;
    else
      *(unsigned*)field = (unsigned)v;
    return;
  }
  case MPROF_OPT_STRING:
    if (vlen > (unsigned long long)d->max) {
      invalid_pair(sk, key, plen, "too long", d);
      return;
    }
    if (d->check != NULL) {
      const char* why = d->check(val, vlen);
      if (why != NULL) {
        invalid_pair(sk, key, plen, why, NULL);
        return;
      }
    }
    memcpy(field, val, vlen);
    field[vlen] = '\0';
    return;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Signals
 * ------------------------------------------------------------------------------------------- */

static const struct {
  const char* name;
  int sig;
} signal_names[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},     {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"IOT", SIGIOT},       {"BUS", SIGBUS},
    {"FPE", SIGFPE},       {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},     {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
    {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH},   {"IO", SIGIO},     {"POLL", SIGPOLL},     {"PWR", SIGPWR},
    {"SYS", SIGSYS},
};

/* A decimal number in s[0..n) without sign, at most 3 digits; -1 otherwise. */
static int small_decimal(const char* s, size_t n) {
  if (n == 0 || n > 3) return -1;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

int mprof__signal_parse(const char* s, size_t n) {
  if (n == 0) return 0;
  int sig = small_decimal(s, n);
  if (sig < 0) {
    if (n > 3 && memcmp(s, "SIG", 3) == 0) {
      s += 3;
      n -= 3;
    }
    if (n >= 5 && (memcmp(s, "RTMIN", 5) == 0 || memcmp(s, "RTMAX", 5) == 0)) {
      bool min = s[4] == 'N';
      int off = 0;
      if (n > 5) {
        if (s[5] != (min ? '+' : '-')) return -1;
        off = small_decimal(s + 6, n - 6);
        if (off < 0) return -1;
      }
      sig = min ? SIGRTMIN + off : SIGRTMAX - off;
      if (sig < SIGRTMIN || sig > SIGRTMAX) return -1;
    } else {
      for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0] && sig < 0; i++)
        if (strlen(signal_names[i].name) == n && memcmp(signal_names[i].name, s, n) == 0)
          sig = signal_names[i].sig;
      if (sig < 0) return -1;
    }
  }
  if (sig < 1 || sig > SIGRTMAX) return -1;
  if (sig == SIGKILL || sig == SIGSTOP) return -2;
  if (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP ||
      sig == SIGSYS)
    return -3;
  if (sig > SIGSYS && sig < SIGRTMIN) return -4;
  return sig;
}

static const char* check_signal(const char* v, size_t n) {
  switch (mprof__signal_parse(v, n)) {
  case -1:
    return "not a signal name or number";
  case -2:
    return "a signal mprof cannot use (it cannot be caught)";
  case -3:
    return "a signal mprof cannot use (raised by faults)";
  case -4:
    return "a signal mprof cannot use (reserved by the C library)";
  default:
    return NULL;
  }
}

static bool is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

unsigned mprof__conf_parse(const char* conf, mprof_opts_t* opts,
                           void (*report)(const char* line, void* arg), void* arg) {
  sink_t sk = {report, arg, 0};
  const char* p = conf;
  if (p == NULL) return 0;
  while (*p != '\0') {
    const char* key = p;
    while (is_key_char(*p))
      p++;
    const size_t klen = (size_t)(p - key);
    if (*p != ':' || klen == 0) {
      const char* why = (*p != ':' && *p != ',' && *p != '\0') ? "invalid character in key"
                        : klen == 0                            ? "empty key"
                                                               : "missing ':' after key";
      malformed(&sk, key, why);
      return sk.errors;
    }
    const char* val = ++p;
    while (*p != '\0' && *p != ',')
      p++;
    apply_pair(&sk, opts, key, klen, val, (size_t)(p - val));
    if (*p == ',') {
      if (p[1] == '\0') {
        malformed(&sk, p, "trailing comma");
        return sk.errors;
      }
      p++;
    }
  }
  return sk.errors;
}
