/* The mprof command: run a program under the profiler and report, read a profile, compare two,
 * draw a flame graph. See docs/mprof.1.
 *
 * Every failure prints one line "mprof: ..." on stderr and exits with status 2 (usage errors and
 * unreadable profiles); `mprof run` otherwise exits with the status of the program it ran. */
#include "mprof_dwarf.h"
#include "mprof_read.h"
#include "mprof_report.h"
#include "mprof_threads_report.h"

#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MPROF_VERSION
#define MPROF_VERSION "0.0.0"
#endif
/* Where the libraries are, relative to the directory of this executable: the installed layout
 * (bin/ next to lib/), then the build tree (tools/ next to the library). */
#ifndef MPROF_REL_LIBDIR
#define MPROF_REL_LIBDIR "../lib"
#endif

enum { EXIT_USAGE = 2, EXIT_LEAK = 23 };

/* --drop REGEX, every one given, joined with "|": more allocation wrappers (see load). */
static char* drop_extra = NULL;

static const char usage_text[] =
    "usage: mprof run [options] -- CMD [ARGS...]   run CMD under the profiler, report at exit\n"
    "       mprof top FILE... [--inuse|--alloc|--objects] [-n N] [--lines] [--exact] [--drop RE]\n"
    "                 [--by-thread]   one row per thread (prof_thread_labels:true)\n"
    "       mprof diff OLD NEW | --base OLD... NEW...  [--inuse|--alloc|--objects] [-n N] ...\n"
    "       mprof flame FILE... -o OUT.html [--inuse|--alloc]\n"
    "       (several files are merged: e.g. every process of a run)\n"
    "       mprof symbolize IN OUT         write IN with inline frames, files and lines\n"
    "       mprof threads FILE             threads of a *.threads.pb.gz snapshot\n"
    "       mprof --help | --version\n"
    "\n"
    "run options:\n"
    "  -r, --rate BYTES         mean bytes between samples (rounded down to a power of two;\n"
    "                           default 524288; 1 samples every allocation)\n"
    "  -o, --output PREFIX      profile path prefix (default ./mprof); each process's final\n"
    "                           profile is PREFIX.PROGRAM.PID.SEQ.f.pb.gz\n"
    "  --all                    report every process of the run, not only the first\n"
    "  --interval SECONDS       a snapshot of the program's heap every SECONDS (reported if the\n"
    "                           program ends without a final profile, e.g. by SIGKILL)\n"
    "  --conf 'k:v,...'         more MPROF_CONF options (docs/OPTIONS.md)\n"
    "  --allocator NAME         mimalloc (default) or jemalloc\n"
    "  -n N                     rows per table (default 10)\n"
    "  --leaks                  list the sites still holding memory at exit; exit 23 if one holds\n"
    "                           more than --leak-threshold bytes (and CMD exited 0)\n"
    "  --leak-threshold BYTES   default 0 (any)\n"
    "  --suppressions FILE      LeakSanitizer-style leak:PATTERN lines: matching stacks are not\n"
    "                           leaks (implies --leaks; built-in ones: see mprof(1))\n"
    "  -q, --quiet              no report (the profile is still written)\n"
    "  --drop REGEX             (also top, diff, flame) more allocation wrappers: functions\n"
    "                           matching REGEX whole are never sites (see mprof(1), SITES)\n"
    "  --threads                also a thread snapshot at exit, printed after the report\n"
    "\n"
    "Reports go to stderr; CMD's output is untouched. See mprof(1).\n";

__attribute__((format(printf, 1, 2), noreturn)) static void usage_error(const char* fmt, ...) {
  fputs("mprof: ", stderr);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs(" (see mprof --help)\n", stderr);
  exit(EXIT_USAGE);
}

static bool parse_u64(const char* s, uint64_t* out) {
  if (s == NULL || *s < '0' || *s > '9') return false;
  char* end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

static void stacks_error(const char* path, int e) {
  if (e == EFBIG)
    fprintf(stderr, "mprof: %s: more than %zu frames over all samples (limit of this command)\n",
            path, (size_t)MPROF_MAX_FRAMES);
  else
    fprintf(stderr, "mprof: %s: %s\n", path, strerror(e));
}

/* Reads and symbolizes a profile, or exits with one line. */
static void load(const char* path, mprof_rd_profile_t* p, mprof_stacks_t* s, bool need_samples) {
  char err[256];
  if (mprof__rd_file(path, p, err, sizeof err) != 0) {
    fprintf(stderr, "mprof: %s: %s\n", path, err);
    exit(EXIT_USAGE);
  }
  if (need_samples && p->nsamples == 0) {
    fprintf(stderr, "mprof: %s: the profile has no samples\n", path);
    exit(EXIT_USAGE);
  }
  int e = mprof__stacks_build(p, s, drop_extra);
  if (e != 0) {
    stacks_error(path, e);
    exit(EXIT_USAGE);
  }
}

/* ---------------------------------------------------------------------------------------------
 * top, diff, flame
 * ------------------------------------------------------------------------------------------- */
enum {
  OPT_INUSE = 256,
  OPT_ALLOC,
  OPT_OBJECTS,
  OPT_LINES,
  OPT_EXACT,
  OPT_CONF,
  OPT_ALLOCATOR,
  OPT_LEAKS,
  OPT_LEAK_THRESHOLD,
  OPT_DROP,
  OPT_BASE,
  OPT_ALL,
  OPT_INTERVAL,
  OPT_SUPPRESSIONS,
  OPT_BY_THREAD,
  OPT_HELP,
  OPT_THREADS
};

static void add_drop(const char* re) {
  regex_t rx;
  if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0)
    usage_error("--drop: \"%s\" is not an extended regular expression", re);
  regfree(&rx);
  size_t old = drop_extra ? strlen(drop_extra) : 0;
  char* s = realloc(drop_extra, old + strlen(re) + 2);
  if (s == NULL) exit(EXIT_USAGE);
  if (old == 0)
    strcpy(s, re);
  else
    strcat(strcat(s, "|"), re);
  drop_extra = s;
}

static const struct option read_opts[] = {
    {"inuse", no_argument, NULL, OPT_INUSE},
    {"alloc", no_argument, NULL, OPT_ALLOC},
    {"objects", no_argument, NULL, OPT_OBJECTS},
    {"lines", no_argument, NULL, OPT_LINES},
    {"exact", no_argument, NULL, OPT_EXACT},
    {"output", required_argument, NULL, 'o'},
    {"drop", required_argument, NULL, OPT_DROP},
    {"help", no_argument, NULL, OPT_HELP},
    {"base", required_argument, NULL, OPT_BASE},
    {"by-thread", no_argument, NULL, OPT_BY_THREAD},
    {NULL, 0, NULL, 0},
};

typedef struct read_args_s {
  mprof_top_opts_t top;
  const char* output;
  const char** files; /* argc entries */
  int nfiles;
  const char** bases; /* diff --base */
  int nbases;
} read_args_t;

static void parse_read_args(int argc, char** argv, read_args_t* a, const char* cmd) {
  (void)cmd;
  memset(a, 0, sizeof *a);
  a->files = calloc((size_t)argc + 1, sizeof *a->files);
  a->bases = calloc((size_t)argc + 1, sizeof *a->bases);
  if (a->files == NULL || a->bases == NULL) exit(EXIT_USAGE);
  a->top.metric = MPROF_INUSE;
  a->top.n = 10;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+:n:o:", read_opts, NULL)) != -1) {
    uint64_t v;
    switch (c) {
    case OPT_INUSE:
      a->top.metric = MPROF_INUSE;
      break;
    case OPT_ALLOC:
      a->top.metric = MPROF_ALLOC;
      break;
    case OPT_OBJECTS:
      a->top.metric = MPROF_INUSE_OBJECTS;
      break;
    case OPT_LINES:
      a->top.lines = true;
      break;
    case OPT_EXACT:
      a->top.exact = true;
      break;
    case 'o':
      a->output = optarg;
      break;
    case OPT_DROP:
      add_drop(optarg);
      break;
    case OPT_BASE:
      a->bases[a->nbases++] = optarg;
      break;
    case OPT_BY_THREAD:
      a->top.by_thread = true;
      break;
    case 'n':
      if (!parse_u64(optarg, &v)) usage_error("-n needs a number, got \"%s\"", optarg);
      a->top.n = (size_t)v;
      break;
    case OPT_HELP:
      fputs(usage_text, stdout);
      exit(0);
    case ':':
      usage_error("option %s needs a value", argv[optind - 1]);
      break;
    default:
      usage_error("unknown option \"%s\"", argv[optind - 1]);
      break;
    }
  }
  for (int i = optind; i < argc; i++)
    a->files[a->nfiles++] = argv[i];
}

/* getopt with "+" stops at the first file; this re-runs it over the rest so that options may
 * follow the files ("mprof top FILE -n 5"). */
static void parse_read_args_anywhere(int argc, char** argv, read_args_t* a, const char* cmd) {
  char** opts = calloc((size_t)argc + 1, sizeof *opts);
  char** files = calloc((size_t)argc + 1, sizeof *files);
  if (opts == NULL || files == NULL) exit(EXIT_USAGE);
  int no = 0, nf = 0;
  opts[no++] = argv[0];
  for (int i = 1; i < argc; i++) {
    const char* s = argv[i];
    if (strcmp(s, "--") == 0) {
      for (i++; i < argc; i++)
        files[nf++] = argv[i];
      break;
    }
    if (s[0] == '-' && s[1] != '\0') {
      opts[no++] = argv[i];
      bool takes = strcmp(s, "-n") == 0 || strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0 ||
                   strcmp(s, "--drop") == 0 || strcmp(s, "--base") == 0;
      if (takes && i + 1 < argc) opts[no++] = argv[++i];
    } else {
      files[nf++] = argv[i];
    }
  }
  parse_read_args(no, opts, a, cmd);
  const char** all = realloc(a->files, (size_t)(a->nfiles + nf + 1) * sizeof *all);
  if (all == NULL) exit(EXIT_USAGE);
  a->files = all;
  for (int i = 0; i < nf; i++)
    a->files[a->nfiles++] = files[i];
  free(opts);
  free(files);
}

/* Several profiles read as one: every file's samples merged into the first's stacks. */
typedef struct loaded_s {
  mprof_rd_profile_t* p;
  mprof_stacks_t* s;
  int n;
} loaded_t;

static void load_many(const char** files, int n, loaded_t* l, bool need_samples) {
  l->n = n;
  l->p = calloc((size_t)n, sizeof *l->p);
  l->s = calloc((size_t)n, sizeof *l->s);
  if (l->p == NULL || l->s == NULL) exit(EXIT_USAGE);
  size_t samples = 0;
  for (int i = 0; i < n; i++) {
    load(files[i], &l->p[i], &l->s[i], false);
    samples += l->p[i].nsamples;
    if (i > 0 && mprof__stacks_merge(&l->s[0], &l->s[i]) != 0) {
      fprintf(stderr, "mprof: %s: out of memory\n", files[i]);
      exit(EXIT_USAGE);
    }
  }
  if (need_samples && samples == 0) {
    if (n == 1)
      fprintf(stderr, "mprof: %s: the profile has no samples\n", files[0]);
    else
      fprintf(stderr, "mprof: none of the %d profiles has samples\n", n);
    exit(EXIT_USAGE);
  }
}

static void free_many(loaded_t* l) {
  for (int i = l->n - 1; i >= 0; i--) {
    mprof__stacks_free(&l->s[i]);
    mprof__rd_free(&l->p[i]);
  }
  free(l->p);
  free(l->s);
}

/* The reconciliation block: the first profile's, saying so when several were merged. */
static void print_recon_many(FILE* f, const loaded_t* l, bool exact) {
  if (l->n > 1) fprintf(f, "(%d profiles merged; the reconciliation is the first one's)\n", l->n);
  mprof__print_recon(f, &l->p[0], exact);
}

static int cmd_top(int argc, char** argv) {
  read_args_t a;
  parse_read_args_anywhere(argc, argv, &a, "top");
  if (a.nfiles < 1) usage_error("top needs a profile (several are merged)");
  loaded_t l;
  load_many(a.files, a.nfiles, &l, true);
  int err = mprof__print_top(stdout, &l.s[0], &a.top);
  if (err == 0) {
    fputc('\n', stdout);
    print_recon_many(stdout, &l, a.top.exact);
  }
  free_many(&l);
  return err ? EXIT_USAGE : 0;
}

static int cmd_diff(int argc, char** argv) {
  read_args_t a;
  parse_read_args_anywhere(argc, argv, &a, "diff");
  const char** olds = a.bases;
  const char** news = a.files;
  int nold = a.nbases, nnew = a.nfiles;
  if (nold == 0) {
    if (a.nfiles != 2)
      usage_error("diff needs two profiles, OLD NEW (or --base OLD... NEW..., merging each side)");
    olds = a.files;
    nold = 1;
    news = a.files + 1;
    nnew = 1;
  }
  if (nnew == 0) usage_error("diff needs at least one new profile after the --base ones");
  loaded_t l0, l1;
  load_many(olds, nold, &l0, false);
  load_many(news, nnew, &l1, false);
  if (l0.s[0].n == 0 && l1.s[0].n == 0) {
    fprintf(stderr, "mprof: neither side of the diff has samples\n");
    return EXIT_USAGE;
  }
  int err = mprof__print_diff(stdout, &l0.s[0], &l1.s[0], &a.top);
  if (err == 0) {
    fputc('\n', stdout);
    print_recon_many(stdout, &l1, a.top.exact);
  }
  free_many(&l0);
  free_many(&l1);
  return err ? EXIT_USAGE : 0;
}

static int cmd_flame(int argc, char** argv) {
  read_args_t a;
  parse_read_args_anywhere(argc, argv, &a, "flame");
  if (a.nfiles < 1) usage_error("flame needs a profile (several are merged)");
  if (a.output == NULL) usage_error("flame needs -o OUT.html");
  if (a.top.metric == MPROF_INUSE_OBJECTS) usage_error("flame draws bytes: --inuse or --alloc");
  loaded_t l;
  load_many(a.files, a.nfiles, &l, true);
  mprof_stacks_t* s = &l.s[0];
  int vi = a.top.metric == MPROF_ALLOC ? s->alloc_space : s->inuse_space;
  if (vi < 0) {
    fprintf(stderr, "mprof: %s: the profile has no %s values\n", a.files[0],
            a.top.metric == MPROF_ALLOC ? "alloc_space" : "inuse_space");
    return EXIT_USAGE;
  }
  FILE* f = fopen(a.output, "w");
  if (f == NULL) {
    fprintf(stderr, "mprof: %s: %s\n", a.output, strerror(errno));
    return EXIT_USAGE;
  }
  const char* b = strrchr(a.files[0], '/');
  char title[512];
  if (a.nfiles > 1)
    snprintf(title, sizeof title, "mprof: %s and %d more", b ? b + 1 : a.files[0], a.nfiles - 1);
  else
    snprintf(title, sizeof title, "mprof: %s", b ? b + 1 : a.files[0]);
  int err = mprof__write_flame(f, s, a.top.metric, title);
  if (fclose(f) != 0 && err == 0) err = errno;
  if (err != 0) {
    fprintf(stderr, "mprof: %s: %s\n", a.output, strerror(err));
    remove(a.output);
  }
  free_many(&l);
  return err ? EXIT_USAGE : 0;
}

static int cmd_symbolize(int argc, char** argv) {
  read_args_t a;
  parse_read_args_anywhere(argc, argv, &a, "symbolize");
  if (a.nfiles != 2) usage_error("symbolize needs two files: IN OUT");
  mprof_rd_profile_t p;
  mprof_stacks_t s;
  load(a.files[0], &p, &s, false);
  int err = mprof__write_symbolized(a.files[1], &s);
  if (err != 0) {
    fprintf(stderr, "mprof: %s: %s\n", a.files[1], strerror(err));
    remove(a.files[1]);
  }
  mprof__stacks_free(&s);
  mprof__rd_free(&p);
  return err ? EXIT_USAGE : 0;
}

/* ---------------------------------------------------------------------------------------------
 * run
 * ------------------------------------------------------------------------------------------- */
static const struct option run_opts[] = {
    {"rate", required_argument, NULL, 'r'},
    {"output", required_argument, NULL, 'o'},
    {"conf", required_argument, NULL, OPT_CONF},
    {"allocator", required_argument, NULL, OPT_ALLOCATOR},
    {"leaks", no_argument, NULL, OPT_LEAKS},
    {"leak-threshold", required_argument, NULL, OPT_LEAK_THRESHOLD},
    {"quiet", no_argument, NULL, 'q'},
    {"exact", no_argument, NULL, OPT_EXACT},
    {"lines", no_argument, NULL, OPT_LINES},
    {"drop", required_argument, NULL, OPT_DROP},
    {"all", no_argument, NULL, OPT_ALL},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"suppressions", required_argument, NULL, OPT_SUPPRESSIONS},
    {"help", no_argument, NULL, OPT_HELP},
    {"threads", no_argument, NULL, OPT_THREADS},
    {NULL, 0, NULL, 0},
};

/* The directory of this executable. */
static bool self_dir(char* buf, size_t len) {
  ssize_t n = readlink("/proc/self/exe", buf, len - 1);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* slash = strrchr(buf, '/');
  if (slash == NULL) return false;
  *slash = '\0';
  return true;
}

/* Finds the library: $MPROF_LIB_DIR if set, the installed layout, then the build tree. */
static bool find_library(const char* file, char* out, size_t len) {
  const char* env = getenv("MPROF_LIB_DIR");
  char dir[PATH_MAX];
  if (env != NULL && env[0] != '\0') {
    snprintf(out, len, "%s/%s", env, file);
    return access(out, R_OK) == 0;
  }
  if (!self_dir(dir, sizeof dir)) return false;
  const char* rel[] = {MPROF_REL_LIBDIR, "..", "."};
  for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
    int n = snprintf(out, len, "%s/%s/%s", dir, rel[i], file);
    if (n > 0 && (size_t)n < len && access(out, R_OK) == 0) {
      char* real = realpath(out, NULL);
      if (real != NULL) {
        snprintf(out, len, "%s", real);
        free(real);
      }
      return true;
    }
  }
  return false;
}

/* The final profiles of a run: PREFIX.PROGRAM.PID.SEQ.f.pb.gz, less those that existed before it
 * started (an earlier run with the same prefix). */
typedef struct proc_prof_s {
  char* path;
  char prog[80];
  long pid;
  int64_t inuse, alloc; /* totals of the profile, -1 when unreadable */
  bool snapshot;        /* no final profile: the latest snapshot (kind s) */
  long seq;
} proc_prof_t;

typedef struct run_files_s {
  glob_t before;
  bool have_before;
} run_files_t;

static void glob_finals(const char* prefix, glob_t* g, bool* ok) {
  char pat[PATH_MAX + 64];
  snprintf(pat, sizeof pat, "%s.*.pb.gz", prefix);
  *ok = glob(pat, 0, NULL, g) == 0;
}

/* PROGRAM, PID, SEQ and KIND of an automatic profile's name (after "PREFIX."):
 * PROGRAM.PID.SEQ.KIND.pb.gz, PROGRAM possibly with dots. */
static bool parse_name(const char* name, proc_prof_t* pp, long* seq, char* kind, size_t klen) {
  size_t len = strlen(name);
  const char* sfx = ".pb.gz";
  if (len <= strlen(sfx) || strcmp(name + len - strlen(sfx), sfx) != 0) return false;
  len -= strlen(sfx);
  char buf[PATH_MAX];
  if (len >= sizeof buf) return false;
  memcpy(buf, name, len);
  buf[len] = '\0';
  char* parts[3];
  for (int i = 0; i < 3; i++) {
    char* dot = strrchr(buf, '.');
    if (dot == NULL) return false;
    *dot = '\0';
    parts[i] = dot + 1; /* kind, seq, pid */
  }
  char* end;
  long p = strtol(parts[2], &end, 10);
  if (*parts[2] == '\0' || *end != '\0' || p <= 0) return false;
  long q = strtol(parts[1], &end, 10);
  if (*parts[1] == '\0' || *end != '\0' || q < 0) return false;
  pp->pid = p;
  *seq = q;
  snprintf(kind, klen, "%.15s", parts[0]);
  size_t pl = strlen(buf) < sizeof pp->prog ? strlen(buf) : sizeof pp->prog - 1;
  memcpy(pp->prog, buf, pl);
  pp->prog[pl] = '\0';
  return true;
}

static void profile_totals(proc_prof_t* pp) {
  mprof_rd_profile_t p;
  char err[256];
  pp->inuse = pp->alloc = -1;
  if (mprof__rd_file(pp->path, &p, err, sizeof err) != 0) return;
  int iu = mprof__rd_sample_index(&p, "inuse_space");
  int al = mprof__rd_sample_index(&p, "alloc_space");
  pp->inuse = pp->alloc = 0;
  for (size_t i = 0; i < p.nsamples; i++) {
    if (iu >= 0) pp->inuse += p.samples[i].values[iu];
    if (al >= 0) pp->alloc += p.samples[i].values[al];
  }
  mprof__rd_free(&p);
}

static int cmp_proc(const void* a, const void* b) {
  const proc_prof_t* x = a;
  const proc_prof_t* y = b;
  if (x->inuse != y->inuse) return x->inuse > y->inuse ? -1 : 1;
  if (x->alloc != y->alloc) return x->alloc > y->alloc ? -1 : 1;
  return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* The run's profiles, the top process's (pid) first when it wrote one, then the others largest
 * first. Returns how many; *top says whether the first is the top process's. */
static size_t run_profiles(const char* prefix, const run_files_t* rf, pid_t top_pid,
                           proc_prof_t** out, bool* top) {
  char pat[PATH_MAX + 64];
  snprintf(pat, sizeof pat, "%s.*.pb.gz", prefix);
  glob_t g;
  *out = NULL;
  *top = false;
  if (glob(pat, 0, NULL, &g) != 0) return 0;
  proc_prof_t* v = calloc(g.gl_pathc + 1, sizeof *v);
  size_t n = 0;
  size_t plen = strlen(prefix) + 1;
  /* Finals first, then a snapshot for each process that has no final. */
  for (int pass = 0; pass < 2 && v != NULL; pass++) {
    for (size_t i = 0; i < g.gl_pathc; i++) {
      const char* path = g.gl_pathv[i];
      if (strstr(path + plen, ".peak.") != NULL || strstr(path + plen, ".mutex.") != NULL) continue;
      bool old = false;
      for (size_t j = 0; rf->have_before && j < rf->before.gl_pathc && !old; j++)
        old = strcmp(rf->before.gl_pathv[j], path) == 0;
      proc_prof_t pp = {0};
      long seq;
      char kind[16];
      if (old || strlen(path) <= plen || !parse_name(path + plen, &pp, &seq, kind, sizeof kind))
        continue;
      if (pass == 0 ? strcmp(kind, "f") != 0 : kind[0] != 's') continue;
      size_t k = 0;
      while (k < n && v[k].pid != pp.pid)
        k++;
      if (pass == 1 && k < n && (!v[k].snapshot || v[k].seq >= seq)) continue;
      pp.snapshot = pass == 1;
      pp.seq = seq;
      pp.path = strdup(path);
      if (pp.path == NULL) continue;
      if (k < n) {
        free(v[k].path);
        v[k] = pp;
      } else {
        v[n++] = pp;
      }
    }
  }
  globfree(&g);
  if (v == NULL) return 0;
  for (size_t i = 0; i < n; i++)
    profile_totals(&v[i]);
  size_t t = n;
  for (size_t i = 0; i < n; i++)
    if (v[i].pid == (long)top_pid) t = i;
  if (t < n) {
    proc_prof_t x = v[t];
    v[t] = v[0];
    v[0] = x;
    *top = true;
  }
  size_t first = *top ? 1 : 0;
  if (n > first) qsort(v + first, n - first, sizeof *v, cmp_proc);
  *out = v;
  return n;
}

static void free_profiles(proc_prof_t* v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i].path);
  free(v);
}

/* Leak suppressions: the built-in ones, then those of --suppressions files. */
typedef struct supp_s {
  char** pats;
  size_t n, cap;
  size_t nbuiltin;
} supp_t;
static supp_t supp;

static void supp_add(const char* pat) {
  if (supp.n == supp.cap) {
    supp.cap = supp.cap ? supp.cap * 2 : 32;
    supp.pats = realloc(supp.pats, supp.cap * sizeof *supp.pats);
    if (supp.pats == NULL) exit(EXIT_USAGE);
  }
  supp.pats[supp.n] = strdup(pat);
  if (supp.pats[supp.n] == NULL) exit(EXIT_USAGE);
  supp.n++;
}

static void supp_builtin(void) {
  for (size_t i = 0; mprof__builtin_suppressions[i] != NULL; i++)
    supp_add(mprof__builtin_suppressions[i]);
  supp.nbuiltin = supp.n;
}

/* LeakSanitizer's suppression file: "leak:PATTERN" lines, '#' comments, blank lines; lines of
 * other types (race:, ...) are for other tools and skipped. */
static void supp_file(const char* path) {
  FILE* f = fopen(path, "r");
  if (f == NULL) usage_error("--suppressions %s: %s", path, strerror(errno));
  char line[1024];
  int lineno = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    lineno++;
    char* l = line;
    while (*l == ' ' || *l == '\t')
      l++;
    char* hash = strchr(l, '#');
    if (hash != NULL) *hash = '\0';
    size_t len = strlen(l);
    while (len > 0 &&
           (l[len - 1] == '\n' || l[len - 1] == '\r' || l[len - 1] == ' ' || l[len - 1] == '\t'))
      l[--len] = '\0';
    if (len == 0) continue;
    char* colon = strchr(l, ':');
    if (colon == NULL || colon == l)
      usage_error("--suppressions %s:%d: not TYPE:PATTERN: \"%s\"", path, lineno, l);
    if (colon - l == 4 && strncmp(l, "leak", 4) == 0) {
      if (colon[1] == '\0') usage_error("--suppressions %s:%d: empty pattern", path, lineno);
      supp_add(colon + 1);
    }
  }
  fclose(f);
}

static void print_suppressed(FILE* f, const mprof_stacks_t* s, bool exact) {
  if (s->inuse_space < 0) return;
  int64_t* bytes = calloc(supp.n + 1, sizeof *bytes);
  if (bytes == NULL) return;
  int64_t total = 0;
  for (size_t i = 0; i < s->n; i++) {
    int k = s->stacks[i].suppressed;
    if (k > 0 && (size_t)k <= supp.n) {
      bytes[k - 1] += s->stacks[i].values[s->inuse_space];
      total += s->stacks[i].values[s->inuse_space];
    }
  }
  if (total > 0) {
    char b[32];
    fprintf(f, "suppressed (not leaks): %s\n", mprof__fmt_bytes(b, sizeof b, total, exact));
    for (size_t k = 0; k < supp.n; k++)
      if (bytes[k] > 0)
        fprintf(f, "  %12s  leak:%s%s\n", mprof__fmt_bytes(b, sizeof b, bytes[k], exact),
                supp.pats[k], k < supp.nbuiltin ? "  (built-in)" : "");
  }
  free(bytes);
}

/* The report of one process's profile on stderr (label: "program (pid N)", or NULL when the
 * run had one process). A profile that cannot be read is a warning. */
static int report(const char* path, const char* label, size_t n, bool lines, bool exact, bool leaks,
                  uint64_t thr, bool* leaked) {
  *leaked = false;
  mprof_rd_profile_t p;
  char err[256];
  if (mprof__rd_file(path, &p, err, sizeof err) != 0) {
    fprintf(stderr, "mprof: warning: %s: %s\n", path, err);
    return EXIT_USAGE;
  }
  mprof_stacks_t s;
  int e = mprof__stacks_build(&p, &s, drop_extra);
  if (e != 0) {
    mprof__rd_free(&p);
    fputs("mprof: warning: ", stderr);
    stacks_error(path, e);
    return EXIT_USAGE;
  }
  FILE* f = stderr;
  fputs("\n", f);
  if (label != NULL) fprintf(f, "process: %s\n\n", label);
  if (leaks) {
    e = mprof__suppress(&s, (const char* const*)supp.pats, supp.n);
    if (e != 0) fprintf(f, "mprof: warning: suppressions not applied: %s\n", strerror(e));
  }
  if (p.nsamples == 0) {
    fputs("mprof: no allocation was sampled (the program allocated too little for the rate; "
          "try -r with a smaller value)\n",
          f);
  } else {
    mprof_top_opts_t o = {MPROF_INUSE, n, lines, exact, leaks, false};
    s.hide_suppressed = leaks;
    mprof__print_top(f, &s, &o);
    if (leaks) print_suppressed(f, &s, exact);
    s.hide_suppressed = false;
    fputs("\n", f);
    o.metric = MPROF_ALLOC;
    o.leaks = false;
    mprof__print_top(f, &s, &o);
  }
  fputs("\n", f);
  mprof__print_recon(f, &p, exact);
  if (leaks) {
    size_t over = mprof__sites_over(&s, MPROF_INUSE, (int64_t)(thr > INT64_MAX ? INT64_MAX : thr));
    char b[32];
    *leaked = over > 0;
    if (over > 0)
      fprintf(f, "\nmprof: leak check failed: %zu site%s hold%s more than %s at exit\n", over,
              over == 1 ? "" : "s", over == 1 ? "s" : "",
              mprof__fmt_bytes(b, sizeof b, (int64_t)thr, exact));
    else
      fprintf(f, "\nmprof: leak check passed: no site holds more than %s at exit\n",
              mprof__fmt_bytes(b, sizeof b, (int64_t)thr, exact));
  }
  fprintf(f, "\nprofile: %s\n", path);
  /* The peak profile (prof_peak) is written right after the final one: PREFIX.PROGRAM.PID.
   * SEQ.f.peak.pb.gz with the next sequence number. */
  size_t pl = strlen(path);
  const char* fin = ".f.pb.gz";
  const char* seq = NULL;
  if (pl > strlen(fin) && strcmp(path + pl - strlen(fin), fin) == 0) {
    for (const char* c = path + pl - strlen(fin); c > path && seq == NULL; c--)
      if (c[-1] == '.') seq = c - 1;
  }
  if (seq != NULL) {
    char pat[PATH_MAX + 32];
    snprintf(pat, sizeof pat, "%.*s.*.f.peak.pb.gz", (int)(seq - path), path);
    glob_t g;
    if (glob(pat, 0, NULL, &g) == 0) {
      fprintf(f, "peak profile: %s\n", g.gl_pathv[g.gl_pathc - 1]);
      globfree(&g);
    }
  }
  mprof__stacks_free(&s);
  mprof__rd_free(&p);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Signals and snapshots while the program runs
 * ------------------------------------------------------------------------------------------- */
/* The library's dump signal in the programs `mprof run` starts (prof_dump_signal): one that
 * programs rarely use. */
#define RUN_DUMP_SIGNAL_NAME "SIGRTMAX-3"
#define RUN_DUMP_SIGNAL (SIGRTMAX - 3)
/* How long a terminating signal waits for the snapshot it asked for before it is forwarded. */
#define RUN_SNAPSHOT_WAIT_MS 2000

static const int run_signals[3] = {SIGINT, SIGTERM, SIGHUP};
/* False when --conf sets its own prof_dump_signal (it overrides mprof's): then the program may
 * not handle RUN_DUMP_SIGNAL, whose default action ends it, so it is never sent. */
static bool run_snapshots = true;
static volatile sig_atomic_t pending_signal = 0;
static volatile sig_atomic_t pending_from_tty = 0;

static void on_signal(int sig, siginfo_t* si, void* uc) {
  (void)uc;
  pending_signal = sig;
  /* ^C at a terminal reaches the whole foreground process group: the program has it already. */
  pending_from_tty = si != NULL && si->si_code == SI_KERNEL;
}

/* Number of snapshots (kind s, i.e. on the dump signal) the process pid has written. */
static size_t count_snapshots(const char* prefix, pid_t pid) {
  char pat[PATH_MAX + 96];
  snprintf(pat, sizeof pat, "%s.*.%ld.*.s*.pb.gz", prefix, (long)pid);
  glob_t g;
  size_t n = 0;
  if (glob(pat, 0, NULL, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; i++)
      if (strstr(g.gl_pathv[i], ".peak.") == NULL && strstr(g.gl_pathv[i], ".mutex.") == NULL &&
          strstr(g.gl_pathv[i], ".threads.") == NULL)
        n++;
    globfree(&g);
  }
  return n;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL); /* a signal ends it early: fine */
}

/* Asks pid for a snapshot through the dump signal and waits for it, at most wait_ms (the
 * library writes it at the program's next allocation). Returns whether it came. */
static bool request_snapshot(pid_t pid, const char* prefix, unsigned wait_ms) {
  if (!run_snapshots) return false;
  size_t before = count_snapshots(prefix, pid);
  if (kill(pid, RUN_DUMP_SIGNAL) != 0) return false;
  uint64_t end = now_ms() + wait_ms;
  while (now_ms() < end) {
    if (count_snapshots(prefix, pid) > before) return true;
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
      return false; /* it exited meanwhile */
    sleep_ms(20);
  }
  return false;
}

/* Waits for the program, forwarding SIGINT/SIGTERM/SIGHUP that mprof receives (after asking for
 * a snapshot of the heap as it is, so the report has one even if the signal ends the program)
 * and taking a snapshot every interval_s seconds (0: never). Returns 0 or waitpid's errno. */
static int wait_program(pid_t pid, const char* prefix, uint64_t interval_s, int* status,
                        int* forwarded) {
  uint64_t next = interval_s ? now_ms() + interval_s * 1000 : UINT64_MAX;
  for (;;) {
    int sig = pending_signal;
    if (sig != 0) {
      pending_signal = 0;
      if (!pending_from_tty) {
        request_snapshot(pid, prefix, RUN_SNAPSHOT_WAIT_MS);
        kill(pid, sig);
        *forwarded = sig;
      }
    }
    pid_t r = waitpid(pid, status, interval_s ? WNOHANG : 0);
    if (r == pid) return 0;
    if (r < 0 && errno != EINTR) return errno;
    if (interval_s) {
      if (now_ms() >= next) {
        request_snapshot(pid, prefix, 0);
        next = now_ms() + interval_s * 1000;
      }
      sleep_ms(50);
    }
  }
}

static int cmd_run(int argc, char** argv) {
  uint64_t rate = 0, thr = 0, n = 10, interval = 0;
  bool have_rate = false, leaks = false, quiet = false, exact = false, lines = false, all = false;
  bool threads = false;
  const char* output = NULL;
  const char* conf = NULL;
  const char* allocator = "mimalloc";
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+:r:o:n:q", run_opts, NULL)) != -1) {
    switch (c) {
    case 'r':
      if (!parse_u64(optarg, &rate) || rate == 0)
        usage_error("--rate needs a positive number of bytes, got \"%s\"", optarg);
      have_rate = true;
      break;
    case 'o':
      output = optarg;
      break;
    case 'n':
      if (!parse_u64(optarg, &n)) usage_error("-n needs a number, got \"%s\"", optarg);
      break;
    case 'q':
      quiet = true;
      break;
    case OPT_CONF:
      conf = optarg;
      break;
    case OPT_ALLOCATOR:
      if (strcmp(optarg, "mimalloc") != 0 && strcmp(optarg, "jemalloc") != 0)
        usage_error("--allocator must be mimalloc or jemalloc, got \"%s\"", optarg);
      allocator = optarg;
      break;
    case OPT_LEAKS:
      leaks = true;
      break;
    case OPT_LEAK_THRESHOLD:
      if (!parse_u64(optarg, &thr))
        usage_error("--leak-threshold needs a number of bytes, got \"%s\"", optarg);
      leaks = true;
      break;
    case OPT_EXACT:
      exact = true;
      break;
    case OPT_LINES:
      lines = true;
      break;
    case OPT_THREADS:
      threads = true;
      break;
    case OPT_ALL:
      all = true;
      break;
    case OPT_SUPPRESSIONS:
      if (supp.n == 0) supp_builtin();
      supp_file(optarg);
      leaks = true;
      break;
    case OPT_INTERVAL:
      if (!parse_u64(optarg, &interval) || interval == 0 || interval > 86400)
        usage_error("--interval needs a number of seconds (1 to 86400), got \"%s\"", optarg);
      break;
    case OPT_DROP:
      add_drop(optarg);
      break;
    case OPT_HELP:
      fputs(usage_text, stdout);
      exit(0);
    case ':':
      usage_error("option %s needs a value", argv[optind - 1]);
      break;
    default:
      usage_error("unknown option \"%s\"", argv[optind - 1]);
      break;
    }
  }
  if (optind < argc && strcmp(argv[optind - 1], "--") != 0 && argv[optind][0] == '-')
    usage_error("unknown option \"%s\"", argv[optind]);
  if (optind >= argc) usage_error("run needs a command: mprof run [options] -- CMD [ARGS...]");
  if (supp.n == 0) supp_builtin();
  if (conf != NULL && strstr(conf, "prof_dump_signal:") != NULL) {
    run_snapshots = false;
    if (interval != 0)
      usage_error("--interval needs mprof's own dump signal: remove prof_dump_signal from --conf");
  }
  char** cmd = argv + optind;

  const char* libfile = strcmp(allocator, "jemalloc") == 0 ? "libmprof-jemalloc.so" : "libmprof.so";
  char lib[PATH_MAX];
  if (!find_library(libfile, lib, sizeof lib)) {
    const char* what = strcmp(allocator, "jemalloc") == 0 ? "--allocator jemalloc: " : "";
    const char* env = getenv("MPROF_LIB_DIR");
    char dir[PATH_MAX] = "?";
    if (env != NULL && env[0] != '\0')
      fprintf(stderr, "mprof: %s%s is not in MPROF_LIB_DIR (%s)\n", what, libfile, env);
    else {
      self_dir(dir, sizeof dir);
      fprintf(stderr,
              "mprof: %s%s is not installed next to this mprof (looked in %s/%s, %s/.. and %s; "
              "set MPROF_LIB_DIR to choose the directory)\n",
              what, libfile, dir, MPROF_REL_LIBDIR, dir, dir);
    }
    return EXIT_USAGE;
  }

  char prefix[PATH_MAX];
  if (output != NULL) {
    snprintf(prefix, sizeof prefix, "%s", output);
  } else {
    snprintf(prefix, sizeof prefix, "mprof"); /* the library adds .PROGRAM.PID... */
  }
  if (strchr(prefix, ',') != NULL)
    usage_error("the output prefix may not contain a comma: %s", prefix);
  if (prefix[0] != '/') {
    /* Absolute, so that a program that changes directory writes where the user asked. */
    char cwd[PATH_MAX], abs[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) != NULL &&
        (size_t)snprintf(abs, sizeof abs, "%s/%s", cwd, prefix) < sizeof abs)
      snprintf(prefix, sizeof prefix, "%s", abs);
  }

  char conf_str[8192];
  int lg = 0;
  if (have_rate) {
    while (lg < 62 && ((uint64_t)2 << lg) <= rate)
      lg++;
  }
  const char* envconf = getenv("MPROF_CONF");
  int len =
      snprintf(conf_str, sizeof conf_str, "%s%sprof_final:true,prof_prefix:%s,prof_dump_signal:%s",
               envconf && envconf[0] ? envconf : "", envconf && envconf[0] ? "," : "", prefix,
               RUN_DUMP_SIGNAL_NAME);
  if (have_rate)
    len += snprintf(conf_str + len, sizeof conf_str - (size_t)len, ",lg_prof_sample:%d", lg);
  if (conf != NULL && conf[0] != '\0')
    len += snprintf(conf_str + len, sizeof conf_str - (size_t)len, ",%s", conf);
  if (threads && (size_t)len < sizeof conf_str)
    len += snprintf(conf_str + len, sizeof conf_str - (size_t)len, ",prof_dump_threads:true");
  if ((size_t)len >= sizeof conf_str) usage_error("--conf string too long");

  char preload[PATH_MAX * 2];
  const char* envpre = getenv("LD_PRELOAD");
  snprintf(preload, sizeof preload, "%s%s%s", lib, envpre && envpre[0] ? " " : "",
           envpre ? envpre : "");

  /* ^\ is the program's business, as with system(3). SIGINT, SIGTERM and SIGHUP are caught:
   * see on_signal and wait_program. */
  struct sigaction ign = {0}, old_quit, catch = {0}, old_term[3];
  ign.sa_handler = SIG_IGN;
  sigaction(SIGQUIT, &ign, &old_quit);
  catch.sa_sigaction = on_signal;
  catch.sa_flags = SA_SIGINFO; /* no SA_RESTART: waitpid returns EINTR */
  sigemptyset(&catch.sa_mask);
  for (int i = 0; i < 3; i++)
    sigaction(run_signals[i], &catch, &old_term[i]);
  run_files_t rf = {0};
  glob_finals(prefix, &rf.before, &rf.have_before);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "mprof: fork: %s\n", strerror(errno));
    return EXIT_USAGE;
  }
  if (pid == 0) {
    sigaction(SIGQUIT, &old_quit, NULL);
    for (int i = 0; i < 3; i++)
      sigaction(run_signals[i], &old_term[i], NULL);
    setenv("MPROF_CONF", conf_str, 1);
    setenv("LD_PRELOAD", preload, 1);
    execvp(cmd[0], cmd);
    int e = errno;
    fprintf(stderr, "mprof: cannot run %s: %s\n", cmd[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  mprof__dw_offline(); /* the program has its environment; the report needs no network */
  int status;
  int forwarded = 0;
  if (wait_program(pid, prefix, interval, &status, &forwarded) != 0) {
    fprintf(stderr, "mprof: waitpid: %s\n", strerror(errno));
    return EXIT_USAGE;
  }
  sigaction(SIGQUIT, &old_quit, NULL);
  for (int i = 0; i < 3; i++)
    sigaction(run_signals[i], &old_term[i], NULL);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  proc_prof_t* procs = NULL;
  bool have_top = false;
  size_t np = run_profiles(prefix, &rf, pid, &procs, &have_top);
  if (rf.have_before) globfree(&rf.before);
  if (np == 0) {
    /* The exec may have failed (its message is already out): nothing to say. */
    if (WIFEXITED(status) && (code == 127 || code == 126)) return code;
    if (WIFSIGNALED(status))
      fprintf(stderr,
              "mprof: warning: %s was killed by signal %d before it could write a profile\n",
              cmd[0], WTERMSIG(status));
    else
      fprintf(stderr,
              "mprof: warning: %s wrote no profile at %s.*.f.pb.gz (it exited with _exit, replaced "
              "its environment, or ran no program that links the C library)\n",
              cmd[0], prefix);
    return code;
  }
  if (!have_top)
    fprintf(stderr,
            "mprof: warning: %s (pid %ld) wrote no profile (it may have exited with _exit); the "
            "report is of the largest other process of the run\n",
            cmd[0], (long)pid);
  if (have_top && procs[0].snapshot) {
    if (forwarded != 0)
      fprintf(stderr,
              "mprof: %s ended without a final profile (%s forwarded); the report is of the heap "
              "as it was at the signal, in the snapshot taken before forwarding it\n",
              cmd[0], strsignal(forwarded));
    else
      fprintf(stderr,
              "mprof: %s ended without a final profile%s; the report is of its latest snapshot%s\n",
              cmd[0], WIFSIGNALED(status) ? " (killed by a signal)" : "",
              interval ? " (--interval)" : "");
  }
  bool leaked = false;
  if (!quiet || leaks) {
    char label[200];
    snprintf(label, sizeof label, "%s (pid %ld)%s", procs[0].prog, procs[0].pid,
             !procs[0].snapshot ? ""
             : forwarded        ? ", snapshot: the heap at the signal"
                                : ", snapshot: the latest one, not the heap at exit");
    report(procs[0].path, np > 1 || procs[0].snapshot ? label : NULL, (size_t)n, lines, exact,
           leaks && !procs[0].snapshot, thr, &leaked);
    if (np > 1) {
      char b1[32], b2[32];
      fprintf(stderr, "\nother processes of the run (%zu), largest first:\n", np - 1);
      fprintf(stderr, "  %-20s %8s %12s %12s  %s\n", "program", "pid", "in use", "allocated",
              "profile");
      for (size_t i = 1; i < np; i++) {
        if (procs[i].inuse < 0)
          fprintf(stderr, "  %-20s %8ld %12s %12s  %s\n", procs[i].prog, procs[i].pid, "?", "?",
                  procs[i].path);
        else
          fprintf(stderr, "  %-20s %8ld %12s %12s  %s\n", procs[i].prog, procs[i].pid,
                  mprof__fmt_bytes(b1, sizeof b1, procs[i].inuse, exact),
                  mprof__fmt_bytes(b2, sizeof b2, procs[i].alloc, exact), procs[i].path);
      }
      if (!all) fprintf(stderr, "(--all reports each; mprof top FILE... merges them)\n");
      for (size_t i = 1; all && i < np; i++) {
        char lb[200];
        snprintf(lb, sizeof lb, "%s (pid %ld)%s", procs[i].prog, procs[i].pid,
                 procs[i].snapshot ? ", snapshot: the latest one, not the heap at exit" : "");
        bool ignored;
        fprintf(stderr, "\n----------------------------------------------------------------\n");
        report(procs[i].path, lb, (size_t)n, lines, exact, false, 0, &ignored);
      }
    }
  }
  if (threads && !quiet) {
    /* <prefix>.<program>.<pid>.<seq>.f.threads.pb.gz, written after the heap's final profile */
    char pat[PATH_MAX + 64];
    snprintf(pat, sizeof pat, "%s.*.%ld.*.f.threads.pb.gz", prefix, (long)pid);
    glob_t g;
    if (glob(pat, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
      fflush(stdout);
      fputc('\n', stderr);
      if (mprof__threads_print(stderr, g.gl_pathv[g.gl_pathc - 1]) == 0)
        fprintf(stderr, "\nthreads: %s\n", g.gl_pathv[g.gl_pathc - 1]);
      globfree(&g);
    } else {
      fprintf(stderr, "mprof: %s wrote no thread snapshot at %s\n", cmd[0], pat);
    }
  }
  free_profiles(procs, np);
  if (leaked && code == 0) return EXIT_LEAK;
  return code;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fputs(usage_text, stderr);
    return EXIT_USAGE;
  }
  const char* sub = argv[1];
  if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
    fputs(usage_text, stdout);
    return 0;
  }
  if (strcmp(sub, "--version") == 0) {
    printf("mprof %s\n", MPROF_VERSION);
    return 0;
  }
  if (strcmp(sub, "run") == 0) return cmd_run(argc - 1, argv + 1);
  mprof__dw_offline();
  if (strcmp(sub, "symbolize") == 0) return cmd_symbolize(argc - 1, argv + 1);
  if (strcmp(sub, "top") == 0) return cmd_top(argc - 1, argv + 1);
  if (strcmp(sub, "diff") == 0) return cmd_diff(argc - 1, argv + 1);
  if (strcmp(sub, "flame") == 0) return cmd_flame(argc - 1, argv + 1);
  if (strcmp(sub, "threads") == 0) {
    if (argc != 3 || argv[2][0] == '-') usage_error("threads needs exactly one snapshot file");
    return mprof__threads_print(stdout, argv[2]) == 0 ? 0 : EXIT_USAGE;
  }
  usage_error("unknown command \"%s\"", sub);
  return EXIT_USAGE;
}
