/* Small helpers shared by the reliability test programs. */
#ifndef REL_PROC_H
#define REL_PROC_H

#include <dirent.h>
#include <time.h>

/* Threads of this process now, from /proc/self/task; -1 if it cannot be read. */
static inline int rel_task_count(void) {
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return -1;
  int n = 0;
  for (struct dirent* e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* The thread count once it settles at `want`: a thread that pthread_join has returned for can
 * stay listed for a moment while the kernel finishes its exit, so a count that differs is read
 * again for up to a second. A thread that really is there stays counted. */
static inline int rel_task_count_settled(int want) {
  int n = rel_task_count();
  for (int i = 0; i < 100 && n != want; i++) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
    n = rel_task_count();
  }
  return n;
}

#endif
