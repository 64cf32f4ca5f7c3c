// First allocations of a C++ program (it_first.sh): libstdc++ allocates its emergency pool
// before the profiler's constructor runs; at lg_prof_sample:0 the 1000 `new char[1000]` of
// site_new, first thing in main, are 1000 samples. Dumps a profile to argv[1].
#include <dlfcn.h>

static char* volatile keep[1000];

__attribute__((noinline)) static void site_new() {
  for (int i = 0; i < 1000; i++)
    keep[i] = new char[1000];
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  site_new();
  int (*ctl)(const char*, void*, size_t*, void*, size_t);
  *reinterpret_cast<void**>(&ctl) = dlsym(RTLD_DEFAULT, "mprof_ctl");
  if (ctl == nullptr) return 2;
  const char* path = argv[1];
  return ctl("prof.dump", nullptr, nullptr, &path, sizeof path) != 0;
}
