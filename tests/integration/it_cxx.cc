// A C++ program: allocations through operator new and std::string, and the first allocations
// of the process (libstdc++'s own, at load time) happen before mprof starts.
#include <cstdio>
#include <string>
#include <vector>

static std::vector<std::string*> kept;

__attribute__((noinline)) static void cxx_make_strings() {
  for (int i = 0; i < 100000; i++) kept.push_back(new std::string(200, 'x'));
}

__attribute__((noinline)) static void cxx_make_vectors() {
  static std::vector<std::vector<int>*> vs;
  for (int i = 0; i < 20000; i++) vs.push_back(new std::vector<int>(256, i));
}

int main() {
  cxx_make_strings();
  cxx_make_vectors();
  std::printf("it_cxx: %zu strings\n", kept.size());
  return 0;
}
