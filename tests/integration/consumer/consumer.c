/* Links against an installed mprof library and prints its version and its allocator. */
#include <mprof.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
  const char* v = NULL;
  const char* a = NULL;
  size_t len = sizeof v;
  if (mprof_ctl("version", &v, &len, NULL, 0) != 0) return 1;
  len = sizeof a;
  if (mprof_ctl("allocator", &a, &len, NULL, 0) != 0) return 1;
  void* volatile p = malloc(100);
  free(p);
  printf("mprof %s on %s\n", v, a);
  return 0;
}
