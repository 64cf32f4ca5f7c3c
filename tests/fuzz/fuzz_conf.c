/* libFuzzer harness for the MPROF_CONF parser (plugin/mprof_conf.c).
 *
 * Checks, for any input: every report line starts with "mprof: ", is shorter than 512 bytes and
 * holds only printable ASCII; the error count equals the number of lines; every option ends up
 * inside the range of its descriptor; and parsing is deterministic. Not built by CMake:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iplugin -Iinclude \
 *     plugin/mprof_conf.c tests/fuzz/fuzz_conf.c -o /tmp/fuzz_conf
 *   /tmp/fuzz_conf -max_total_time=30 tests/fuzz/corpus/conf */
#include "mprof_conf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static void check_line(const char* line, void* arg) {
  unsigned* lines = arg;
  size_t len = strnlen(line, 512);
  if (len >= 512) __builtin_trap();
  if (strncmp(line, "mprof: ", 7) != 0) __builtin_trap();
  for (size_t i = 0; i < len; i++) {
    if (line[i] < 0x20 || line[i] > 0x7e) __builtin_trap();
  }
  ++*lines;
}

static void check_ranges(const mprof_opts_t* o) {
  for (size_t i = 0; i < mprof__opt_ndescs; i++) {
    const mprof_opt_desc_t* d = &mprof__opt_descs[i];
    const char* f = (const char*)o + d->offset;
    long long v = 0;
    switch (d->type) {
    case MPROF_OPT_BOOL: {
      unsigned char b; /* read the byte: a bool holding anything but 0 or 1 is the bug */
      memcpy(&b, f, 1);
      v = b;
      break;
    }
    case MPROF_OPT_SIZE: {
      size_t s;
      memcpy(&s, f, sizeof s);
      if (s > (size_t)d->max) __builtin_trap();
      v = (long long)s;
      break;
    }
    case MPROF_OPT_SSIZE: {
      ssize_t s;
      memcpy(&s, f, sizeof s);
      v = s;
      break;
    }
    case MPROF_OPT_UNSIGNED: {
      unsigned u;
      memcpy(&u, f, sizeof u);
      v = u;
      break;
    }
    case MPROF_OPT_STRING:
      v = (long long)strnlen(f, (size_t)d->max + 1);
      break;
    }
    if (v < d->min || v > d->max) __builtin_trap();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  char* conf = malloc(size + 1);
  if (conf == NULL) return 0;
  memcpy(conf, data, size);
  conf[size] = '\0';

  mprof_opts_t a, b;
  mprof__opts_default(&a);
  unsigned lines = 0;
  unsigned errors = mprof__conf_parse(conf, &a, check_line, &lines);
  if (errors != lines) __builtin_trap();
  check_ranges(&a);

  mprof__opts_default(&b);
  if (mprof__conf_parse(conf, &b, NULL, NULL) != errors) __builtin_trap();
  if (memcmp(&a, &b, sizeof a) != 0) __builtin_trap(); /* both start from the same bytes */

  free(conf);
  return 0;
}
