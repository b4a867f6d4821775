// Runs every registered native test case; exit status 1 if any failed.
#include <cstring>

#include "harness.h"

namespace svdq_test {

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

int& current_failures() {
  static int failures = 0;
  return failures;
}

void report_failure(const char* file, int line, const std::string& what) {
  if (current_failures() < 20) std::fprintf(stderr, "    %s:%d: %s\n", file, line, what.c_str());
  ++current_failures();
}

}  // namespace svdq_test

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  int passed = 0, failed = 0;
  for (const auto& c : svdq_test::registry()) {
    if (filter != nullptr && std::strstr(c.name, filter) == nullptr) continue;
    svdq_test::current_failures() = 0;
    c.fn();
    if (svdq_test::current_failures() == 0) {
      ++passed;
      std::printf("ok - %s\n", c.name);
    } else {
      ++failed;
      std::printf("not ok - %s (%d failed checks)\n", c.name, svdq_test::current_failures());
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
