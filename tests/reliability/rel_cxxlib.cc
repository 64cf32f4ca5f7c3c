// A C++ library that a test loads with dlopen(): its operator new and delete must reach
// libmprof.so's malloc and free like the program's own.
#include <cstddef>

extern "C" __attribute__((noinline)) char* rel_cxx_make(std::size_t n) {
  char* p = new char[n];
  p[0] = 1;
  return p;
}

extern "C" void rel_cxx_drop(char* p) {
  delete[] p;
}
