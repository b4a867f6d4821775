// Scheduler hint for the engine's compute threads (DESIGN.md §5 "Threads").
//
// Why: a forward keeps every core busy, and on Linux (EEVDF, 6.6+) a thread that wakes up — the
// JavaScript thread, after a timer or a finished job — waits for a running compute thread to use
// up its slice, often until the next timer tick (4 ms at HZ=250). Measured on 2 cores: 1 in 35 of
// 1 ms event-loop ticks late by more than 4 ms during tinyDit forwards. A compute thread that asks
// for a long slice (Linux 6.12+: sched_setattr's sched_runtime for SCHED_OTHER) declares itself
// latency-tolerant: its virtual deadline moves later, so a waking normal thread preempts it at once.
// Its share of the CPU (its weight, from nice) does not change. Elsewhere, and on kernels without
// custom slices, this is a no-op.
#pragma once

#include <cstdint>
#include <string>

namespace svdq {

struct ComputeSliceSetting {
  int64_t us;          // the slice asked for, in microseconds; 0: the hint is off
  std::string source;  // "default" or "SVDQUANT_SCHED_SLICE_MS=..."
  std::string error;   // non-empty for an invalid SVDQUANT_SCHED_SLICE_MS (the hint is then off)
};

// SVDQUANT_SCHED_SLICE_MS: milliseconds in [0, 100] (0 turns the hint off), default 100 (the
// kernel's maximum). Read once. The addon refuses to load with an invalid value (lib/native.ts).
const ComputeSliceSetting& compute_slice_setting();
inline int64_t compute_slice_us() { return compute_slice_setting().us; }

// Marks the calling thread as a compute thread for the rest of its life: the pool's own workers,
// and a libuv worker when it starts one of the addon's inference jobs (async_task.h). The libuv
// worker keeps the slice between jobs because the wakeup for the next job is where it would
// otherwise preempt the JavaScript thread (which queued the job), leaving it to wait for a tick.
void mark_compute_thread();

// Marks the calling thread for the scope's lifetime (any thread that lends itself to a
// parallel_for: a benchmark's main thread, a libuv worker running a one-off job), then gives it
// the kernel's default slice back. A thread already marked, or with a policy other than SCHED_OTHER / SCHED_BATCH, is
// left alone; a custom slice that another library set on the thread is not preserved.
class ComputeSliceScope {
 public:
  ComputeSliceScope();
  ~ComputeSliceScope();
  ComputeSliceScope(const ComputeSliceScope&) = delete;
  ComputeSliceScope& operator=(const ComputeSliceScope&) = delete;

 private:
  bool restore_ = false;
};

// The calling thread's slice in microseconds as the kernel reports it (sched_getattr; 0 on kernels
// without custom slices), or -1 where that is not available. For tests and `svdquant doctor`.
int64_t current_slice_us();

}  // namespace svdq
