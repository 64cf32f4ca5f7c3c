/* A small program with three known allocation sites, used by the README's demo.
 *
 *   make_cache:   keeps 48 MiB live in 64 KiB blocks
 *   parse_lines:  allocates 256 MiB in 512-byte strings and frees them all
 *   leak_nodes:   leaks 8 MiB in 128-byte nodes
 *
 * Run it under libmprof.so with prof_final:true and open the profile with go tool pprof. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void** make_cache(size_t* n) {
  *n = (48u << 20) / (64u << 10);
  void** blocks = malloc(*n * sizeof(void*));
  for (size_t i = 0; i < *n; i++) {
    blocks[i] = malloc(64u << 10);
    memset(blocks[i], 1, 64u << 10);
  }
  return blocks;
}

__attribute__((noinline)) static size_t parse_lines(void) {
  size_t total = 0;
  for (size_t i = 0; i < (256u << 20) / 512; i++) {
    char* line = malloc(512);
    snprintf(line, 512, "line %zu", i);
    total += strlen(line);
    free(line);
  }
  return total;
}

struct node {
  struct node* next;
  char payload[120];
};

__attribute__((noinline)) static struct node* leak_nodes(void) {
  struct node* head = NULL;
  for (size_t i = 0; i < (8u << 20) / sizeof(struct node); i++) {
    struct node* n = malloc(sizeof *n);
    n->next = head;
    head = n;
  }
  return head;
}

int main(void) {
  size_t n;
  void** cache = make_cache(&n);
  size_t chars = parse_lines();
  struct node* leaked = leak_nodes();
  printf("hello_heap: %zu cache blocks, %zu characters parsed, leaked list at %p\n", n, chars,
         (void*)leaked);
  (void)cache; /* still live at exit, like the leaked nodes */
  return 0;
}
