/* Thread labels (see mprof_tlabel.h). */
#include "mprof_tlabel.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define NAME_BYTES 24 /* a 15-byte thread name or a decimal tid, and the NUL */

enum { SLOT_EMPTY = 0, SLOT_WRITING, SLOT_READY };

/* Open addressing by name hash. A slot goes EMPTY -> WRITING (CAS by the one inserter) ->
 * READY (release, after the name is written) and never back, so readers need no lock. */
typedef struct slot_s {
  _Atomic uint32_t state;
  char name[NAME_BYTES];
} slot_t;

static slot_t slots[MPROF_TLABEL_MAX];
static _Atomic uint32_t used; /* slots claimed */
static char process_name[NAME_BYTES];
static const char other_name[] = "other";
#define TAG_OTHER (MPROF_TLABEL_MAX + 1)
#define REREAD_EVERY 32 /* samples of a thread between two reads of its name */

/* The calling thread's tag and id, and samples left before the name is read again. */
typedef struct tcache_s {
  uint16_t tag;
  uint16_t left;
  pid_t tid;
} tcache_t;
static __thread tcache_t tcache __attribute__((tls_model("initial-exec")));
static pid_t pid; /* getpid(), cached; reset in a child after fork() */

void mprof__tlabel_init(void) {
  int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, process_name, sizeof process_name - 1);
  close(fd);
  if (n <= 0) n = 0;
  if (n > 0 && process_name[n - 1] == '\n') n--;
  process_name[n] = '\0';
}

static uint32_t hash_name(const char* s) {
  uint32_t h = 2166136261u;
  for (; *s != '\0'; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static void decimal(char* buf, long v) {
  char d[24];
  size_t i = sizeof d;
  d[--i] = '\0';
  do {
    d[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0 && i > 0);
  memcpy(buf, d + i, sizeof d - i);
}

static uint16_t intern(const char* name) {
  uint32_t i = hash_name(name) % MPROF_TLABEL_MAX;
  for (uint32_t n = 0; n < MPROF_TLABEL_MAX; n++, i = (i + 1) % MPROF_TLABEL_MAX) {
    slot_t* s = &slots[i];
    uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (st == SLOT_EMPTY) {
      /* Keep a quarter of the table free so that probes stay short. */
      if (atomic_load_explicit(&used, memory_order_relaxed) >= MPROF_TLABEL_MAX / 4 * 3)
        return TAG_OTHER;
      if (atomic_compare_exchange_strong(&s->state, &st, SLOT_WRITING)) {
        atomic_fetch_add_explicit(&used, 1, memory_order_relaxed);
        size_t len = strnlen(name, NAME_BYTES - 1);
        memcpy(s->name, name, len);
        s->name[len] = '\0';
        atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
        return (uint16_t)(i + 1);
      }
    }
    while (st == SLOT_WRITING) /* another thread is writing this slot's name: a few stores */
      st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (strncmp(s->name, name, NAME_BYTES) == 0) return (uint16_t)(i + 1);
  }
  return TAG_OTHER;
}

uint16_t mprof__tlabel_current(void) {
  tcache_t* c = &tcache;
  if (c->left != 0 && c->tag != 0) {
    c->left--;
    return c->tag;
  }
  char name[NAME_BYTES] = "";
  if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0) name[0] = '\0';
  name[16] = '\0';
  if (c->tid == 0) c->tid = gettid();
  if (pid == 0) pid = getpid();
  if (name[0] == '\0' || (c->tid != pid && strcmp(name, process_name) == 0))
    decimal(name, (long)c->tid);
  c->tag = intern(name);
  c->left = REREAD_EVERY - 1;
  return c->tag;
}

void mprof__tlabel_fork_child(void) {
  pid = 0;
  memset(&tcache, 0, sizeof tcache);
}

const char* mprof__tlabel_name(uint16_t tag) {
  if (tag == 0) return NULL;
  if (tag == TAG_OTHER) return other_name;
  return slots[tag - 1].name;
}
