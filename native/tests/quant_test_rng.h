// Seeded random numbers shared by the quantizer tests (splitmix64 + Box-Muller).
#pragma once

#include <cmath>
#include <cstdint>

namespace svdq_test {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  float normal() {
    return static_cast<float>(std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()));
  }
  // Heavy-tailed: a normal divided by the root of a chi-square with 3 degrees of freedom (Student t3).
  float heavy() {
    double c = 0.0;
    for (int i = 0; i < 3; ++i) {
      const double z = normal();
      c += z * z;
    }
    return static_cast<float>(normal() / std::sqrt(c / 3.0 + 1e-6));
  }
};

}  // namespace svdq_test
