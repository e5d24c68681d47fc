#include "common/thread_pool.h"

#include "common/logging.h"

namespace fedge {

ThreadPool::ThreadPool(int num_threads, std::function<void(int)> on_start)
    : on_start_(std::move(on_start)) {
  FEDGE_CHECK(num_threads >= 1) << "num_threads=" << num_threads;
  threads_.reserve(num_threads);
  for (int i = 0; i < num_threads; ++i) {
    threads_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::RunBatch(size_t num_tasks,
                          const std::function<void(size_t, int)>& fn) {
  if (num_tasks == 0) return;
  absl::MutexLock batch_lock(&batch_mu_);
  absl::MutexLock lock(&mu_);
  fn_ = &fn;
  num_tasks_ = num_tasks;
  next_task_ = 0;
  done_tasks_ = 0;
  mu_.Await(absl::Condition(
      +[](ThreadPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
        return p->done_tasks_ == p->num_tasks_;
      },
      this));
  fn_ = nullptr;
}

void ThreadPool::WorkerLoop(int worker) {
  if (on_start_) on_start_(worker);
  auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || (fn_ != nullptr && next_task_ < num_tasks_);
  };
  while (true) {
    const std::function<void(size_t, int)>* fn;
    size_t task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&has_work));
      if (fn_ == nullptr || next_task_ >= num_tasks_) return;  // stop_
      fn = fn_;
      task = next_task_++;
    }
    (*fn)(task, worker);
    absl::MutexLock lock(&mu_);
    ++done_tasks_;
  }
}

}  // namespace fedge
