// Runs a native job off the JavaScript thread (on the engine's dispatcher threads, engine_jobs.h)
// and settles a Promise. The typed arrays the job touches are held by references until it ends, so
// V8 cannot collect them mid-flight, and those over pool blocks are pinned, so that disposing one
// mid-flight cannot hand its memory to another job before this one is done with it. A job with one
// f32 output may leave its allocation to the worker (run_out_job): no zero-filling or freeing of
// large buffers on the JavaScript thread.
#pragma once

#include <napi.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "addon_data.h"
#include "args.h"
#include "engine_jobs.h"
#include "host_buffers.h"

namespace svdq_addon {

// Runs job(y) on a worker. With allocate, the worker first allocates `elems` floats as y and the
// Promise resolves to a Float32Array over them; otherwise y is the caller's (or unused) and the
// Promise resolves to undefined.
class AsyncTask : public EngineJob {
 public:
  AsyncTask(Napi::Env env, std::function<void(float*)> job, const std::vector<Napi::Value>& keep, float* y,
            bool allocate, size_t elems)
      : y_(y), allocate_(allocate), elems_(elems), job_(std::move(job)), deferred_(Napi::Promise::Deferred::New(env)) {
    for (const auto& v : keep) {
      refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
      // Pool blocks the job uses stay allocated until it ends, even if disposed meanwhile.
      if (v.IsTypedArray()) {
        const void* data = v.As<Napi::TypedArray>().ArrayBuffer().Data();
        if (host_f32_pin(data)) pinned_.push_back(data);
      }
    }
  }
  ~AsyncTask() override { release_native(); }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      if (allocate_) y_ = host_f32_alloc(elems_);
      job_(y_);
    } catch (const std::exception& e) {
      error_ = e.what();
      failed_ = true;
    } catch (...) {
      error_ = "unknown native error";
      failed_ = true;
    }
  }

  void Complete(Napi::Env env) override {
    if (failed_) {
      deferred_.Reject(make_error(env, "ERR_SVDQ_NATIVE", error_).Value());
    } else if (!allocate_) {
      deferred_.Resolve(env.Undefined());
    } else {
      float* y = y_;
      y_ = nullptr;
      deferred_.Resolve(host_f32_wrap(env, y, elems_));
    }
  }

  void Abandon() override {
    for (auto& r : refs_) r.SuppressDestruct();  // their environment is gone
    release_native();
  }

 private:
  void release_native() {
    for (const void* p : pinned_) host_f32_unpin(p);
    pinned_.clear();
    if (allocate_) host_f32_release(y_);  // not handed to JavaScript (an error, or never run)
    y_ = nullptr;
  }

  float* y_;
  bool allocate_;
  size_t elems_;
  std::function<void(float*)> job_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> refs_;
  std::vector<const void*> pinned_;
  std::string error_;
  bool failed_ = false;
};

inline Napi::Value queue_task(Napi::Env env, AsyncTask* task) {
  Napi::Promise p = task->promise();
  engine_submit(env, addon_data(env).engine, task);
  return p;
}

// Runs `job` now on the calling thread (sync = true) or queues it (returns a Promise).
inline Napi::Value run_job(Napi::Env env, bool sync, std::function<void()> job, std::vector<Napi::Value> keep_alive) {
  if (sync) {
    job();
    return env.Undefined();
  }
  return queue_task(env, new AsyncTask(env, [job = std::move(job)](float*) { job(); }, keep_alive, nullptr, false, 0));
}

// The output argument i of a job with one f32 output: a Float32Array of at least `elems` floats
// (kept alive), or null/undefined for an output the worker allocates (nullptr here).
inline float* get_output(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t elems,
                         std::vector<Napi::Value>& keep) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  float* y = get_array<float>(info, i, name, napi_float32_array, elems, "Float32Array or null");
  keep.push_back(info[i]);
  return y;
}

// Runs job(y) on a worker: into the caller's y (resolves to undefined), or, for y == nullptr, into
// `elems` floats the worker allocates (resolves to a Float32Array over them).
inline Napi::Value run_out_job(Napi::Env env, float* y, int64_t elems, std::function<void(float*)> job,
                               const std::vector<Napi::Value>& keep) {
  return queue_task(env, new AsyncTask(env, std::move(job), keep, y, y == nullptr, static_cast<size_t>(elems)));
}

}  // namespace svdq_addon
