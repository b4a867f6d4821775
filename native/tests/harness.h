// A minimal C++ test harness: TEST(name) registers a case, CHECK/CHECK_EQ record failures without
// aborting, and main() (test_main.cpp) runs every case and ends with "N passed, N failed".
#pragma once

#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace svdq_test {

struct Case {
  const char* name;
  std::function<void()> fn;
};

std::vector<Case>& registry();
// Failure count of the case that is running.
int& current_failures();
void report_failure(const char* file, int line, const std::string& what);

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

template <typename A, typename B>
std::string describe_pair(const A& a, const B& b) {
  std::ostringstream os;
  os << "got " << +a << ", expected " << +b;
  return os.str();
}

}  // namespace svdq_test

#define SVDQ_CAT2(a, b) a##b
#define SVDQ_CAT(a, b) SVDQ_CAT2(a, b)
#define TEST(name)                                                                   \
  static void SVDQ_CAT(test_fn_, name)();                                            \
  static ::svdq_test::Registrar SVDQ_CAT(test_reg_, name)(#name, SVDQ_CAT(test_fn_, name)); \
  static void SVDQ_CAT(test_fn_, name)()

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) ::svdq_test::report_failure(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

// Values are compared with ==; for floats use CHECK_BITS to compare bit patterns (NaN-safe).
#define CHECK_EQ(a, b)                                                               \
  do {                                                                               \
    const auto svdq_a = (a);                                                         \
    const auto svdq_b = (b);                                                         \
    if (!(svdq_a == svdq_b))                                                         \
      ::svdq_test::report_failure(__FILE__, __LINE__,                                \
                                  std::string(#a " == " #b ": ") +                   \
                                      ::svdq_test::describe_pair(svdq_a, svdq_b));   \
  } while (0)

#define CHECK_MSG(cond, msg)                                                         \
  do {                                                                               \
    if (!(cond)) ::svdq_test::report_failure(__FILE__, __LINE__, (msg));             \
  } while (0)
