/* The mprof command: run a program under the profiler and report, read a profile, compare two,
 * draw a flame graph. See docs/mprof.1.
 *
 * Every failure prints one line "mprof: ..." on stderr and exits with status 2 (usage errors and
 * unreadable profiles); `mprof run` otherwise exits with the status of the program it ran. */
#include "mprof_dwarf.h"
#include "mprof_read.h"
#include "mprof_report.h"

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
    "       mprof top FILE [--inuse|--alloc|--objects] [-n N] [--lines] [--exact] [--drop RE]\n"
    "       mprof diff OLD NEW [-n N] [--lines] [--exact]\n"
    "       mprof flame FILE -o OUT.html [--inuse|--alloc]\n"
    "       mprof symbolize IN OUT         write IN with inline frames, files and lines\n"
    "       mprof --help | --version\n"
    "\n"
    "run options:\n"
    "  -r, --rate BYTES         mean bytes between samples (rounded down to a power of two;\n"
    "                           default 524288; 1 samples every allocation)\n"
    "  -o, --output PREFIX      profile path prefix (default ./mprof.CMD); the final profile is\n"
    "                           PREFIX.PID.SEQ.f.pb.gz\n"
    "  --conf 'k:v,...'         more MPROF_CONF options (docs/OPTIONS.md)\n"
    "  --allocator NAME         mimalloc (default) or jemalloc\n"
    "  -n N                     rows per table (default 10)\n"
    "  --leaks                  list the sites still holding memory at exit; exit 23 if one holds\n"
    "                           more than --leak-threshold bytes (and CMD exited 0)\n"
    "  --leak-threshold BYTES   default 0 (any)\n"
    "  -q, --quiet              no report (the profile is still written)\n"
    "  --drop REGEX             (also top, diff, flame) more allocation wrappers: functions\n"
    "                           matching REGEX whole are never sites (see mprof(1), SITES)\n"
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
  OPT_HELP
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
    {"inuse", no_argument, NULL, OPT_INUSE},     {"alloc", no_argument, NULL, OPT_ALLOC},
    {"objects", no_argument, NULL, OPT_OBJECTS}, {"lines", no_argument, NULL, OPT_LINES},
    {"exact", no_argument, NULL, OPT_EXACT},     {"output", required_argument, NULL, 'o'},
    {"drop", required_argument, NULL, OPT_DROP}, {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

typedef struct read_args_s {
  mprof_top_opts_t top;
  const char* output;
  const char* files[2];
  int nfiles;
} read_args_t;

static void parse_read_args(int argc, char** argv, read_args_t* a, const char* cmd) {
  memset(a, 0, sizeof *a);
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
  for (int i = optind; i < argc; i++) {
    if (a->nfiles == 2) usage_error("too many arguments for %s", cmd);
    a->files[a->nfiles++] = argv[i];
  }
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
                   strcmp(s, "--drop") == 0;
      if (takes && i + 1 < argc) opts[no++] = argv[++i];
    } else {
      files[nf++] = argv[i];
    }
  }
  parse_read_args(no, opts, a, cmd);
  for (int i = 0; i < nf; i++) {
    if (a->nfiles == 2) usage_error("too many arguments for %s", cmd);
    a->files[a->nfiles++] = files[i];
  }
  free(opts);
  free(files);
}

static int cmd_top(int argc, char** argv) {
  read_args_t a;
  parse_read_args_anywhere(argc, argv, &a, "top");
  if (a.nfiles != 1) usage_error("top needs exactly one profile");
  mprof_rd_profile_t p;
  mprof_stacks_t s;
  load(a.files[0], &p, &s, true);
  int err = mprof__print_top(stdout, &s, &a.top);
  if (err == 0) {
    fputc('\n', stdout);
    mprof__print_recon(stdout, &p, a.top.exact);
  }
  mprof__stacks_free(&s);
  mprof__rd_free(&p);
  return err ? EXIT_USAGE : 0;
}

static int cmd_diff(int argc, char** argv) {
  read_args_t a;
  parse_read_args_anywhere(argc, argv, &a, "diff");
  if (a.nfiles != 2) usage_error("diff needs two profiles: OLD NEW");
  mprof_rd_profile_t p0, p1;
  mprof_stacks_t s0, s1;
  load(a.files[0], &p0, &s0, false);
  load(a.files[1], &p1, &s1, false);
  if (p0.nsamples == 0 && p1.nsamples == 0) {
    fprintf(stderr, "mprof: %s and %s: neither profile has samples\n", a.files[0], a.files[1]);
    return EXIT_USAGE;
  }
  int err = mprof__print_diff(stdout, &s0, &s1, a.top.n, a.top.lines, a.top.exact);
  if (err == 0) {
    fputc('\n', stdout);
    mprof__print_recon(stdout, &p1, a.top.exact);
  }
  mprof__stacks_free(&s0);
  mprof__stacks_free(&s1);
  mprof__rd_free(&p0);
  mprof__rd_free(&p1);
  return err ? EXIT_USAGE : 0;
}

static int cmd_flame(int argc, char** argv) {
  read_args_t a;
  parse_read_args_anywhere(argc, argv, &a, "flame");
  if (a.nfiles != 1) usage_error("flame needs exactly one profile");
  if (a.output == NULL) usage_error("flame needs -o OUT.html");
  if (a.top.metric == MPROF_INUSE_OBJECTS) usage_error("flame draws bytes: --inuse or --alloc");
  mprof_rd_profile_t p;
  mprof_stacks_t s;
  load(a.files[0], &p, &s, true);
  int vi = a.top.metric == MPROF_ALLOC ? s.alloc_space : s.inuse_space;
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
  snprintf(title, sizeof title, "mprof: %s", b ? b + 1 : a.files[0]);
  int err = mprof__write_flame(f, &s, a.top.metric, title);
  if (fclose(f) != 0 && err == 0) err = errno;
  if (err != 0) {
    fprintf(stderr, "mprof: %s: %s\n", a.output, strerror(err));
    remove(a.output);
  }
  mprof__stacks_free(&s);
  mprof__rd_free(&p);
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
    {"help", no_argument, NULL, OPT_HELP},
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

/* The profile that the run's top process wrote at exit: PREFIX.PID.*.f.pb.gz. */
static bool find_final(const char* prefix, pid_t pid, char* out, size_t len, size_t* others) {
  char pat[PATH_MAX + 64];
  snprintf(pat, sizeof pat, "%s.*.f.pb.gz", prefix);
  glob_t g;
  *others = 0;
  bool found = false;
  char mine[64];
  snprintf(mine, sizeof mine, ".%ld.", (long)pid);
  size_t plen = strlen(prefix);
  if (glob(pat, 0, NULL, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; i++) {
      if (strncmp(g.gl_pathv[i] + plen, mine, strlen(mine)) == 0) {
        snprintf(out, len, "%s", g.gl_pathv[i]);
        found = true;
      } else {
        (*others)++;
      }
    }
    globfree(&g);
  }
  return found;
}

static int report(const char* path, size_t n, bool lines, bool exact, bool leaks, uint64_t thr,
                  bool* leaked) {
  mprof_rd_profile_t p;
  char err[256];
  if (mprof__rd_file(path, &p, err, sizeof err) != 0) {
    fprintf(stderr, "mprof: %s: %s\n", path, err);
    return EXIT_USAGE;
  }
  mprof_stacks_t s;
  int e = mprof__stacks_build(&p, &s, drop_extra);
  if (e != 0) {
    mprof__rd_free(&p);
    stacks_error(path, e);
    return EXIT_USAGE;
  }
  FILE* f = stderr;
  fputs("\n", f);
  if (p.nsamples == 0) {
    fputs("mprof: no allocation was sampled (the program allocated too little for the rate; "
          "try -r with a smaller value)\n",
          f);
  } else {
    mprof_top_opts_t o = {MPROF_INUSE, n, lines, exact, leaks};
    mprof__print_top(f, &s, &o);
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
  mprof__stacks_free(&s);
  mprof__rd_free(&p);
  return 0;
}

static int cmd_run(int argc, char** argv) {
  uint64_t rate = 0, thr = 0, n = 10;
  bool have_rate = false, leaks = false, quiet = false, exact = false, lines = false;
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
    const char* b = strrchr(cmd[0], '/');
    snprintf(prefix, sizeof prefix, "mprof.%s", b ? b + 1 : cmd[0]);
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
      snprintf(conf_str, sizeof conf_str, "%s%sprof_final:true,prof_prefix:%s",
               envconf && envconf[0] ? envconf : "", envconf && envconf[0] ? "," : "", prefix);
  if (have_rate)
    len += snprintf(conf_str + len, sizeof conf_str - (size_t)len, ",lg_prof_sample:%d", lg);
  if (conf != NULL && conf[0] != '\0')
    len += snprintf(conf_str + len, sizeof conf_str - (size_t)len, ",%s", conf);
  if ((size_t)len >= sizeof conf_str) usage_error("--conf string too long");

  char preload[PATH_MAX * 2];
  const char* envpre = getenv("LD_PRELOAD");
  snprintf(preload, sizeof preload, "%s%s%s", lib, envpre && envpre[0] ? " " : "",
           envpre ? envpre : "");

  /* Like system(3): while the program runs, ^C and ^\ are its business; the report follows. */
  struct sigaction ign = {0}, old_int, old_quit;
  ign.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ign, &old_int);
  sigaction(SIGQUIT, &ign, &old_quit);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "mprof: fork: %s\n", strerror(errno));
    return EXIT_USAGE;
  }
  if (pid == 0) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    setenv("MPROF_CONF", conf_str, 1);
    setenv("LD_PRELOAD", preload, 1);
    execvp(cmd[0], cmd);
    int e = errno;
    fprintf(stderr, "mprof: cannot run %s: %s\n", cmd[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  mprof__dw_offline(); /* the program has its environment; the report needs no network */
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "mprof: waitpid: %s\n", strerror(errno));
      return EXIT_USAGE;
    }
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGQUIT, &old_quit, NULL);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (WIFEXITED(status) && (code == 127 || code == 126)) {
    /* The exec may have failed (its message is already out): nothing to report. */
    char path[PATH_MAX];
    size_t others;
    if (!find_final(prefix, pid, path, sizeof path, &others)) return code;
  }
  char path[PATH_MAX];
  size_t others = 0;
  if (!find_final(prefix, pid, path, sizeof path, &others)) {
    if (WIFSIGNALED(status))
      fprintf(stderr, "mprof: %s was killed by signal %d before it could write a profile\n", cmd[0],
              WTERMSIG(status));
    else
      fprintf(stderr,
              "mprof: %s wrote no profile at %s.%ld.*.f.pb.gz (did it replace its "
              "environment or exit with _exit?)\n",
              cmd[0], prefix, (long)pid);
    return code != 0 ? code : EXIT_USAGE;
  }
  bool leaked = false;
  if (!quiet || leaks) {
    if (report(path, (size_t)n, lines, exact, leaks, thr, &leaked) != 0)
      return code ? code : EXIT_USAGE;
    if (others > 0)
      fprintf(stderr, "other processes of the run wrote %zu more profile%s: %s.*.f.pb.gz\n", others,
              others == 1 ? "" : "s", prefix);
  }
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
  usage_error("unknown command \"%s\"", sub);
  return EXIT_USAGE;
}
