// Thread pool: workers spin briefly, then sleep on a condition variable between jobs; tasks are
// handed out with a shared counter under the mutex (tasks are coarse: a tile row band, a panel of
// columns).
#include "svdquant/thread_pool.h"

#include "svdquant/compute_slice.h"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

namespace svdq {

int physical_cores() {
  static const int cores = [] {
    std::set<std::pair<int, int>> ids;
    for (int cpu = 0; cpu < 4096; ++cpu) {
      const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
      std::ifstream core(base + "core_id"), pkg(base + "physical_package_id");
      int c = -1, p = -1;
      if (!(core >> c)) break;
      if (!(pkg >> p)) p = 0;
      ids.insert({p, c});
    }
    int n = static_cast<int>(ids.size());
    if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
    return n > 0 ? n : 1;
  }();
  return cores;
}

namespace {

struct SpinSetting {
  int64_t us;
  std::string error;
};

const SpinSetting& spin_setting() {
  static const SpinSetting setting = [] {
    const char* e = std::getenv("SVDQUANT_SPIN_US");
    if (e == nullptr || *e == '\0') return SpinSetting{200, ""};
    char* end = nullptr;
    const long long v = std::strtoll(e, &end, 10);
    if (end == e || *end != '\0' || v < 0 || v > 100000)
      return SpinSetting{0, std::string("invalid SVDQUANT_SPIN_US=\"") + e +
                                "\": expected microseconds, an integer in [0, 100000] (0 never spins)"};
    return SpinSetting{static_cast<int64_t>(v), ""};
  }();
  return setting;
}


// Polls `ready` for up to spin_us(); true as soon as it holds.
template <typename Ready>
bool spin_until(Ready ready) {
  const int64_t us = spin_us();
  if (us <= 0) return ready();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  for (;;) {
    for (int i = 0; i < 4; ++i) {
      if (ready()) return true;
      spin_pause();
    }
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

}  // namespace

int64_t spin_us() { return spin_setting().us; }

// sched_yield, not a pause instruction: any thread runnable on this CPU (the JavaScript thread
// woken to take a result) runs first, so spinning never delays it; with none, it returns at once.
void spin_pause() { std::this_thread::yield(); }
const std::string& spin_setting_error() { return spin_setting().error; }

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = physical_cores();
  for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_tasks(int thread) {
  for (;;) {
    int64_t task;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_ >= tasks_ || error_) return;
      task = next_++;
    }
    try {
      (*fn_)(task, thread);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      failed_ = true;
    }
  }
}

bool ThreadPool::job_done() const { return busy_.load() == 0 && (next_.load() >= tasks_.load() || failed_.load()); }

void ThreadPool::worker_loop(int thread) {
  mark_compute_thread();
  int64_t seen = 0;
  for (;;) {
    spin_until([&] { return stop_.load(std::memory_order_relaxed) || generation_.load(std::memory_order_relaxed) != seen; });
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++busy_;
    }
    run_tasks(thread);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --busy_;
    }
    done_.notify_all();
  }
}

void ThreadPool::parallel_for(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
  if (tasks <= 0) return;
  std::lock_guard<std::mutex> run(run_mutex_);
  const ComputeSliceScope slice;  // the calling thread computes too
  if (workers_.empty() || tasks == 1) {
    for (int64_t t = 0; t < tasks; ++t) fn(t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    tasks_ = tasks;
    next_ = 0;
    error_ = nullptr;
    failed_ = false;
    ++generation_;
  }
  wake_.notify_all();
  run_tasks(0);
  spin_until([&] { return job_done(); });
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return job_done(); });
    // Workers that never woke for this generation must not pick it up later.
    tasks_ = 0;
    fn_ = nullptr;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

ThreadPool& shared_pool(int threads) {
  if (threads <= 0) threads = physical_cores();
  static std::mutex m;
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  std::lock_guard<std::mutex> lock(m);
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

}  // namespace svdq
