/* Start-up options of the profiler and the parser of the MPROF_CONF string.
 *
 * The grammar is jemalloc's MALLOC_CONF: comma-separated `key:value` pairs, keys made of
 * [A-Za-z0-9_], booleans exactly `true` or `false`, integers in base 10, 16 (`0x`/`0X`) or 8
 * (leading `0`) as strtoll(..., 0) reads them, but with no leading white space and a sign only
 * for options that accept negative values. A string value is everything up to the next comma, so
 * a string option (prof_prefix) can never contain a comma; it may contain `:`. Later pairs
 * override earlier ones. Example: `MPROF_CONF=lg_prof_sample:17,prof_final:true`.
 *
 * Parsing needs no memory and no lock: it runs before the host allocator is ready, writes only
 * into the caller's mprof_opts_t and reports errors through a callback, one line per error. */
#ifndef MPROF_CONF_H
#define MPROF_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define MPROF_PREFIX_MAX 1024 /* bytes of prof_prefix, including the NUL */
#define MPROF_SIGNAL_MAX 16   /* bytes of prof_dump_signal, including the NUL */

/* Options as read at start-up: defaults, then each configuration source parsed on top. Meant to
 * be filled before sampling starts and read-only afterwards (run-time state, such as the current
 * value of prof.active, belongs to the modules that change it). */
typedef struct mprof_opts_s {
  /* default true: profiling compiled in at start; false = never sample */
  bool prof;
  /* default true: sampling on at start (can change at run time) */
  bool prof_active;
  /* default 19: mean sampling interval is 2^n bytes; 0..62 (0 = every allocation) */
  size_t lg_prof_sample;
  /* default 128: max frames kept per stack; 1..1024 */
  unsigned prof_stack_depth;
  /* default "mprof": path prefix of automatic dump files; "" = no automatic dumps */
  char prof_prefix[MPROF_PREFIX_MAX];
  /* default false: dump at exit */
  bool prof_final;
  /* default -1 (off): dump every 2^n bytes allocated on average; -1..62 */
  ssize_t lg_prof_interval;
  /* default false: dump at each new high-water mark of sampled in-use bytes */
  bool prof_gdump;
  /* default 30: automatic epoch boundary every 2^n bytes allocated (estimated); -1 (off)..62 */
  ssize_t lg_prof_epoch;
  /* default false: print a one-line leak summary to stderr at exit */
  bool prof_leak;
  /* default true: heap dumps split in-use figures by age class (label age_epochs) */
  bool prof_age;
  /* default false: keep the sampled in-use state at the peak; prof.peak.dump and *.peak.pb.gz */
  bool prof_peak;
  /* default false: label heap samples with the allocating thread's name (label thread) */
  bool prof_thread_labels;
  /* default "" (off): signal, by name (SIGUSR2, USR2, SIGRTMIN+1) or number, that asks for a
     dump of kind 's'; checked by mprof__signal_parse */
  char prof_dump_signal[MPROF_SIGNAL_MAX];
  /* default 0 (off): one dump of kind 'o' the first time estimated in-use bytes reach this */
  size_t prof_dump_over;
  /* default "pprof": format of dump files: "pprof", "jeprof" (jemalloc's heap_v2 text) or
   * "both" */
  char prof_format[8];
  /* default 0 (off): one in n contended lock acquisitions is recorded; 0..INT32_MAX */
  unsigned prof_mutex_fraction;
  /* default false: the contention profile includes the program's pthread mutexes */
  bool prof_mutex_app;
  /* default false: prof_dump_signal and the final dump also write a thread snapshot */
  bool prof_dump_threads;
  /* default "SIGRTMAX-7": the real-time signal that takes the stacks of running threads in a
     thread snapshot; "" = none (running threads are written without a stack) */
  char prof_threads_signal[MPROF_SIGNAL_MAX];
} mprof_opts_t;

/* prof_format, as the core uses it. */
typedef enum {
  MPROF_FORMAT_PPROF = 1,
  MPROF_FORMAT_JEPROF = 2,
  MPROF_FORMAT_BOTH = 3
} mprof_format_t;
mprof_format_t mprof__opts_format(const mprof_opts_t* o);

typedef enum {
  MPROF_OPT_BOOL,     /* bool; min 0, max 1 */
  MPROF_OPT_SIZE,     /* size_t; no sign accepted */
  MPROF_OPT_SSIZE,    /* ssize_t; an optional + or - sign */
  MPROF_OPT_UNSIGNED, /* unsigned; no sign accepted */
  MPROF_OPT_STRING,   /* char[max + 1]; min 0, max = longest accepted length in bytes */
} mprof_opt_type_t;

/* One option: its MPROF_CONF key (also the suffix of its `opt.` control name), where it lives in
 * mprof_opts_t, and the inclusive range of accepted values (of lengths for strings). */
typedef struct {
  const char* name;
  mprof_opt_type_t type;
  size_t offset; /* offsetof(mprof_opts_t, field) */
  long long min, max;
  const char* doc; /* one sentence, for generated documentation */
  /* Strings only, or NULL: the REASON when value[0..len) is not acceptable, NULL when it is. */
  const char* (*check)(const char* value, size_t len);
} mprof_opt_desc_t;

/* Every field of mprof_opts_t, once each, in declaration order. Immutable. */
extern const mprof_opt_desc_t mprof__opt_descs[];
extern const size_t mprof__opt_ndescs;

/* The descriptor whose name is exactly name[0..len) (no NUL needed), or NULL. */
const mprof_opt_desc_t* mprof__opt_find(const char* name, size_t len);

/* Sets every option to its documented default. */
void mprof__opts_default(mprof_opts_t* o);

/* Applies the pairs of conf (NULL or "" = nothing) on top of the current contents of opts and
 * returns the number of errors. For each error, report (if not NULL) receives one line with NO
 * trailing newline (the caller adds it), at most 511 bytes plus the NUL, never containing a
 * control character; it is one of
 *
 *   mprof: invalid conf pair "KEY:VALUE": REASON
 *       REASON: unknown option | not a boolean (expected true or false) | not an integer
 *             | out of range (MIN..MAX) | too long (at most MAX bytes)
 *             | not a signal name or number | a signal mprof cannot use (REASON2)
 *             | not one of CHOICES (e.g. "not one of pprof|jeprof|both")
 *   mprof: malformed conf string at "REST": REASON
 *       REASON: empty key | missing ':' after key | invalid character in key | trailing comma
 *
 * An invalid pair leaves its option unchanged and parsing goes on with the next pair. A malformed
 * string stops parsing: pairs before REST have been applied, nothing from REST on (REST starts at
 * the offending pair, or is "," for a trailing comma). Quoted text is escaped (`"` and `\` as
 * `\"` and `\\`, bytes outside printable ASCII as \xNN) and cut to at most 200 escaped bytes
 * followed by `...`. Allocates nothing, takes no lock, keeps no state. */
unsigned mprof__conf_parse(const char* conf, mprof_opts_t* opts,
                           void (*report)(const char* line, void* arg), void* arg);

/* The signal number named by s[0..len): "SIGUSR2", "USR2", "SIGRTMIN+3", "SIGRTMAX-1" or a
 * decimal number. 0 for the empty string (off), -1 for something that is not a signal, -2 for a
 * signal that cannot be caught (SIGKILL, SIGSTOP), -3 for one raised by faults (SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL, SIGTRAP, SIGSYS: a handler that returns would fault again) and -4 for the
 * real-time signals glibc keeps for itself (32, 33). Allocates nothing. */
int mprof__signal_parse(const char* s, size_t len);

/* The value of MPROF_CONF, read with secure_getenv (so NULL in set-uid programs), or NULL. */
const char* mprof__conf_from_env(void);

#endif
