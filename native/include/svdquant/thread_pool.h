// The engine's own thread pool (DESIGN.md §5): a fixed set of workers that run the tasks of one
// parallel_for at a time. The calling thread works too, so a pool of size 1 runs inline.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace svdq {

// Physical cores of this machine (distinct core ids per package in sysfs), at least 1.
int physical_cores();

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

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t tasks_ = 0;
  int64_t next_ = 0;
  int64_t generation_ = 0;
  int busy_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

// A process-wide pool per thread count, created on first use and kept for reuse.
ThreadPool& shared_pool(int threads = 0);

}  // namespace svdq
