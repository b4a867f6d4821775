// engine_jobs.h: the dispatcher threads and the completions per environment.
#include "engine_jobs.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "svdquant/compute_slice.h"
#include "svdquant/thread_pool.h"

namespace svdq_addon {

void engine_call_js(Napi::Env env, Napi::Function, EngineEnv* ctx, EngineJob* job);

struct EngineEnv {
  using Tsfn = Napi::TypedThreadSafeFunction<EngineEnv, EngineJob, engine_call_js>;
  Tsfn tsfn;
  std::mutex mutex;        // guards alive and executing against the environment's cleanup
  std::condition_variable idle;
  bool alive = true;
  int executing = 0;       // jobs of this environment running now
  int pending = 0;         // jobs submitted and not completed (JavaScript thread only)
};

namespace {

// Dispatcher threads: at most this many jobs run at once (libuv's default pool size).
constexpr int kEngineThreads = 4;

class Dispatcher {
 public:
  Dispatcher() {
    for (int i = 0; i < kEngineThreads; ++i) std::thread([this] { run(); }).detach();
  }

  void submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(job));
      queued_.fetch_add(1);
    }
    // A spinning dispatcher takes it; otherwise wake a sleeping one (see run() for why no job is
    // ever left waiting).
    if (!spinning_.load()) wake_.notify_one();
  }

 private:
  bool take(std::function<void()>& job) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (queue_.empty()) return false;
    job = std::move(queue_.front());
    queue_.pop_front();
    queued_.fetch_sub(1);
    return true;
  }

  void run() {
    svdq::mark_compute_thread();
    std::function<void()> job;
    for (;;) {
      if (take(job)) {
        job();
        job = nullptr;
        continue;
      }
      // One idle dispatcher spins; it clears the flag before it looks at the queue a last time, so
      // a job submitted while it spun is either seen here or its submitter saw the flag clear and
      // woke a sleeper.
      bool expected = false;
      const int64_t us = svdq::spin_us();
      if (us > 0 && spinning_.compare_exchange_strong(expected, true)) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
        while (queued_.load(std::memory_order_relaxed) == 0) {
          svdq::spin_pause();
          if (std::chrono::steady_clock::now() >= deadline) break;
        }
        spinning_.store(false);
        if (take(job)) {
          job();
          job = nullptr;
          continue;
        }
      }
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return !queue_.empty(); });
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  std::atomic<int64_t> queued_{0};
  std::atomic<bool> spinning_{false};
};

Dispatcher& dispatcher() {
  static Dispatcher* d = new Dispatcher();  // never destroyed: its detached threads outlive exit
  return *d;
}

}  // namespace

void engine_call_js(Napi::Env env, Napi::Function, EngineEnv* ctx, EngineJob* job) {
  if (env == nullptr) {  // the thread-safe function is being finalized with this call queued
    job->Abandon();
    delete job;
    return;
  }
  // A worker thread being terminated still drains its queue, but can run no JavaScript: settling
  // the promise then fails, and there is nobody left to tell.
  try {
    job->Complete(env);
  } catch (const Napi::Error&) {
  }
  delete job;
  if (--ctx->pending == 0) {
    try {
      ctx->tsfn.Unref(env);
    } catch (const Napi::Error&) {
    }
  }
}

std::shared_ptr<EngineEnv> engine_jobs_init(Napi::Env env) {
  auto ctx = std::make_shared<EngineEnv>();
  ctx->tsfn = EngineEnv::Tsfn::New(env, "svdquant", 0, 1, ctx.get());
  ctx->tsfn.Unref(env);  // only pending jobs keep the event loop alive
  // Registered after the thread-safe function's own cleanup hook, so it runs first (hooks run in
  // reverse order). The environment is going (a worker thread terminated): jobs not started are
  // abandoned, and teardown waits for the running ones, which read and write the environment's
  // ArrayBuffers (as Node waits for libuv work requests).
  napi_add_env_cleanup_hook(env, [](void* arg) {
    auto* c = static_cast<EngineEnv*>(arg);
    std::unique_lock<std::mutex> lock(c->mutex);
    c->alive = false;
    c->idle.wait(lock, [&] { return c->executing == 0; });
  }, ctx.get());
  return ctx;
}

void engine_submit(Napi::Env env, const std::shared_ptr<EngineEnv>& ctx, EngineJob* job) {
  if (ctx->pending++ == 0) ctx->tsfn.Ref(env);
  dispatcher().submit([ctx, job] {
    bool run;
    {
      std::lock_guard<std::mutex> lock(ctx->mutex);
      run = ctx->alive;
      if (run) ++ctx->executing;
    }
    if (run) job->Execute();
    std::lock_guard<std::mutex> lock(ctx->mutex);
    if (run && --ctx->executing == 0) ctx->idle.notify_all();
    if (!ctx->alive || ctx->tsfn.NonBlockingCall(job) != napi_ok) {
      job->Abandon();
      delete job;
    }
  });
}

}  // namespace svdq_addon
