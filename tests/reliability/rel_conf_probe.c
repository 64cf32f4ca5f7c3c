/* Prints the options in force, read with mprof_ctl, then allocates and frees a little and
 * prints "alive": rel_conf_errors.sh runs it under libmprof.so with bad MPROF_CONF strings. */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef int (*ctl_fn)(const char*, void*, size_t*, void*, size_t);

int main(void) {
  void* sym = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (sym == NULL) return 2;
  ctl_fn ctl;
  memcpy(&ctl, &sym, sizeof ctl);
  bool prof = false, final = false;
  size_t lg = 0, len = sizeof lg;
  ssize_t interval = 0;
  const char* prefix = NULL;
  ctl("opt.lg_prof_sample", &lg, &len, NULL, 0);
  len = sizeof prof;
  ctl("opt.prof", &prof, &len, NULL, 0);
  len = sizeof final;
  ctl("opt.prof_final", &final, &len, NULL, 0);
  len = sizeof interval;
  ctl("opt.lg_prof_interval", &interval, &len, NULL, 0);
  len = sizeof prefix;
  ctl("opt.prof_prefix", &prefix, &len, NULL, 0);
  printf("prof=%d lg_prof_sample=%zu prof_final=%d lg_prof_interval=%zd prof_prefix=%s\n", prof, lg,
         final, interval, prefix != NULL ? prefix : "(null)");
  for (int i = 0; i < 10000; i++) {
    void* volatile p = malloc((size_t)i + 1);
    free(p);
  }
  printf("alive\n");
  return 0;
}
