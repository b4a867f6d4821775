// Unreliable-run detection for the native benchmarks (issue 17 item 7), with the rules and flag names
// of lib/bench/reliability.ts, so that a suspect figure is printed with its flags, never plainly.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

namespace bench_flags {

constexpr double kSpreadLimit = 0.15;  // (q3 − q1) / median of the repetitions
constexpr double kLowPeak = 0.8;       // in-run peak below this fraction of the best peak seen
constexpr double kDriftLimit = 0.15;   // early and late peak samples further apart than this

inline double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double pos = static_cast<double>(v.size() - 1) * q;
  const size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// (q3 − q1) / median (0 for fewer than 3 values).
inline double spread(const std::vector<double>& v) {
  if (v.size() < 3) return 0.0;
  const double mid = quantile(v, 0.5);
  return mid > 0 ? (quantile(v, 0.75) - quantile(v, 0.25)) / mid : 0.0;
}

// Whether the first and second halves of a series of peak samples disagree (the machine changed).
inline bool drifted(const std::vector<double>& samples) {
  if (samples.size() < 4) return false;
  const size_t h = samples.size() / 2;
  const double a = quantile(std::vector<double>(samples.begin(), samples.begin() + static_cast<long>(h)), 0.5);
  const double b = quantile(std::vector<double>(samples.begin() + static_cast<long>(h), samples.end()), 0.5);
  return std::max(a, b) > 0 && std::abs(a - b) / std::max(a, b) > kDriftLimit;
}

inline const char* text(const std::string& flag) {
  if (flag == "spread") return "the repetitions disagree by more than 15% (interquartile range over the median)";
  if (flag == "over-peak") return "above the machine's peak measured in this run";
  if (flag == "over-dram") return "above the DRAM bandwidth measured in this run";
  if (flag == "low-peak") return "the peak interleaved with this figure is below 80% of the best peak of the run: a loaded machine";
  if (flag == "peak-drift") return "the peak samples of the early and late repetitions differ by more than 15%";
  if (flag == "negative-overhead") return "the low-rank branch measured faster than rank 0";
  return "";
}

// The flags of one printed figure; every flag raised in the run is remembered for the legend.
class Flags {
 public:
  Flags& add(const char* flag, bool when = true) {
    if (when && std::find(mine_.begin(), mine_.end(), flag) == mine_.end()) {
      mine_.push_back(flag);
      seen().insert(flag);
    }
    return *this;
  }
  Flags& spread_of(const std::vector<double>& v) { return add("spread", spread(v) > kSpreadLimit); }
  // "" or "! spread, over-peak": appended to the printed figure.
  std::string suffix() const {
    std::string s;
    for (const auto& f : mine_) s += (s.empty() ? "! " : ", ") + f;
    return s;
  }
  static std::set<std::string>& seen() {
    static std::set<std::string> all;
    return all;
  }

 private:
  std::vector<std::string> mine_;
};

// The legend of every flag raised in this run (nothing when none was), and a verdict line.
inline void print_legend() {
  const auto& all = Flags::seen();
  if (all.empty()) {
    std::printf("\n# reliability: no figure flagged\n");
    return;
  }
  std::printf("\n# reliability: figures marked '!' are not results; flags raised:\n");
  for (const auto& f : all) std::printf("#   %s: %s\n", f.c_str(), text(f));
}

}  // namespace bench_flags
