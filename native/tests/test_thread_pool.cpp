#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <vector>

#include "harness.h"
#include "svdquant/compute_slice.h"
#include "svdquant/thread_pool.h"

using svdq::ThreadPool;

TEST(thread_pool_runs_every_task_once) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    CHECK_EQ(pool.size(), threads);
    for (int round = 0; round < 50; ++round) {
      const int64_t tasks = 1 + (round * 7) % 23;
      std::vector<std::atomic<int>> hits(tasks);
      for (auto& h : hits) h = 0;
      std::atomic<int> bad_thread{0};
      pool.parallel_for(tasks, [&](int64_t t, int thread) {
        hits[t]++;
        if (thread < 0 || thread >= threads) bad_thread++;
      });
      for (auto& h : hits) CHECK_EQ(h.load(), 1);
      CHECK_EQ(bad_thread.load(), 0);
    }
  }
}

TEST(thread_pool_rethrows_and_stays_usable) {
  ThreadPool pool(2);
  bool caught = false;
  try {
    pool.parallel_for(10, [](int64_t t, int) {
      if (t == 3) throw std::runtime_error("task 3 failed");
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "task 3 failed";
  }
  CHECK(caught);
  std::atomic<int> n{0};
  pool.parallel_for(5, [&](int64_t, int) { n++; });
  CHECK_EQ(n.load(), 5);
  CHECK(svdq::physical_cores() >= 1);
  CHECK_EQ(svdq::shared_pool(2).size(), 2);
  CHECK(&svdq::shared_pool(2) == &svdq::shared_pool(2));
}

// The scheduler hint (compute_slice.h): where the kernel reports slices (Linux 6.12+), the pool's
// workers and the calling thread run with the long slice, and the caller gets its own slice back.
TEST(thread_pool_compute_threads_ask_for_a_long_slice) {
  const int64_t before = svdq::current_slice_us();
  // Not Linux, the hint turned off, or a kernel without custom slices (it reports 0): nothing to see.
  if (before <= 0 || svdq::compute_slice_us() <= 0) return;
  const int64_t want = std::min<int64_t>(svdq::compute_slice_us(), 100000);  // the kernel clamps
  CHECK(before != want);
  ThreadPool pool(3);
  std::vector<int64_t> seen(3, -2);
  pool.parallel_for(64, [&](int64_t, int thread) { seen[static_cast<size_t>(thread)] = svdq::current_slice_us(); });
  for (int64_t s : seen)
    if (s != -2) CHECK_EQ(s, want);
  int64_t inline_slice = -2;
  pool.parallel_for(1, [&](int64_t, int) { inline_slice = svdq::current_slice_us(); });
  CHECK_EQ(inline_slice, want);
  CHECK_EQ(svdq::current_slice_us(), before);
}
