// Runs a native job off the JavaScript thread and settles a Promise. The typed arrays the job
// touches are held by references until it ends, so V8 cannot collect them mid-flight.
#pragma once

#include <napi.h>

#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace svdq_addon {

class AsyncTask : public Napi::AsyncWorker {
 public:
  AsyncTask(Napi::Env env, std::function<void()> job, std::vector<Napi::Value> keep_alive)
      : Napi::AsyncWorker(env, "svdquant"), job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {
    for (auto& v : keep_alive) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      job_();
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown native error");
    }
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

  void OnError(const Napi::Error& e) override {
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    err.Set("code", Napi::String::New(Env(), "ERR_SVDQ_NATIVE"));
    deferred_.Reject(err.Value());
  }

 private:
  std::function<void()> job_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> refs_;
};

// Runs `job` now on the calling thread (sync = true) or queues it (returns a Promise).
inline Napi::Value run_job(Napi::Env env, bool sync, std::function<void()> job, std::vector<Napi::Value> keep_alive) {
  if (sync) {
    job();
    return env.Undefined();
  }
  auto* task = new AsyncTask(env, std::move(job), std::move(keep_alive));
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

}  // namespace svdq_addon
