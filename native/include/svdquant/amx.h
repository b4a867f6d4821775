// Intel AMX (Advanced Matrix Extensions: eight 1 KiB tile registers and a tile multiply unit) for
// the low-bit GEMM's int8 block sums. A capability inside the AVX-512 level, not a level of its own:
// the sums are exact integers either way, so the kernels that use it give the same bits as VNNI
// and the portable code (lowbit.h).
//
// Linux hands the tile state to a process only on request (arch_prctl ARCH_REQ_XCOMP_PERM, Linux
// 5.16+); amx_supported() asks once. SVDQUANT_AMX=0 turns AMX off (1, the default: use it where
// supported).
#pragma once

#include <string>

namespace svdq {

// The CPU has AMX-TILE and AMX-INT8 and the OS granted this process the tile state.
bool amx_supported();
// Whether the AVX-512 low-bit GEMM uses AMX now: amx_supported(), SVDQUANT_AMX, set_amx_enabled.
bool amx_enabled();
// For tests and benchmarks: turn AMX off or back on (no effect where unsupported). Process-wide.
void set_amx_enabled(bool on);
// "active", or why not: "disabled by SVDQUANT_AMX=0", "not supported by this CPU", "the OS did not
// grant the tile state (...)"; for doctor and bench reports.
std::string amx_status();
// Non-empty for an invalid SVDQUANT_AMX (the addon then refuses to load).
const std::string& amx_setting_error();

}  // namespace svdq
