// Run-time choice of the instruction-set level (DESIGN.md §5): the best level the CPU supports,
// lowered by SVDQUANT_ISA=portable|avx2|avx512 for testing every variant on one machine.
#pragma once

#include <string>

#include "svdquant/formats.h"

namespace svdq {

// Highest level this CPU (and OS, for the AVX register state) supports.
Isa detect_cpu_isa();

struct IsaChoice {
  Isa active;          // what the kernels use
  Isa detected;        // what the CPU supports
  std::string source;  // "cpu" or "SVDQUANT_ISA=<value>"
  std::string error;   // non-empty when SVDQUANT_ISA is invalid or asks for more than the CPU has
};

// Decided once per process (first call), from the CPU and SVDQUANT_ISA.
const IsaChoice& isa_choice();

// Kernels for the active level, or for an explicitly requested one (must be <= detected).
const FormatKernels& format_kernels();
const FormatKernels& format_kernels_for(Isa isa);

}  // namespace svdq
