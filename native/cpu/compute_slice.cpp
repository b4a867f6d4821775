// compute_slice.h on Linux: sched_getattr / sched_setattr by raw syscall (glibc 2.36 has no wrappers).
#include "svdquant/compute_slice.h"

#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace svdq {

const ComputeSliceSetting& compute_slice_setting() {
  static const ComputeSliceSetting setting = [] {
    const char* e = std::getenv("SVDQUANT_SCHED_SLICE_MS");
    if (e == nullptr || *e == '\0') return ComputeSliceSetting{100000, "default", ""};
    const std::string text = e;
    char* end = nullptr;
    const double ms = std::strtod(e, &end);
    if (end == e || *end != '\0' || !(ms >= 0 && ms <= 100)) {
      return ComputeSliceSetting{0, "SVDQUANT_SCHED_SLICE_MS=" + text,
                                 "invalid SVDQUANT_SCHED_SLICE_MS=\"" + text + "\": expected milliseconds in [0, 100] (0 turns the scheduler hint off)"};
    }
    return ComputeSliceSetting{static_cast<int64_t>(ms * 1000), "SVDQUANT_SCHED_SLICE_MS=" + text, ""};
  }();
  return setting;
}

#if defined(__linux__) && defined(SYS_sched_setattr) && defined(SYS_sched_getattr)

namespace {

// The kernel's struct sched_attr (SCHED_ATTR_SIZE_VER1, 56 bytes).
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
  uint32_t sched_util_min;
  uint32_t sched_util_max;
};

bool get_attr(SchedAttr& a) {
  std::memset(&a, 0, sizeof a);
  return syscall(SYS_sched_getattr, 0, &a, static_cast<unsigned>(sizeof a), 0u) == 0;
}

bool fair_policy(uint32_t policy) { return policy == SCHED_OTHER || policy == SCHED_BATCH; }

// Sets the slice, keeping policy and nice. Failure (an old kernel, a seccomp filter) is ignored:
// the hint only improves latency, never correctness.
bool set_slice(const SchedAttr& current, uint64_t runtime_ns) {
  SchedAttr a = current;
  a.size = sizeof a;
  a.sched_flags = 0;
  a.sched_runtime = runtime_ns;
  a.sched_deadline = 0;
  a.sched_period = 0;
  return syscall(SYS_sched_setattr, 0, &a, 0u) == 0;
}

// The calling thread's attributes, if the hint is on and the thread is one it applies to.
bool hint_applies(SchedAttr& a) { return compute_slice_us() > 0 && get_attr(a) && fair_policy(a.sched_policy); }

uint64_t hint_ns() { return static_cast<uint64_t>(compute_slice_us()) * 1000; }

}  // namespace

void mark_compute_thread() {
  SchedAttr a;
  if (hint_applies(a)) set_slice(a, hint_ns());
}

ComputeSliceScope::ComputeSliceScope() {
  SchedAttr a;
  // Already marked (a nested scope, or a thread that marked itself): nothing to undo here.
  if (hint_applies(a) && a.sched_runtime != hint_ns()) restore_ = set_slice(a, hint_ns());
}

ComputeSliceScope::~ComputeSliceScope() {
  SchedAttr a;
  if (restore_ && get_attr(a)) set_slice(a, 0);  // 0: the kernel's default slice
}

int64_t current_slice_us() {
  SchedAttr a;
  if (!get_attr(a) || !fair_policy(a.sched_policy)) return -1;
  return static_cast<int64_t>(a.sched_runtime / 1000);
}

#else

void mark_compute_thread() {}
ComputeSliceScope::ComputeSliceScope() {}
ComputeSliceScope::~ComputeSliceScope() {}
int64_t current_slice_us() { return -1; }

#endif

}  // namespace svdq
