#include "common/thread_pool.h"

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(ThreadPoolTest, NumThreads) {
  ThreadPool one(1);
  EXPECT_EQ(one.num_threads(), 1);
  ThreadPool four(4);
  EXPECT_EQ(four.num_threads(), 4);
}

TEST(ThreadPoolTest, RunBatch_EveryTaskRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    SCOPED_TRACE(threads);
    ThreadPool pool(threads);
    constexpr size_t kTasks = 10000;
    std::vector<std::atomic<int>> runs(kTasks);
    for (auto& r : runs) r.store(0);
    pool.RunBatch(kTasks, [&](size_t task, int worker) {
      ASSERT_LT(task, kTasks);
      runs[task].fetch_add(1);
    });
    for (size_t i = 0; i < kTasks; ++i) {
      ASSERT_EQ(runs[i].load(), 1) << "task " << i;
    }
  }
}

TEST(ThreadPoolTest, RunBatch_WorkerIndicesInRangeAndStablePerThread) {
  constexpr int kThreads = 4;
  ThreadPool pool(kThreads);
  absl::Mutex mu;
  std::vector<std::set<std::thread::id>> threads_of_worker(kThreads);
  std::atomic<int> bad_index{0};
  for (int batch = 0; batch < 5; ++batch) {
    pool.RunBatch(500, [&](size_t task, int worker) {
      if (worker < 0 || worker >= kThreads) {
        bad_index.fetch_add(1);
        return;
      }
      absl::MutexLock lock(&mu);
      threads_of_worker[worker].insert(std::this_thread::get_id());
    });
  }
  EXPECT_EQ(bad_index.load(), 0);
  // A worker index always means the same thread, never the caller's.
  std::set<std::thread::id> all;
  for (int w = 0; w < kThreads; ++w) {
    EXPECT_LE(threads_of_worker[w].size(), 1u) << "worker " << w;
    for (const auto& id : threads_of_worker[w]) {
      EXPECT_NE(id, std::this_thread::get_id());
      EXPECT_TRUE(all.insert(id).second) << "two workers share a thread";
    }
  }
}

TEST(ThreadPoolTest, RunBatch_ReturnsOnlyAfterAllTasksFinished) {
  ThreadPool pool(3);
  std::atomic<int> finished{0};
  pool.RunBatch(30, [&](size_t task, int worker) {
    absl::SleepFor(absl::Milliseconds(task % 3));
    finished.fetch_add(1);
  });
  EXPECT_EQ(finished.load(), 30);
}

TEST(ThreadPoolTest, RunBatch_TasksRunInParallel) {
  // Every task waits until all kThreads tasks have started: this finishes
  // only if the pool runs them on kThreads workers at once.
  constexpr int kThreads = 4;
  ThreadPool pool(kThreads);
  absl::Mutex mu;
  int started = 0;
  std::set<int> workers;
  pool.RunBatch(kThreads, [&](size_t task, int worker) {
    absl::MutexLock lock(&mu);
    ++started;
    workers.insert(worker);
    mu.Await(absl::Condition(
        +[](int* s) { return *s == kThreads; }, &started));
  });
  EXPECT_EQ(started, kThreads);
  EXPECT_EQ(workers.size(), static_cast<size_t>(kThreads));
}

TEST(ThreadPoolTest, OnStart_RunsOncePerWorkerBeforeItsTasks) {
  constexpr int kThreads = 4;
  absl::Mutex mu;
  std::vector<int> start_calls(kThreads, 0);
  std::vector<std::thread::id> start_thread(kThreads);
  std::atomic<int> bad_index{0};
  {
    ThreadPool pool(kThreads, [&](int worker) {
      if (worker < 0 || worker >= kThreads) {
        bad_index.fetch_add(1);
        return;
      }
      absl::MutexLock lock(&mu);
      ++start_calls[worker];
      start_thread[worker] = std::this_thread::get_id();
    });
    std::atomic<int> task_before_start{0};
    for (int batch = 0; batch < 3; ++batch) {
      pool.RunBatch(200, [&](size_t task, int worker) {
        absl::MutexLock lock(&mu);
        // The hook already ran on this very thread.
        if (start_calls[worker] != 1 ||
            start_thread[worker] != std::this_thread::get_id()) {
          task_before_start.fetch_add(1);
        }
      });
    }
    EXPECT_EQ(task_before_start.load(), 0);
  }
  // After the pool is gone every worker has run its hook exactly once.
  EXPECT_EQ(bad_index.load(), 0);
  for (int w = 0; w < kThreads; ++w) {
    EXPECT_EQ(start_calls[w], 1) << "worker " << w;
  }
}

TEST(ThreadPoolTest, OnStart_RunsEvenWithoutBatches) {
  std::atomic<int> calls{0};
  {
    ThreadPool pool(3, [&](int) { calls.fetch_add(1); });
  }
  EXPECT_EQ(calls.load(), 3);
}

TEST(ThreadPoolTest, OnStart_PerWorkerState) {
  // The documented use: each worker owns a slot set up by its hook. A hook
  // may still be running when the constructor (or a batch) returns, so the
  // slots are read only after the pool is joined.
  constexpr int kThreads = 3;
  constexpr size_t kTasks = 300;
  std::vector<std::unique_ptr<std::vector<size_t>>> slots(kThreads);
  {
    ThreadPool pool(kThreads, [&](int worker) {
      slots[worker] = std::make_unique<std::vector<size_t>>();
    });
    pool.RunBatch(kTasks, [&](size_t task, int worker) {
      slots[worker]->push_back(task);  // No lock: the slot is the worker's.
    });
  }
  std::vector<int> seen(kTasks, 0);
  for (const auto& slot : slots) {
    ASSERT_NE(slot, nullptr);
    for (size_t t : *slot) ++seen[t];
  }
  for (size_t t = 0; t < kTasks; ++t) EXPECT_EQ(seen[t], 1) << t;
}

TEST(ThreadPoolTest, MultipleBatches_EachCompleteAndSeparate) {
  ThreadPool pool(3);
  for (size_t batch = 1; batch <= 50; ++batch) {
    std::vector<std::atomic<int>> runs(batch);
    for (auto& r : runs) r.store(0);
    std::atomic<int> out_of_range{0};
    pool.RunBatch(batch, [&](size_t task, int worker) {
      if (task >= batch) {
        out_of_range.fetch_add(1);
        return;
      }
      runs[task].fetch_add(1);
    });
    EXPECT_EQ(out_of_range.load(), 0) << "batch " << batch;
    for (size_t i = 0; i < batch; ++i) {
      ASSERT_EQ(runs[i].load(), 1) << "batch " << batch << " task " << i;
    }
  }
}

TEST(ThreadPoolTest, ZeroTasks_ReturnsWithoutCalling) {
  ThreadPool pool(2);
  std::atomic<int> calls{0};
  pool.RunBatch(0, [&](size_t, int) { calls.fetch_add(1); });
  EXPECT_EQ(calls.load(), 0);
  // The pool still works afterwards.
  pool.RunBatch(5, [&](size_t, int) { calls.fetch_add(1); });
  EXPECT_EQ(calls.load(), 5);
  pool.RunBatch(0, [&](size_t, int) { calls.fetch_add(1); });
  EXPECT_EQ(calls.load(), 5);
}

TEST(ThreadPoolTest, FewerTasksThanWorkers) {
  ThreadPool pool(8);
  std::atomic<int> calls{0};
  pool.RunBatch(1, [&](size_t task, int) {
    EXPECT_EQ(task, 0u);
    calls.fetch_add(1);
  });
  EXPECT_EQ(calls.load(), 1);
}

TEST(ThreadPoolTest, ConcurrentRunBatchCallers_AreSerializedAndComplete) {
  ThreadPool pool(3);
  constexpr int kCallers = 4;
  constexpr size_t kTasks = 1000;
  std::vector<std::vector<std::atomic<int>>> runs(kCallers);
  for (auto& r : runs) {
    r = std::vector<std::atomic<int>>(kTasks);
    for (auto& x : r) x.store(0);
  }
  std::atomic<int> overlap{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int round = 0; round < 5; ++round) {
        std::atomic<int> left{static_cast<int>(kTasks)};
        pool.RunBatch(kTasks, [&](size_t task, int) {
          runs[c][task].fetch_add(1);
          left.fetch_sub(1);
        });
        if (left.load() != 0) overlap.fetch_add(1);
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(overlap.load(), 0);
  for (int c = 0; c < kCallers; ++c) {
    for (size_t i = 0; i < kTasks; ++i) {
      ASSERT_EQ(runs[c][i].load(), 5) << "caller " << c << " task " << i;
    }
  }
}

TEST(ThreadPoolTest, Destructor_JoinsIdleWorkers) {
  for (int i = 0; i < 20; ++i) {
    ThreadPool pool(4);
    if (i % 2 == 0) pool.RunBatch(10, [](size_t, int) {});
  }
  SUCCEED();
}

TEST(ThreadPoolDeathTest, ZeroThreads_Crashes) {
  EXPECT_DEATH(ThreadPool pool(0), "num_threads");
}

}  // namespace
}  // namespace fedge
