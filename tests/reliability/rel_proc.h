/* Small helpers shared by the reliability test programs. */
#ifndef REL_PROC_H
#define REL_PROC_H

#include <dirent.h>

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

#endif
