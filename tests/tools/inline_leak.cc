// A C++ program built -O2 -g whose leak is in a function the compiler inlines: `mprof` must name
// leak_some and the line of its `new`, not main or the standard library's allocator.
#include <cstdio>
#include <cstdlib>
#include <vector>

static std::vector<std::vector<int>*> kept;

static inline void leak_some(std::size_t n) {
  for (std::size_t i = 0; i < n; i++)
    kept.push_back(new std::vector<int>(4096)); // LEAK_LINE
}

int main(int argc, char** argv) {
  std::size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 64;
  leak_some(n);
  std::printf("%zu\n", kept.size());
  kept.clear(); // the vectors stay allocated: a leak
  kept.shrink_to_fit();
  return 0;
}
