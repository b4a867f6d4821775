// Microbenchmarks of this machine's limits, measured in the same run as the kernels they judge
// (bench/): fp32 FMA and int8 dot-product throughput from register-only loops, and DRAM read
// bandwidth from streaming a buffer far larger than the caches.
#pragma once

#include <cstdint>

#include "svdquant/isa.h"

namespace svdq {

// Register-only loops for one ISA level; each returns the operations it performed (2 per FMA lane,
// 2 per int8 multiply-add). `iters` scales the run time.
struct PeakKernels {
  double (*fp32_fma)(int64_t iters);
  double (*int8_dot)(int64_t iters);
  double (*amx_int8_dot)(int64_t iters);  // nullptr below AVX-512; call only when amx_enabled()
};

namespace portable { extern const PeakKernels kPeakKernels; }
namespace avx2 { extern const PeakKernels kPeakKernels; }
namespace avx512 { extern const PeakKernels kPeakKernels; }

const PeakKernels& peak_kernels_for(Isa isa);

struct Peaks {
  double fp32_gflops;  // fp32 FMA peak, GFLOP/s (2 flops per lane per FMA)
  double int8_gops;    // int8 multiply-add peak, GOP/s (2 ops per MAC): VNNI on AVX-512
  double amx_int8_gops;  // the same on the AMX tile unit; 0 where the kernels do not use AMX
  double dram_gbps;    // read bandwidth, GB/s (1e9 bytes/s)
};

// Measures all three with `threads` threads (<= 0: physical cores) on the given ISA level, each as
// the best of a few short repetitions (about 0.2 s per figure).
Peaks measure_peaks(int threads, Isa isa);

}  // namespace svdq
