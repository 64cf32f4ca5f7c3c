/* The main thread calls pthread_exit() while another thread still allocates: the process must
 * end when that thread does (glibc's rule), with its atexit handlers and the final dump. The
 * handlers run on the last thread's own stack, which the program made: one that uses 1 MiB of
 * stack must work (it would not on a small stack of a thread the profiler made). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void* volatile sink;

static void* worker(void* arg) {
  (void)arg;
  for (int i = 0; i < 200000; i++) {
    sink = malloc(100 + (size_t)i % 1000);
    free(sink);
  }
  usleep(50000);
  return NULL;
}

__attribute__((noinline)) static unsigned deep(volatile unsigned char* big, size_t n) {
  unsigned sum = 0;
  for (size_t i = 0; i < n; i += 4096)
    sum += big[i];
  return sum;
}

static void bye(void) {
  volatile unsigned char big[1 << 20];
  for (size_t i = 0; i < sizeof big; i += 4096)
    big[i] = 1;
  printf("atexit handler ran (%u)\n", deep(big, sizeof big));
}

int main(void) {
  atexit(bye);
  for (int i = 0; i < 1000; i++)
    sink = malloc(1000);
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  printf("main thread exits\n");
  fflush(stdout);
  pthread_exit(NULL);
}
