// Fiber context switches (see fiber.h).
#include "fiber.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <new>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define SVDQ_EMU_ASAN 1
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace svdq_emu {

#if defined(__x86_64__)
extern "C" {
// svdq_emu_switch(&save_sp, new_sp): pushes the callee-saved registers and the FP control state on
// the current stack, stores the stack pointer, loads new_sp and pops the same frame from it.
__attribute__((visibility("hidden"))) void svdq_emu_switch(void** save_sp, void* new_sp);
// First frame of a fresh fiber: calls r13(r12) with a 16-byte aligned stack.
__attribute__((visibility("hidden"))) void svdq_emu_trampoline();
}
__asm__(
    ".text\n"
    ".globl svdq_emu_switch\n"
    ".hidden svdq_emu_switch\n"
    ".type svdq_emu_switch,@function\n"
    "svdq_emu_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  subq $8, %rsp\n"
    "  stmxcsr (%rsp)\n"
    "  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n"
    "  fldcw 4(%rsp)\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size svdq_emu_switch, .-svdq_emu_switch\n"
    ".globl svdq_emu_trampoline\n"
    ".hidden svdq_emu_trampoline\n"
    ".type svdq_emu_trampoline,@function\n"
    "svdq_emu_trampoline:\n"
    "  movq %r12, %rdi\n"
    "  callq *%r13\n"
    "  ud2\n"
    ".size svdq_emu_trampoline, .-svdq_emu_trampoline\n");
#endif

Fiber::~Fiber() {
  if (stack_ != nullptr) munmap(stack_, stack_bytes_);
#if !defined(__x86_64__)
  delete static_cast<ucontext_t*>(sp_);
#endif
}

void Fiber::reset(Entry entry, void* arg, size_t stack_bytes) {
  if (stack_ == nullptr || stack_bytes_ != stack_bytes) {
    if (stack_ != nullptr) munmap(stack_, stack_bytes_);
    // Pages are committed on first touch, so generous stacks cost nothing until used.
    void* p = mmap(nullptr, stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    stack_ = static_cast<char*>(p);
    stack_bytes_ = stack_bytes;
  }
  asan_bottom_ = stack_;
  asan_size_ = stack_bytes_;
#if defined(__x86_64__)
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack_) + stack_bytes_) & ~uintptr_t(15);
  uint64_t* f = reinterpret_cast<uint64_t*>(top - 64);  // the frame svdq_emu_switch pops, 16-aligned
  const uint32_t csr = 0x1F80u;                          // MXCSR: round to nearest, exceptions masked
  const uint16_t fcw = 0x037Fu;                          // x87: extended precision, masked
  f[0] = static_cast<uint64_t>(csr) | (static_cast<uint64_t>(fcw) << 32);
  f[1] = 0;                                              // r15
  f[2] = 0;                                              // r14
  f[3] = reinterpret_cast<uint64_t>(entry);              // r13
  f[4] = reinterpret_cast<uint64_t>(arg);                // r12
  f[5] = 0;                                              // rbx
  f[6] = 0;                                              // rbp
  f[7] = reinterpret_cast<uint64_t>(&svdq_emu_trampoline);
  sp_ = f;
#else
  ucontext_t* uc = static_cast<ucontext_t*>(sp_);
  if (uc == nullptr) sp_ = uc = new ucontext_t();
  getcontext(uc);
  uc->uc_stack.ss_sp = stack_;
  uc->uc_stack.ss_size = stack_bytes_;
  uc->uc_link = nullptr;
  makecontext(uc, reinterpret_cast<void (*)()>(entry), 1, arg);  // one pointer argument (LP64 ABIs)
#endif
}

static void raw_switch(void** from_sp, void* to_sp) {
#if defined(__x86_64__)
  svdq_emu_switch(from_sp, to_sp);
#else
  ucontext_t*& f = *reinterpret_cast<ucontext_t**>(from_sp);
  if (f == nullptr) f = new ucontext_t();
  swapcontext(f, static_cast<ucontext_t*>(to_sp));
#endif
}

void Fiber::switch_to(Fiber& from, Fiber& to) {
#if defined(SVDQ_EMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, to.asan_bottom_, to.asan_size_);
  raw_switch(&from.sp_, to.sp_);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  raw_switch(&from.sp_, to.sp_);
#endif
}

void Fiber::started(Fiber& from) {
#if defined(SVDQ_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &from.asan_bottom_, &from.asan_size_);
#else
  (void)from;
#endif
}

void Fiber::exit_to(Fiber& from, Fiber& to) {
#if defined(SVDQ_EMU_ASAN)
  __sanitizer_start_switch_fiber(nullptr, to.asan_bottom_, to.asan_size_);
#endif
  raw_switch(&from.sp_, to.sp_);
  abort();  // a finished fiber is never resumed, only reset
}

}  // namespace svdq_emu
