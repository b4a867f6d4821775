// The engine's own job threads (DESIGN.md §5 "Async"): native jobs run off the JavaScript thread on
// a few dispatcher threads of the addon rather than on libuv's thread pool, and their completion
// comes back to the JavaScript thread through a thread-safe function.
//
// Why: a libuv worker sleeps on a condition variable the moment its job ends, so every call paid a
// wake-up of a sleeping thread (in a VM an inter-processor interrupt to an idle virtual CPU: tens
// of microseconds) before any work started, as much as a whole layer takes at one token. After a
// job, one dispatcher spins for the pool's spin time (thread_pool.h: SVDQUANT_SPIN_US) and takes
// the next job at once; the others sleep. Jobs run in submission order on up to kEngineThreads
// threads at a time (a long quantizer job does not hold back a forward).
#pragma once

#include <napi.h>

#include <memory>

namespace svdq_addon {

// A job: Execute on a dispatcher thread, then Complete on the JavaScript thread that submitted it.
class EngineJob {
 public:
  virtual ~EngineJob() = default;
  virtual void Execute() = 0;
  // JavaScript thread, inside a callback scope (promise reactions run after it).
  virtual void Complete(Napi::Env env) = 0;
  // The environment was torn down first (a worker thread that exited mid-job): release native
  // resources only, never call into JavaScript. The job is deleted without Complete.
  virtual void Abandon() = 0;
};

// Per-environment state of the completions (created by engine_jobs_init).
struct EngineEnv;

// Called once per environment at module init (before any job is submitted).
std::shared_ptr<EngineEnv> engine_jobs_init(Napi::Env env);

// Takes ownership of `job` and runs it (JavaScript thread of `env`, whose state `ctx` is).
void engine_submit(Napi::Env env, const std::shared_ptr<EngineEnv>& ctx, EngineJob* job);

}  // namespace svdq_addon
