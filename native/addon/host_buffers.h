// Output buffers that native jobs allocate off the JavaScript thread (DESIGN.md §5 "Memory").
//
// Why: a forward of the graph produces a few large fp32 tensors per layer (48 MiB for one
// 3072→12288 layer's output at 1024 tokens, 192 MiB at 4096). As ordinary ArrayBuffers they are
// zero-filled on the main thread when created and freed by V8's garbage collector, and freeing
// tens of MiB of touched pages (which falls to the main thread when V8's helper threads are
// starved by the compute threads) paused the event loop for 10-30 ms per major GC. Fresh pages
// also cost the kernels a page fault per 4 KiB on first write: at 4096 tokens that was ~10% of a
// layer forward.
//
// Buffers from here are allocated (and first touched) by the worker that fills them. A block
// comes back when its array is disposed (Tensor.dispose, releaseF32) or collected (finalizer);
// either way it goes into an idle cache at once (a little bookkeeping under a lock on the calling
// thread), so the next allocation reuses it with its pages already faulted in; a background
// thread returns what is not kept to the system. Large blocks are their
// own mappings with transparent huge pages requested, so a block that must be fresh faults once
// per 2 MiB. Idle blocks are kept up to a budget and for a few seconds, then returned to the
// system. V8 counts these backing stores like its own towards its GC triggers (so they are not
// reported again with AdjustExternalMemory).
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace svdq_addon {

// At least `count` floats, 64-byte aligned, contents undefined; any thread. nullptr for 0.
float* host_f32_alloc(size_t count);
// Returns a block from host_f32_alloc that never became a JavaScript array (error paths).
void host_f32_release(float* p);
// Whether p is a live block of this pool of at least `bytes` bytes (it may be released early).
bool host_f32_owns(const void* p, size_t bytes);
// A Float32Array of `count` elements over the block (main thread; takes ownership).
Napi::Float32Array host_f32_wrap(Napi::Env env, float* p, size_t count);
// Takes back now the block under a JavaScript array that is being detached (releaseF32), rather
// than when its finalizer runs (Node runs it on a later turn of the event loop, after the next
// job may already have allocated). The stale finalizer is then ignored. Returns the bytes the block
// had hidden from V8 (host_f32_set_scoped), to report again before the detach. Main thread.
int64_t host_f32_release_detached(float* p);
// Marks the block under an array of `bytes` bytes as freed by a memory scope (scoped) or not, and
// returns the change to report to V8 with AdjustExternalMemory (-bytes, +bytes or 0).
// Why: V8 counts the rise of external memory since its lowest point against its old-generation
// budget, which for a JavaScript heap of ~10 MiB is ~8 MiB: the intermediates of one transformer
// block (tens of MiB, freed by the scope a moment later) started a major GC every few ops (DiT-XL/2
// w4a4: 47-108 per forward, 20-58% of its time). Storage a scope frees deterministically need not
// drive V8's collections; what the collector frees (dropped outputs) still does. Main thread.
int64_t host_f32_set_scoped(const void* p, size_t bytes, bool scoped);
// While a native job reads or writes a block (an input or output array it holds), the block is
// pinned: a release in the meantime (the array disposed mid-job) takes effect at the unpin.
// pin returns whether p is a block of this pool (only then must it be unpinned). Main thread.
bool host_f32_pin(const void* p);
void host_f32_unpin(const void* p);

// Counters of the pool since the process started (the bench reports them per forward).
struct HostPoolStats {
  uint64_t allocs = 0;        // blocks handed out
  uint64_t reused = 0;        // ... of them from the idle cache (no fresh pages)
  uint64_t fresh_large = 0;   // ... taken fresh from the system although cacheable (>= 64 KiB)
  uint64_t fresh_bytes = 0;   // bytes of blocks taken fresh from the system
  uint64_t live_bytes = 0;    // bytes of blocks handed out and not yet returned
  uint64_t cached_bytes = 0;  // bytes of idle blocks kept for reuse
  uint64_t scoped_bytes = 0;  // bytes of live arrays a memory scope will free (not counted by V8)
};
HostPoolStats host_pool_stats();

}  // namespace svdq_addon
