// Runs a native job off the JavaScript thread and settles a Promise (AsyncTask; OutTask for jobs
// with one f32 output that the worker may allocate itself). The typed arrays the job
// touches are held by references until it ends, so V8 cannot collect them mid-flight.
#pragma once

#include <napi.h>

#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "args.h"
#include "host_buffers.h"

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
    deferred_.Reject(make_error(Env(), "ERR_SVDQ_NATIVE", e.Message()).Value());
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

// Runs job(y) on a worker. With a caller's y the Promise resolves to undefined; with y == nullptr
// the worker allocates `elems` floats first and the Promise resolves to a Float32Array over them.
class OutTask : public Napi::AsyncWorker {
 public:
  OutTask(Napi::Env env, float* y, int64_t elems, std::function<void(float*)> job, const std::vector<Napi::Value>& keep)
      : Napi::AsyncWorker(env, "svdquant"), y_(y), alloc_(y == nullptr), elems_(static_cast<size_t>(elems)),
        job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {
    for (const auto& v : keep) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  ~OutTask() override {
    if (alloc_) host_f32_release(y_);  // not handed to JavaScript
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      if (alloc_) y_ = host_f32_alloc(elems_);
      job_(y_);
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown native error");
    }
  }

  void OnOK() override {
    if (!alloc_) {
      deferred_.Resolve(Env().Undefined());
      return;
    }
    float* y = y_;
    y_ = nullptr;
    deferred_.Resolve(host_f32_wrap(Env(), y, elems_));
  }

  void OnError(const Napi::Error& e) override {
    deferred_.Reject(make_error(Env(), "ERR_SVDQ_NATIVE", e.Message()).Value());
  }

 private:
  float* y_;
  bool alloc_;
  size_t elems_;
  std::function<void(float*)> job_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> refs_;
};

inline Napi::Value run_out_job(Napi::Env env, float* y, int64_t elems, std::function<void(float*)> job,
                        const std::vector<Napi::Value>& keep) {
  auto* task = new OutTask(env, y, elems, std::move(job), keep);
  Napi::Promise p = task->promise();
  task->Queue();
  return p;
}

}  // namespace svdq_addon
