// amx.h: detection (CPUID), the tile-state permission (Linux arch_prctl) and the switch.
#include "svdquant/amx.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define SVDQ_AMX_PROBE 1
#endif

namespace svdq {
namespace {

struct Probe {
  bool supported = false;
  std::string why;  // when not supported
};

Probe probe() {
  Probe p;
#if defined(SVDQ_AMX_PROBE) && defined(SVDQ_HAVE_X86_VARIANTS)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) {
    p.why = "not supported by this CPU";
    return p;
  }
  constexpr int kArchReqXcompPerm = 0x1023;  // arch_prctl: ask for a dynamically enabled state
  constexpr int kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) {
    p.why = std::string("the OS did not grant the tile state (arch_prctl: ") + std::strerror(errno) + ")";
    return p;
  }
  p.supported = true;
#else
  p.why = "not supported by this build or OS";
#endif
  return p;
}

const Probe& probed() {
  static const Probe p = probe();
  return p;
}

struct Setting {
  bool on;
  std::string error;
};

const Setting& setting() {
  static const Setting s = [] {
    const char* e = std::getenv("SVDQUANT_AMX");
    if (e == nullptr || *e == '\0' || std::strcmp(e, "1") == 0) return Setting{true, ""};
    if (std::strcmp(e, "0") == 0) return Setting{false, ""};
    return Setting{false, std::string("invalid SVDQUANT_AMX=\"") + e + "\": expected 0 (off) or 1 (on where supported)"};
  }();
  return s;
}

std::atomic<int> g_override{-1};  // -1: the setting; 0/1: set_amx_enabled

}  // namespace

bool amx_supported() { return probed().supported; }

bool amx_enabled() {
  if (!amx_supported()) return false;
  const int o = g_override.load(std::memory_order_relaxed);
  return o < 0 ? setting().on : o == 1;
}

void set_amx_enabled(bool on) { g_override.store(on ? 1 : 0); }

std::string amx_status() {
  if (!amx_supported()) return probed().why;
  if (!amx_enabled()) return g_override.load() == 0 ? "turned off" : "disabled by SVDQUANT_AMX=0";
  return "active";
}

const std::string& amx_setting_error() { return setting().error; }

}  // namespace svdq
