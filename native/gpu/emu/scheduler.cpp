// The emulator's block scheduler: runs a kernel grid block by block, each thread of a block a fiber,
// switching only at __syncthreads and warp collectives (see emu_runtime.h).
//
// Order: SVDQ_EMU_SCHEDULE=sequential (default: ready threads in queue order, so lanes run in
// ascending order), reverse (the most recently readied thread first), random[:seed] (a uniformly
// random ready thread each time; the seed defaults to 1). Whatever the order, a correct kernel gives
// the same result.
//
// Findings that fail the launch (gpuErrorLaunchFailure, a line on stderr): threads of a block waiting
// at different __syncthreads, a thread that finishes while others wait at a barrier, lanes of a warp
// at different collectives, a warp collective that can never complete (some lanes at a barrier or
// finished).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "emu_runtime.h"
#include "fiber.h"

namespace svdq_emu {

thread_local ThreadCtx* t_thread = nullptr;
thread_local BlockCtx* t_block = nullptr;

// Defined in runtime.cpp: the launch outcome and the per-flavour limits.
void record_launch_error(gpuError_t e);
size_t max_dynamic_smem(const void* kernel);

namespace {

enum class State { Ready, Barrier, Warp, Done };
enum class Order { Sequential, Reverse, Random };

struct AsyncCopy {
  void* dst;
  const void* src;
  int bytes, src_bytes, group;
};

struct Thread {
  Fiber fiber;
  ThreadCtx ctx{};
  std::vector<AsyncCopy> copies;  // cp.async copies not landed yet
  int committed = 0;              // cp.async groups committed so far
  State state = State::Ready;
  const char* file = nullptr;  // where it waits
  int line = 0;
};

struct Warp {
  int lanes = 0;    // threads of the block in this warp
  int arrived = 0;
  WarpOp op = nullptr;
  const char* what = nullptr;
  void* slots[64] = {};
};

struct Engine {
  Fiber main;
  std::vector<std::unique_ptr<Thread>> threads;
  std::vector<Warp> warps;
  std::vector<int> ready;
  size_t ready_head = 0;  // sequential order: ready[ready_head..] is the queue
  Thread* current = nullptr;
  int live = 0, at_barrier = 0;
  const char* barrier_file = nullptr;
  int barrier_line = 0;
  Order order = Order::Sequential;
  uint64_t rng = 1;
  int fault = kFaultNone;
  size_t stack_bytes = 256 * 1024;
  KernelBody body = nullptr;
  void* body_ctx = nullptr;
  std::string error;
};

std::mutex g_launch_mutex;  // one launch at a time process-wide: __shared__ statics are shared
Engine* g_engine = nullptr;

void set_schedule(Engine& e, const char* s) {
  e.order = Order::Sequential;
  if (s != nullptr && strncmp(s, "random", 6) == 0) {
    e.order = Order::Random;
    e.rng = s[6] == ':' ? strtoull(s + 7, nullptr, 10) : 1;
    if (e.rng == 0) e.rng = 0x9E3779B97F4A7C15ull;
  } else if (s != nullptr && strcmp(s, "reverse") == 0) {
    e.order = Order::Reverse;
  }
}

void read_env(Engine& e) {
  set_schedule(e, getenv("SVDQ_EMU_SCHEDULE"));
  const char* f = getenv("SVDQ_EMU_FAULT");
  if (f != nullptr && strcmp(f, "layout") == 0) e.fault = kFaultLayout;
  if (f != nullptr && strcmp(f, "no-barrier") == 0) e.fault = kFaultNoBarrier;
  const char* k = getenv("SVDQ_EMU_STACK_KB");
  if (k != nullptr && atoi(k) >= 64) e.stack_bytes = static_cast<size_t>(atoi(k)) * 1024;
}

Engine& engine() {
  if (g_engine == nullptr) {
    g_engine = new Engine();
    read_env(*g_engine);
  }
  return *g_engine;
}

void make_ready(Engine& e, int tid) {
  e.threads[static_cast<size_t>(tid)]->state = State::Ready;
  e.ready.push_back(tid);
}

int next_ready(Engine& e) {
  if (e.order == Order::Sequential) {
    if (e.ready_head >= e.ready.size()) return -1;
    const int t = e.ready[e.ready_head++];
    if (e.ready_head > 4096 && e.ready_head * 2 > e.ready.size()) {  // compact the queue now and then
      e.ready.erase(e.ready.begin(), e.ready.begin() + static_cast<long>(e.ready_head));
      e.ready_head = 0;
    }
    return t;
  }
  if (e.ready.empty()) return -1;
  size_t i = e.ready.size() - 1;
  if (e.order == Order::Random) {
    e.rng ^= e.rng << 13;
    e.rng ^= e.rng >> 7;
    e.rng ^= e.rng << 17;
    i = static_cast<size_t>(e.rng % e.ready.size());
  }
  const int t = e.ready[i];
  e.ready[i] = e.ready.back();
  e.ready.pop_back();
  return t;
}

// Stops the block with a finding: the current fiber goes back to the scheduler for good.
[[noreturn]] void fail(Engine& e, const std::string& why) {
  if (e.error.empty()) e.error = why;
  Thread* t = e.current;
  Fiber::exit_to(t->fiber, e.main);
}

void block_current(Engine& e, State s) {
  Thread* t = e.current;
  t->state = s;
  Fiber::switch_to(t->fiber, e.main);
}

void land_copies(Thread* t, int below_group) {
  size_t keep = 0;
  for (size_t i = 0; i < t->copies.size(); ++i) {
    const AsyncCopy& c = t->copies[i];
    if (c.group < below_group) {
      if (c.src_bytes > 0) memcpy(c.dst, c.src, static_cast<size_t>(c.src_bytes));
      if (c.bytes > c.src_bytes) memset(static_cast<char*>(c.dst) + c.src_bytes, 0, static_cast<size_t>(c.bytes - c.src_bytes));
    } else {
      t->copies[keep++] = c;
    }
  }
  t->copies.resize(keep);
}

void thread_entry(void* arg) {
  Engine& e = engine();
  Fiber::started(e.main);
  Thread* t = static_cast<Thread*>(arg);
  e.body(e.body_ctx);
  land_copies(t, 1 << 30);  // copies still in flight at exit land anyway
  t->state = State::Done;
  --e.live;
  if (e.at_barrier > 0) {
    fail(e, "thread " + std::to_string(t->ctx.tid) + " finished while others wait at __syncthreads (" +
                std::string(e.barrier_file) + ":" + std::to_string(e.barrier_line) + ")");
  }
  Warp& w = e.warps[static_cast<size_t>(t->ctx.warp)];
  --w.lanes;
  if (w.arrived > 0)
    fail(e, "lane " + std::to_string(t->ctx.lane) + " of warp " + std::to_string(t->ctx.warp) +
                " finished while the others wait at " + w.what);
  Fiber::exit_to(t->fiber, e.main);
}

std::string describe_stuck(Engine& e) {
  std::string s;
  int barrier = 0, warp = 0;
  for (auto& t : e.threads) {
    if (t->state == State::Barrier) ++barrier;
    if (t->state == State::Warp) ++warp;
  }
  if (barrier > 0) s += std::to_string(barrier) + " threads wait at __syncthreads (" + e.barrier_file + ":" + std::to_string(e.barrier_line) + ")";
  for (size_t w = 0; w < e.warps.size(); ++w)
    if (e.warps[w].arrived > 0) {
      if (!s.empty()) s += ", ";
      s += std::to_string(e.warps[w].arrived) + " of " + std::to_string(e.warps[w].lanes) + " lanes of warp " +
           std::to_string(w) + " wait at " + e.warps[w].what;
    }
  (void)warp;
  return s.empty() ? "no thread can continue" : s;
}

// Runs one block; returns false with e.error set on a finding.
bool run_block(Engine& e, int nthreads) {
  e.ready.clear();
  e.ready_head = 0;
  e.live = nthreads;
  e.at_barrier = 0;
  for (int i = 0; i < nthreads; ++i) {
    Thread& t = *e.threads[static_cast<size_t>(i)];
    t.fiber.reset(&thread_entry, &t, e.stack_bytes);
    t.state = State::Ready;
    t.copies.clear();
    t.committed = 0;
    e.ready.push_back(i);
  }
  const int nwarps = (nthreads + SVDQ_EMU_WARP - 1) / SVDQ_EMU_WARP;
  e.warps.assign(static_cast<size_t>(nwarps), Warp());
  for (int w = 0; w < nwarps; ++w)
    e.warps[static_cast<size_t>(w)].lanes = nthreads - w * SVDQ_EMU_WARP < SVDQ_EMU_WARP ? nthreads - w * SVDQ_EMU_WARP : SVDQ_EMU_WARP;
  for (;;) {
    const int tid = next_ready(e);
    if (tid < 0) break;
    e.current = e.threads[static_cast<size_t>(tid)].get();
    t_thread = &e.current->ctx;
    Fiber::switch_to(e.main, e.current->fiber);
    if (!e.error.empty()) return false;
  }
  if (e.live > 0) {
    e.error = "deadlock: " + describe_stuck(e);
    return false;
  }
  return true;
}

}  // namespace

int fault() { return engine().fault; }

void set_schedule_for_tests(const char* spec) {
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  set_schedule(engine(), spec);
}

// CUDA __shfl_xor_sync / HIP __shfl_xor: the source lane is lane ^ mask; a lane whose source lies
// in a later group of `width` lanes keeps its own value.
void shuffle_xor_op(void* const* slots, int lanes) {
  for (int l = 0; l < lanes; ++l) {
    ShuffleSlot* s = static_cast<ShuffleSlot*>(slots[l]);
    const int src = l ^ s->mask;
    const int group_end = (l + s->width) & ~(s->width - 1);
    s->out = (src >= group_end || src >= lanes) ? s->in : static_cast<ShuffleSlot*>(slots[src])->in;
  }
}

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  Thread* t = engine().current;
  t->copies.push_back(AsyncCopy{dst, src, bytes, src_bytes, t->committed});
}

void cp_async_commit() { ++engine().current->committed; }

void cp_async_wait(int pending_groups) {
  Thread* t = engine().current;
  land_copies(t, t->committed - pending_groups);
}

void sync_block(const char* file, int line) {
  Engine& e = engine();
  Thread* t = e.current;
  if (e.fault == kFaultNoBarrier) {  // the guard's broken barrier: let the others run, wait for none
    e.ready.push_back(t->ctx.tid);
    block_current(e, State::Ready);
    return;
  }
  if (e.at_barrier == 0) {
    e.barrier_file = file;
    e.barrier_line = line;
  } else if (e.barrier_line != line || strcmp(e.barrier_file, file) != 0) {
    fail(e, "threads wait at different __syncthreads: " + std::string(e.barrier_file) + ":" +
                std::to_string(e.barrier_line) + " and " + file + ":" + std::to_string(line) + " (thread " +
                std::to_string(t->ctx.tid) + ")");
  }
  t->file = file;
  t->line = line;
  if (++e.at_barrier == e.live) {
    e.at_barrier = 0;
    for (auto& th : e.threads)
      if (th->state == State::Barrier) make_ready(e, th->ctx.tid);
    make_ready(e, t->ctx.tid);  // the last to arrive queues up behind the others
    block_current(e, State::Ready);
    return;
  }
  block_current(e, State::Barrier);
}

void warp_collective(WarpOp op, void* slot, const char* what) {
  Engine& e = engine();
  Thread* t = e.current;
  Warp& w = e.warps[static_cast<size_t>(t->ctx.warp)];
  if (w.arrived == 0) {
    w.op = op;
    w.what = what;
  } else if (w.op != op) {
    fail(e, std::string("lanes of warp ") + std::to_string(t->ctx.warp) + " at different collectives: " + w.what +
                " and " + what);
  }
  w.slots[t->ctx.lane] = slot;
  if (++w.arrived == w.lanes) {
    op(w.slots, w.lanes);
    w.arrived = 0;
    const int first = t->ctx.warp * SVDQ_EMU_WARP;
    for (int l = 0; l < w.lanes; ++l)
      if (first + l != t->ctx.tid) make_ready(e, first + l);
    make_ready(e, t->ctx.tid);
    block_current(e, State::Ready);
    return;
  }
  block_current(e, State::Warp);
}

void run_kernel(const LaunchConfig& cfg, KernelBody body, void* ctx) {
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  Engine& e = engine();
  const uint64_t nthreads = static_cast<uint64_t>(cfg.block.x) * cfg.block.y * cfg.block.z;
  const uint64_t nblocks = static_cast<uint64_t>(cfg.grid.x) * cfg.grid.y * cfg.grid.z;
  if (nthreads == 0 || nthreads > 1024 || cfg.block.z > 64 || nblocks == 0 || cfg.grid.y > 65535 ||
      cfg.grid.z > 65535 || cfg.grid.x > 0x7FFFFFFFu) {
    fprintf(stderr, "svdquant GPU emulator: launch of %s: invalid configuration (grid %u×%u×%u, block %u×%u×%u)\n",
            cfg.name, cfg.grid.x, cfg.grid.y, cfg.grid.z, cfg.block.x, cfg.block.y, cfg.block.z);
    record_launch_error(gpuErrorInvalidValue);
    return;
  }
  if (cfg.dynamic_smem > max_dynamic_smem(cfg.kernel)) {
    fprintf(stderr, "svdquant GPU emulator: launch of %s: %zu bytes of dynamic shared memory exceed the limit %zu\n",
            cfg.name, cfg.dynamic_smem, max_dynamic_smem(cfg.kernel));
    record_launch_error(gpuErrorInvalidValue);
    return;
  }
  while (e.threads.size() < nthreads) e.threads.emplace_back(new Thread());
  for (uint64_t i = 0; i < nthreads; ++i) {
    ThreadCtx& c = e.threads[i]->ctx;
    c.tid = static_cast<int>(i);
    c.thread_idx = uint3{static_cast<unsigned>(i % cfg.block.x), static_cast<unsigned>((i / cfg.block.x) % cfg.block.y),
                         static_cast<unsigned>(i / (static_cast<uint64_t>(cfg.block.x) * cfg.block.y))};
    c.lane = static_cast<int>(i % SVDQ_EMU_WARP);
    c.warp = static_cast<int>(i / SVDQ_EMU_WARP);
  }
  std::vector<unsigned char> smem(cfg.dynamic_smem + 16);
  BlockCtx block{};
  block.block_dim = cfg.block;
  block.grid_dim = cfg.grid;
  block.dynamic_smem = smem.data();
  BlockCtx* saved_block = t_block;
  ThreadCtx* saved_thread = t_thread;
  t_block = &block;
  e.body = body;
  e.body_ctx = ctx;
  e.error.clear();
  for (uint64_t b = 0; b < nblocks; ++b) {
    block.block_idx = uint3{static_cast<unsigned>(b % cfg.grid.x), static_cast<unsigned>((b / cfg.grid.x) % cfg.grid.y),
                            static_cast<unsigned>(b / (static_cast<uint64_t>(cfg.grid.x) * cfg.grid.y))};
    memset(smem.data(), 0xCD, smem.size());  // real shared memory starts with garbage
    if (!run_block(e, static_cast<int>(nthreads))) {
      fprintf(stderr, "svdquant GPU emulator: %s, block (%u,%u,%u): %s\n", cfg.name, block.block_idx.x,
              block.block_idx.y, block.block_idx.z, e.error.c_str());
      record_launch_error(gpuErrorLaunchFailure);
      break;
    }
  }
  t_block = saved_block;
  t_thread = saved_thread;
}

}  // namespace svdq_emu
