// The engine's own thread pool (DESIGN.md §5): a fixed set of workers that run the tasks of one
// parallel_for at a time. The calling thread works too, so a pool of size 1 runs inline.
//
// Waiting spins before it sleeps: a worker that finished a job, and a caller waiting for the
// workers, poll for up to spin_us() before blocking on a condition variable. A forward is a few
// parallel_fors in a row, and a model's forwards follow each other within tens of microseconds;
// waking a sleeping thread costs a futex call and, in a VM, an inter-processor interrupt to an
// idle virtual CPU (tens of microseconds: at one token a whole layer takes 200-2000 µs).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace svdq {

// Physical cores of this machine (distinct core ids per package in sysfs), at least 1.
int physical_cores();

// How long a waiting pool thread spins before it sleeps, in microseconds: SVDQUANT_SPIN_US
// (an integer in [0, 100000]; 0 never spins), default 200. Read once; an invalid value is
// reported by spin_setting_error() (the addon then refuses to load) and spinning is off.
int64_t spin_us();
const std::string& spin_setting_error();
// One step of a spin-wait: gives the CPU to any other runnable thread (see thread_pool.cpp).
void spin_pause();

class ThreadPool {
 public:
  // `threads` counts the caller: threads - 1 workers are started. threads <= 0 means physical_cores().
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task, thread) for every task in [0, tasks), spread over the pool; thread is in
  // [0, size()). Blocks until all tasks ran. The first exception thrown by a task is rethrown here
  // (the remaining tasks are skipped). Calls from several threads at once are serialized.
  void parallel_for(int64_t tasks, const std::function<void(int64_t task, int thread)>& fn);

 private:
  void worker_loop(int thread);
  void run_tasks(int thread);
  // Whether the job is finished: every task taken (or one failed) and no worker inside run_tasks.
  bool job_done() const;

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel_for at a time
  std::mutex mutex_;      // guards fn_, tasks_, error_ and the waits; the atomics are also written under it
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  std::atomic<int64_t> tasks_{0};
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> generation_{0};  // read by spinning workers without the mutex
  std::atomic<int> busy_{0};
  std::atomic<bool> failed_{false};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
};

// A process-wide pool per thread count, created on first use and kept for reuse.
ThreadPool& shared_pool(int threads = 0);

}  // namespace svdq
