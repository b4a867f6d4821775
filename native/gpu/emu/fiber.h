// Cooperative fibers for the GPU emulator: one per emulated GPU thread, all on the calling OS thread.
// x86-64 uses a small context switch of our own (callee-saved registers, MXCSR and the x87 control
// word: about ten nanoseconds); other architectures use ucontext (correct, slower: it makes a system
// call per switch). Under AddressSanitizer the switches are announced to it.
#pragma once

#include <stddef.h>

namespace svdq_emu {

class Fiber {
 public:
  using Entry = void (*)(void* arg);
  Fiber() = default;
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Prepares the fiber to run entry(arg) on its own stack (allocated once, reused by later resets).
  // `entry` never returns: it ends with exit_to. Its first statement must be started(from).
  void reset(Entry entry, void* arg, size_t stack_bytes);

  // Saves the running context into `from` and resumes `to`.
  static void switch_to(Fiber& from, Fiber& to);
  // The first call in a fresh fiber's entry: `from` is the fiber that switched to it.
  static void started(Fiber& from);
  // Leaves the running fiber `from` for good (it may be reset later) and resumes `to`.
  [[noreturn]] static void exit_to(Fiber& from, Fiber& to);

 private:
  void* sp_ = nullptr;  // saved stack pointer (own switch) or ucontext_t* (fallback)
  char* stack_ = nullptr;
  size_t stack_bytes_ = 0;
  const void* asan_bottom_ = nullptr;
  size_t asan_size_ = 0;
};

}  // namespace svdq_emu
