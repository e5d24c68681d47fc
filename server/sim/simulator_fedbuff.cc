// Simulator: asynchronous buffered aggregation (FedBuff, Nguyen et al.
// 2022) on a simulated clock. `concurrency` agents train at any moment,
// each on the newest model version when it starts; events are processed in
// order of their simulated finishing time; each arriving update is weighted
// by 1 / sqrt(1 + staleness) (StalenessWeight, as in fedge-coordinator)
// and folded into the round accumulator (the strategy's streaming sum);
// every `buffer_size` updates make the next version. A finished agent is
// replaced by a random idle one at once, so fast devices contribute often and
// slow ones do not hold anybody up.
#include <cmath>
#include <map>
#include <memory>
#include <queue>

#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "server/fedbuff_tasks.h"
#include "server/sim/simulator.h"

namespace fedge {
namespace {

// A task in flight: its result is known (training ran when it started); it
// "arrives" at `finish` simulated seconds.
struct Task {
  double finish = 0;
  uint64_t seq = 0;
  int agent = 0;
  int64_t base = 0;                     // The version it trained from.
  int64_t bytes = 0;                    // The update's size on the wire.
  std::shared_ptr<TrainOutput> output;  // Null when the agent failed.
};

struct Later {
  bool operator()(const Task& a, const Task& b) const {
    return a.finish > b.finish || (a.finish == b.finish && a.seq > b.seq);
  }
};

}  // namespace

absl::StatusOr<std::vector<RoundRecord>> Simulator::RunFedBuff(
    const std::function<void(const RoundRecord&)>& on_round) {
  const SimulatorOptions::FedBuff& fb = options_.fedbuff;
  if (options_.examples_per_second.empty()) {
    return absl::InvalidArgumentError(
        "fedbuff needs simulated device speeds (device_speed)");
  }
  if (strategy_->client_algorithm() == "scaffold") {
    return absl::InvalidArgumentError(
        "fedbuff works with the averaging strategies, not scaffold");
  }
  const int n = static_cast<int>(agents_.size());
  const int concurrency = std::max(1, std::min(fb.concurrency, n));
  DeterministicRng rng(MixSeed({options_.strategy.seed, 0x66627566ULL}));
  std::priority_queue<Task, std::vector<Task>, Later> queue;
  // Model versions that tasks in flight started from.
  std::map<int64_t, std::shared_ptr<const ModelState>> versions;
  int64_t version = 0;
  // Each version as agents download it (they train from that).
  auto downloaded = [&]() -> absl::StatusOr<std::shared_ptr<const ModelState>> {
    ASSIGN_OR_RETURN(ModelState m,
                     AsDownloaded(global_, options_.download_encoding));
    return std::make_shared<const ModelState>(std::move(m));
  };
  ASSIGN_OR_RETURN(versions[0], downloaded());
  std::vector<bool> busy(n, false);
  double now = 0;
  uint64_t seq = 0;

  // Starts a random idle agent on the newest version; its local training
  // runs now (its result depends only on that version).
  auto start_one = [&]() -> absl::Status {
    std::vector<int> idle;
    for (int i = 0; i < n; ++i) {
      if (!busy[i]) idle.push_back(i);
    }
    if (idle.empty()) return absl::OkStatus();
    const int agent = idle[rng.UniformInt(idle.size())];
    busy[agent] = true;
    Task task;
    task.seq = ++seq;
    task.agent = agent;
    task.base = version;
    // The plan, with its seed, as ConfigureFit makes it (a task number
    // stands for the round).
    const std::vector<FitInstruction> plan =
        strategy_->ConfigureFit(static_cast<int64_t>(task.seq),
                                absl::MakeConstSpan(&agents_[agent], 1));
    std::optional<ModelState> extras;
    double seconds = options_.task_overhead_seconds;
    int64_t bytes = 0;
    absl::StatusOr<TrainOutput> out = TrainLocal(
        static_cast<int64_t>(task.seq), plan.at(0), *versions.at(version),
        *trainers_[0], &extras, &seconds, &bytes);
    task.bytes = bytes;
    if (out.ok()) {
      task.output = std::make_shared<TrainOutput>(*std::move(out));
    } else {
      FEDGE_LOG(WARNING) << agents_[agent].id << " failed: " << out.status();
    }
    task.finish = now + seconds;
    queue.push(std::move(task));
    return absl::OkStatus();
  };

  for (int i = 0; i < concurrency; ++i) RETURN_IF_ERROR(start_one());
  std::vector<RoundRecord> records;
  RoundOutcome outcome;
  absl::Time wall_start = absl::Now();
  while (!queue.empty()) {
    Task task = queue.top();
    queue.pop();
    now = task.finish;
    busy[task.agent] = false;
    const int64_t staleness = version - task.base;
    const std::string& id = agents_[task.agent].id;
    if (task.output == nullptr || staleness > fb.max_staleness) {
      outcome.failed.push_back(id);
    } else {
      FitResult result;
      result.agent_id = id;
      result.num_examples =
          task.output->metrics.num_examples * StalenessWeight(staleness);
      result.declared_examples = agents_[task.agent].num_examples;
      result.num_steps = task.output->metrics.num_steps;
      result.metrics = task.output->metrics;
      result.delta = &task.output->delta;
      absl::Status added = accumulator_.Add(result, task.bytes);
      if (added.ok()) {
        outcome.reported.push_back(id);
      } else {
        FEDGE_LOG(WARNING) << id << ": update refused: " << added;
        outcome.failed.push_back(id);
      }
    }
    RETURN_IF_ERROR(start_one());
    if (accumulator_.num_updates() < fb.buffer_size) continue;

    // The buffer is full: the next version.
    outcome.round = version + 1;
    outcome.completed = true;
    RoundClose close = accumulator_.Close(outcome, global_, n);
    outcome = RoundOutcome();
    RoundRecord record = std::move(close.record);
    const bool new_model = close.next.has_value();
    if (new_model) global_ = *std::move(close.next);
    ++version;
    ASSIGN_OR_RETURN(versions[version], downloaded());
    // Forget versions no task in flight started from.
    int64_t oldest = version;
    {
      std::priority_queue<Task, std::vector<Task>, Later> copy = queue;
      while (!copy.empty()) {
        oldest = std::min(oldest, copy.top().base);
        copy.pop();
      }
    }
    versions.erase(versions.begin(), versions.lower_bound(oldest));
    const bool last = version >= engine_->num_rounds();
    record.simulated_seconds = now;
    record.train_seconds = 0;
    RETURN_IF_ERROR(EvaluateRound(version, last, record));
    record.round_seconds = absl::ToDoubleSeconds(absl::Now() - wall_start);
    wall_start = absl::Now();
    records.push_back(record);
    completed_rounds_ = static_cast<int>(version);
    last_round_abandoned_ = !new_model;
    if (on_round) on_round(record);
    if (last ||
        (options_.stop_at_accuracy > 0 && record.test_accuracy.has_value() &&
         *record.test_accuracy >= options_.stop_at_accuracy)) {
      break;
    }
  }
  return records;
}

}  // namespace fedge
