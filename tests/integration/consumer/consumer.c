/* Links against an installed libmprof and prints its version and whether it samples. */
#include <mprof.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  const char* v = NULL;
  size_t len = sizeof v;
  if (mprof_ctl("version", &v, &len, NULL, 0) != 0) return 1;
  void* volatile p = malloc(100);
  free(p);
  printf("mprof %s\n", v);
  return 0;
}
