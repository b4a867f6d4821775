// host_buffers.h: the block cache, large blocks as huge-page mappings, and the background thread
// that frees what is not kept.
#include "host_buffers.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__linux__) || defined(__APPLE__)
#include <sys/mman.h>
#define SVDQ_HOST_MMAP 1
#endif

namespace svdq_addon {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kAlign = 64;
// Blocks below this size go straight back to malloc (cheap, and not worth caching).
constexpr size_t kSmallBytes = size_t(64) << 10;
// Blocks from this size up are their own mappings, 2 MiB aligned, with huge pages requested: a
// fresh block then faults once per 2 MiB instead of once per 4 KiB.
constexpr size_t kHugeBytes = size_t(2) << 20;
// Idle blocks kept for reuse, at most this many bytes together: enough for the outputs of a few
// large layers at 4096 tokens (192 MiB each for 3072→12288), which callers that let outputs go
// (no dispose) return only when V8 collects them, several at a time.
constexpr size_t kCacheBytes = size_t(1) << 30;
// An idle block unused for this long goes back to the system (a server between bursts, a script
// that is done with inference).
constexpr auto kIdleLimit = std::chrono::seconds(3);
// A cached block serves a request of at least this fraction of its size.
constexpr double kMinFill = 0.75;

struct Block {
  float* p;
  size_t bytes;
  bool mapped;
  Clock::time_point idle_since;
};

size_t round_up(size_t bytes, size_t to) { return (bytes + to - 1) / to * to; }

float* system_alloc(size_t bytes, bool* mapped) {
#if defined(SVDQ_HOST_MMAP)
  if (bytes >= kHugeBytes) {
    const size_t span = bytes + kHugeBytes;
    void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = (start + kHugeBytes - 1) & ~(uintptr_t(kHugeBytes) - 1);
    const size_t head = aligned - start, tail = span - head - bytes;
    if (head > 0) ::munmap(raw, head);
    if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + bytes), tail);
#if defined(MADV_HUGEPAGE)
    ::madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
    *mapped = true;
    return reinterpret_cast<float*>(aligned);
  }
#endif
  *mapped = false;
  return static_cast<float*>(::operator new(bytes, std::align_val_t(kAlign)));
}

void system_free(float* p, size_t bytes, bool mapped) {
#if defined(SVDQ_HOST_MMAP)
  if (mapped) {
    ::munmap(p, bytes);
    return;
  }
#endif
  (void)bytes;
  (void)mapped;
  ::operator delete(p, std::align_val_t(kAlign));
}

class HostPool {
 public:
  HostPool() : thread_([this] { run(); }) { thread_.detach(); }

  float* alloc(size_t count) {
    if (count == 0) return nullptr;
    if (count > SIZE_MAX / sizeof(float) - kHugeBytes) throw std::bad_alloc();
    size_t bytes = round_up(count * sizeof(float), kAlign);
    if (bytes >= kHugeBytes) bytes = round_up(bytes, kHugeBytes);
    if (bytes >= kSmallBytes) {
      std::lock_guard<std::mutex> lock(mutex_);
      size_t best = cache_.size();
      for (size_t i = 0; i < cache_.size(); ++i) {
        const size_t b = cache_[i].bytes;
        if (b >= bytes && static_cast<double>(bytes) >= kMinFill * static_cast<double>(b) &&
            (best == cache_.size() || b < cache_[best].bytes))
          best = i;
      }
      if (best < cache_.size()) {
        const Block blk = cache_[best];
        cache_.erase(cache_.begin() + static_cast<std::ptrdiff_t>(best));
        stats_.cached_bytes -= blk.bytes;
        live_[blk.p] = Live{blk.bytes, blk.mapped};
        ++stats_.allocs;
        ++stats_.reused;
        stats_.live_bytes += blk.bytes;
        return blk.p;
      }
    }
    bool mapped = false;
    float* p = system_alloc(bytes, &mapped);
    std::lock_guard<std::mutex> lock(mutex_);
    live_[p] = Live{bytes, mapped};
    ++stats_.allocs;
    if (bytes >= kSmallBytes) ++stats_.fresh_large;
    stats_.fresh_bytes += bytes;
    stats_.live_bytes += bytes;
    return p;
  }

  bool owns(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = live_.find(as_block(p));
    return it != live_.end() && !it->second.released && bytes <= it->second.bytes;
  }

  // A new ticket for the array about to wrap p: its finalizer releases p only while p still holds
  // this ticket (not after an early release, once p may serve another array).
  uint64_t ticket(float* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = live_.find(p);
    if (it == live_.end()) return 0;
    it->second.ticket = ++tickets_;
    return it->second.ticket;
  }

  // ticket 0: unconditionally (a block no array wraps, or an early release). Returns the bytes the
  // block had hidden from V8 (set_scoped), which the caller reports again.
  int64_t release(float* p, uint64_t ticket) {
    if (p == nullptr) return 0;
    bool wake = false;
    int64_t hidden = 0;
    Block small{nullptr, 0, false, {}};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = live_.find(p);
      if (it == live_.end() || it->second.released || (ticket != 0 && it->second.ticket != ticket)) return 0;
      it->second.released = true;
      hidden = it->second.hidden;
      it->second.hidden = 0;
      stats_.scoped_bytes -= static_cast<uint64_t>(hidden);
      if (it->second.pins == 0) wake = retire(it, &small);
    }
    if (small.p != nullptr) system_free(small.p, small.bytes, small.mapped);
    if (wake) wake_.notify_one();
    return hidden;
  }

  // Marks the live block p (whose array V8 counts as `bytes`) scoped or not; returns the change to
  // report to V8 (-bytes when it becomes scoped, +bytes when it stops being so, else 0).
  int64_t set_scoped(const void* p, size_t bytes, bool scoped) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = live_.find(as_block(p));
    if (it == live_.end() || it->second.released || bytes > it->second.bytes) return 0;
    const int64_t before = it->second.hidden;
    it->second.hidden = scoped ? static_cast<int64_t>(bytes) : 0;
    stats_.scoped_bytes = stats_.scoped_bytes - static_cast<uint64_t>(before) + static_cast<uint64_t>(it->second.hidden);
    return before - it->second.hidden;
  }

  bool pin(const void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = live_.find(as_block(p));
    if (it == live_.end()) return false;
    ++it->second.pins;
    return true;
  }

  void unpin(const void* p) {
    bool wake = false;
    Block small{nullptr, 0, false, {}};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = live_.find(as_block(p));
      if (it == live_.end() || it->second.pins == 0) return;
      if (--it->second.pins == 0 && it->second.released) wake = retire(it, &small);
    }
    if (small.p != nullptr) system_free(small.p, small.bytes, small.mapped);
    if (wake) wake_.notify_one();
  }

  HostPoolStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  struct Live {
    size_t bytes;
    bool mapped;
    uint64_t ticket = 0;
    int pins = 0;           // native jobs using the block now
    bool released = false;  // released while pinned: retired at the last unpin
    int64_t hidden = 0;     // bytes of its array not counted by V8 (a memory scope frees it)
  };

  static float* as_block(const void* p) { return static_cast<float*>(const_cast<void*>(p)); }

  // Under mutex_: the live block goes into the idle cache (so the next allocation, maybe a moment
  // later on a worker, reuses it), into *small for the caller to free at once (below the cache's
  // size: as cheap as any free), or to the background thread (large, over budget: unmapping takes
  // a while). True: wake the thread.
  bool retire(std::unordered_map<float*, Live>::iterator it, Block* small) {
    const Block b{it->first, it->second.bytes, it->second.mapped, Clock::now()};
    live_.erase(it);
    stats_.live_bytes -= b.bytes;
    if (b.bytes < kSmallBytes) {
      *small = b;
      return false;
    }
    if (b.bytes <= kCacheBytes) {
      cache_.push_back(b);
      stats_.cached_bytes += b.bytes;
      return stats_.cached_bytes > kCacheBytes || cache_.size() == 1;  // over budget, or a new idle timer
    }
    drop_.push_back(b);
    return true;
  }

  void run() {
    std::vector<Block> drop;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      // Over budget, or idle too long: free the oldest cached blocks (cache_ is oldest first).
      const Clock::time_point now = Clock::now();
      while (!cache_.empty() && (stats_.cached_bytes > kCacheBytes || now - cache_.front().idle_since >= kIdleLimit)) {
        stats_.cached_bytes -= cache_.front().bytes;
        drop_.push_back(cache_.front());
        cache_.erase(cache_.begin());
      }
      if (!drop_.empty()) {
        drop.swap(drop_);
        lock.unlock();  // unmapping large blocks takes a while; allocations must not wait for it
        for (const Block& b : drop) system_free(b.p, b.bytes, b.mapped);
        drop.clear();
        lock.lock();
        continue;
      }
      // Sleep until there is something to free or, with idle blocks cached, until the oldest expires.
      if (cache_.empty()) wake_.wait(lock);
      else wake_.wait_until(lock, cache_.front().idle_since + kIdleLimit);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Block> cache_;                   // idle blocks, oldest first
  std::vector<Block> drop_;                    // blocks for the background thread to free
  std::unordered_map<float*, Live> live_;      // blocks handed out
  uint64_t tickets_ = 0;
  HostPoolStats stats_;
  std::thread thread_;
};

HostPool& pool() {
  static HostPool* p = new HostPool();  // never destroyed: its detached thread outlives exit
  return *p;
}

}  // namespace

float* host_f32_alloc(size_t count) { return pool().alloc(count); }

void host_f32_release(float* p) { pool().release(p, 0); }

int64_t host_f32_release_detached(float* p) { return pool().release(p, 0); }

int64_t host_f32_set_scoped(const void* p, size_t bytes, bool scoped) {
  return p == nullptr ? 0 : pool().set_scoped(p, bytes, scoped);
}

bool host_f32_owns(const void* p, size_t bytes) { return p != nullptr && pool().owns(p, bytes); }

bool host_f32_pin(const void* p) { return p != nullptr && pool().pin(p); }

void host_f32_unpin(const void* p) {
  if (p != nullptr) pool().unpin(p);
}

HostPoolStats host_pool_stats() { return pool().stats(); }

Napi::Float32Array host_f32_wrap(Napi::Env env, float* p, size_t count) {
  if (p == nullptr || count == 0) {
    host_f32_release(p);
    return Napi::Float32Array::New(env, 0);
  }
  // No AdjustExternalMemory: V8 already counts every ArrayBuffer's backing store, external ones
  // included, towards its GC triggers; reporting the bytes again doubled the major GCs (measured:
  // 112 instead of 64 in 20 tinyDit forwards) without lowering the peak memory.
  const uint64_t ticket = pool().ticket(p);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, p, count * sizeof(float), [](Napi::Env e, void* data, uint64_t* hint) {
    // Collected while scoped (its scope was abandoned): V8 has just stopped counting bytes that it
    // was told to ignore; balance its counter.
    const int64_t hidden = pool().release(static_cast<float*>(data), *hint);
    if (hidden != 0) Napi::MemoryManagement::AdjustExternalMemory(e, hidden);
    delete hint;
  }, new uint64_t(ticket));
  return Napi::Float32Array::New(env, count, ab, 0);
}

}  // namespace svdq_addon
