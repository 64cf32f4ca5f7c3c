/* The main thread calls pthread_exit() while another thread still allocates: the process must
 * end when that thread does (glibc's rule), with its atexit handlers and the final dump, even
 * though libmprof.so's mprof-heap thread never exits. */
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

static void bye(void) {
  printf("atexit handler ran\n");
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
