// CPU feature detection and the SVDQUANT_ISA override (DESIGN.md §5).
#include "svdquant/isa.h"

#include <cstdlib>

namespace svdq {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Portable: return "portable";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

Isa detect_cpu_isa() {
#if defined(SVDQ_HAVE_X86_VARIANTS) && (defined(__x86_64__) || defined(__i386__))
  // libgcc's checks include the OS's XSAVE state for the AVX and AVX-512 registers.
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vnni");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx512 && avx2) return Isa::Avx512;
  if (avx2) return Isa::Avx2;
#endif
  return Isa::Portable;
}

namespace {

IsaChoice decide() {
  IsaChoice c;
  c.detected = detect_cpu_isa();
  c.active = c.detected;
  c.source = "cpu";
  const char* env = std::getenv("SVDQUANT_ISA");
  if (env == nullptr || *env == '\0') return c;
  const std::string want(env);
  Isa requested;
  if (want == "portable") requested = Isa::Portable;
  else if (want == "avx2") requested = Isa::Avx2;
  else if (want == "avx512") requested = Isa::Avx512;
  else {
    c.error = "invalid SVDQUANT_ISA=\"" + want + "\": expected portable, avx2 or avx512";
    return c;
  }
  if (static_cast<int>(requested) > static_cast<int>(c.detected)) {
    c.error = "SVDQUANT_ISA=" + want + " asks for more than this CPU supports (" +
              isa_name(c.detected) + "): expected a level at or below it";
    return c;
  }
  c.active = requested;
  c.source = "SVDQUANT_ISA=" + want;
  return c;
}

}  // namespace

const IsaChoice& isa_choice() {
  static const IsaChoice choice = decide();
  return choice;
}

const FormatKernels& format_kernels_for(Isa isa) {
#if defined(SVDQ_HAVE_X86_VARIANTS)
  if (isa == Isa::Avx512) return avx512::kFormatKernels;
  if (isa == Isa::Avx2) return avx2::kFormatKernels;
#else
  (void)isa;
#endif
  return portable::kFormatKernels;
}

const FormatKernels& format_kernels() { return format_kernels_for(isa_choice().active); }

}  // namespace svdq
