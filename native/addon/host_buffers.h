// Output buffers that native jobs allocate off the JavaScript thread (DESIGN.md §5 "Memory").
//
// Why: a forward of the graph produces a few large fp32 tensors per layer (12 MiB for one MLP
// hidden state at 1024 tokens). As ordinary ArrayBuffers they are zero-filled on the main thread
// when created and freed by V8's garbage collector, and freeing tens of MiB of touched pages (which
// falls to the main thread when V8's helper threads are starved by the compute threads) paused
// the event loop for 10-30 ms per major GC. Buffers from here are allocated (and first touched) by
// the worker that fills them; a collected buffer's finalizer only hands the block to a background
// thread, which keeps a few recently freed blocks for reuse (no fresh page faults) and frees the
// rest. V8 counts these backing stores like its own towards its GC triggers (so they are not
// reported again with AdjustExternalMemory).
#pragma once

#include <napi.h>

#include <cstddef>

namespace svdq_addon {

// At least `count` floats, 64-byte aligned, contents undefined; any thread. nullptr for 0.
float* host_f32_alloc(size_t count);
// Returns a block from host_f32_alloc that never became a JavaScript array (error paths).
void host_f32_release(float* p);
// Whether p is a live block of this pool of at least `bytes` bytes (it may be released early).
bool host_f32_owns(const void* p, size_t bytes);
// A Float32Array of `count` elements over the block (main thread; takes ownership).
Napi::Float32Array host_f32_wrap(Napi::Env env, float* p, size_t count);

}  // namespace svdq_addon
