// A fixed pool of worker threads for fan-out work such as training the
// agents of a simulated round in parallel.
//
// Each worker has a stable index in [0, num_threads), so callers can give
// every worker its own state (e.g. its own model). An optional start hook
// runs once on each worker before any task (e.g. to pin LibTorch to one
// thread). RunBatch() is thread-safe but batches run one at a time.
#ifndef FEDGE_COMMON_THREAD_POOL_H_
#define FEDGE_COMMON_THREAD_POOL_H_

#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace fedge {

class ThreadPool {
 public:
  // Starts `num_threads` (>= 1) workers; each runs `on_start(worker)` first.
  explicit ThreadPool(int num_threads,
                      std::function<void(int worker)> on_start = nullptr);
  // Finishes the running batch, then joins the workers.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(threads_.size()); }

  // Calls fn(task, worker) for every task in [0, num_tasks) on the workers
  // (each task exactly once, in increasing order of pick-up) and returns when
  // all have finished.
  void RunBatch(size_t num_tasks,
                const std::function<void(size_t task, int worker)>& fn);

 private:
  void WorkerLoop(int worker);

  absl::Mutex batch_mu_;  // Serializes RunBatch callers.
  absl::Mutex mu_;
  const std::function<void(size_t, int)>* fn_ ABSL_GUARDED_BY(mu_) = nullptr;
  size_t num_tasks_ ABSL_GUARDED_BY(mu_) = 0;
  size_t next_task_ ABSL_GUARDED_BY(mu_) = 0;
  size_t done_tasks_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(int)> on_start_;
  std::vector<std::thread> threads_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_THREAD_POOL_H_
