#include "server/sim/sim_runner.h"

#include <ATen/Parallel.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/data/data_source.h"
#include "common/file_util.h"
#include "common/fl_config.h"
#include "common/ml/model_files.h"
#include "common/ml/model_spec.h"
#include "common/ml/torch_trainer.h"
#include "common/ml/torchscript_model.h"
#include "common/partition.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "server/engine_config.h"
#include "server/fedbuff_tasks.h"
#include "server/sim/simulator.h"

namespace fedge {
namespace {

// The SimConfig fields the partitioners' errors name.
PartitionArgNames SimPartitionNames() {
  PartitionArgNames names;
  names.num_clients = "num_agents";
  names.shards_per_client = "partition.shards_per_agent";
  names.alpha = "partition.dirichlet_alpha";
  return names;
}

absl::StatusOr<Partition> MakePartition(const v1::PartitionConfig& c,
                                        const Dataset& train, int num_agents) {
  return PartitionByMethod(c.method(), train.labels, num_agents, c.seed(),
                           c.dirichlet_alpha(), c.shards_per_agent(),
                           SimPartitionNames());
}

int NumThreads(const v1::SimConfig& c) {
  if (c.num_threads() > 0) return c.num_threads();
  return std::max(1u, std::thread::hardware_concurrency());
}

std::string Percent(const std::optional<double>& v) {
  return v.has_value() ? absl::StrFormat("%6.2f%%", 100 * *v) : "      -";
}

// "round    3/10" while every round has completed; once one was abandoned
// (it does not count toward --rounds) the round id and the completed count
// differ: "round    4 (3/10 completed)", "round    5 (abandoned, 3/10
// completed)".
std::string RoundLabel(const RoundRecord& r, int completed, bool abandoned,
                       int total_rounds) {
  if (!abandoned && r.round == completed) {
    return absl::StrFormat("round %4d/%d", r.round, total_rounds);
  }
  return absl::StrFormat("round %4d (%s%d/%d completed)", r.round,
                         abandoned ? "abandoned, " : "", completed,
                         total_rounds);
}

void PrintRound(std::FILE* out, const RoundRecord& r, const Simulator& sim,
                int total_rounds) {
  absl::FPrintF(
      out,
      "%s  agents %3d  examples %6d  train_loss %s  test_loss %s  "
      "test_acc %s%s%s  %.2f s\n",
      RoundLabel(r, sim.completed_rounds(), sim.last_round_abandoned(),
                 total_rounds),
      r.num_agents, r.num_examples,
      // Nothing was measured when no agent reported.
      r.num_examples > 0 ? absl::StrFormat("%.4f", r.train_loss) : "     -",
      r.test_loss.has_value() ? absl::StrFormat("%.4f", *r.test_loss)
                              : "     -",
      Percent(r.test_accuracy),
      r.fed_eval_accuracy.has_value()
          ? absl::StrCat("  fed_acc ", Percent(r.fed_eval_accuracy))
          : "",
      r.epsilon.has_value() ? absl::StrFormat("  epsilon %.4f (delta %g)",
                                              *r.epsilon, r.delta.value_or(0))
                            : "",
      r.round_seconds);
  std::fflush(out);
}

absl::StatusOr<std::vector<std::unique_ptr<LocalTrainer>>> MakeTrainers(
    const v1::SimConfig& c, const LoadedData& data, int n) {
  ml::TorchTrainerOptions options;
  options.model = ml::SpecFromConfig(c.model(), data.train.example_shape,
                                     data.train.num_classes);
  options.train = &data.train;
  options.eval = data.test.num_examples() > 0 ? &data.test : nullptr;
  std::vector<std::unique_ptr<LocalTrainer>> trainers;
  for (int i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(auto t, ml::TorchTrainer::Create(options));
    trainers.push_back(std::move(t));
  }
  return trainers;
}

}  // namespace

absl::StatusOr<SimRunSummary> RunSimulation(const v1::SimConfig& c,
                                            std::FILE* out) {
  RETURN_IF_ERROR(ValidateSimConfig(c));
  if (!c.model_out().empty()) {
    // Written after the last round: a folder that cannot take it fails now.
    RETURN_IF_ERROR(Annotate(CheckCanCreateFile(c.model_out()), "model_out"));
  }
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(LoadedData data, LoadData(c.data()));
  absl::FPrintF(out, "%s%s\n",
                data.used_fallback ? "WARNING: " : "data: ", data.description);
  if (data.test.num_examples() == 0) {
    return absl::InvalidArgumentError(
        "the simulation needs a test set to report accuracy (data.*_test_*)");
  }
  ASSIGN_OR_RETURN(Partition partition,
                   MakePartition(c.partition(), data.train, c.num_agents()));
  const int threads = NumThreads(c);
  at::set_num_threads(threads);  // Evaluation on the main thread.
  ASSIGN_OR_RETURN(auto trainers, MakeTrainers(c, data, threads));
  ml::ModelSpec spec = ml::SpecFromConfig(c.model(), data.train.example_shape,
                                          data.train.num_classes);
  if (spec.architecture == "torchscript") {
    // The archive's SHA-256 and size, as the coordinator publishes them:
    // the --model_out spec then pins the archive its weights belong to.
    RETURN_IF_ERROR(Annotate(ml::StampArchive(spec), "model.torchscript_path"));
  }
  ASSIGN_OR_RETURN(ModelState initial, ml::InitialState(spec));
  ASSIGN_OR_RETURN(initial, ml::InitialWeights(c.model().initial_weights_path(),
                                               std::move(initial)));
  // The selection: a count overrides the fraction.
  const std::string selection =
      c.strategy().count() > 0
          ? absl::StrFormat("K=%d", c.strategy().count())
          : absl::StrFormat("C=%g", c.strategy().fraction());
  absl::FPrintF(out,
                "model %s (%d parameters), %d agents (%s split), strategy %s, "
                "%s, E=%d, B=%d, lr=%g, %d worker threads\n",
                c.model().architecture(), initial.NumElements(), c.num_agents(),
                c.partition().method(), c.strategy().name(), selection,
                c.train().epochs(), c.train().batch_size(),
                c.train().learning_rate(), threads);

  SimulatorOptions options;
  options.engine = ToRoundEngineOptions(c.strategy(), c.rounds());
  options.strategy = ToStrategyOptions(c.strategy(), c.train(), c.seed());
  options.update_limits = ToUpdateLimits(c.strategy().update_limits());
  options.secure_aggregation =
      ToSecureAggregationOptions(c.strategy().secure_aggregation());
  ASSIGN_OR_RETURN(options.download_encoding,
                   ParseDownloadEncoding(c.strategy().download_encoding()));
  options.eval_every_rounds = c.eval_every_rounds();
  options.stop_at_accuracy = c.stop_at_accuracy();
  options.max_abandoned_rounds = c.max_abandoned_rounds();
  options.dropout_probability = c.agent_dropout_probability();
  const v1::DeviceSpeedConfig& speed = c.device_speed();
  if (speed.examples_per_second() > 0) {
    // A long tail: slow_fraction of the agents (from the seed) are
    // slow_factor times slower.
    DeterministicRng rng(MixSeed({c.seed(), 0x73706565ULL}));
    for (int i = 0; i < c.num_agents(); ++i) {
      const bool slow = rng.UniformDouble() < speed.slow_fraction();
      options.examples_per_second.push_back(speed.examples_per_second() /
                                            (slow ? speed.slow_factor() : 1.0));
    }
    options.task_overhead_seconds = speed.task_overhead_seconds();
  }
  options.random_epochs_max = c.random_epochs_max();
  if (c.poisoned_agents() > 0) {
    // Which agents are Byzantine: a seeded sample.
    std::vector<std::string> ids;
    for (int i = 0; i < c.num_agents(); ++i) ids.push_back(SimAgentId(i));
    for (const std::string& id : SampleAgents(
             ids, c.poisoned_agents(), MixSeed({c.seed(), 0x706f6973}), 0)) {
      options.poisoned.push_back(SimAgentIndex(id));
    }
    options.poison_scale = c.poison_scale();
  }
  if (c.strategy().mode() == "fedbuff") {
    options.fedbuff.enabled = true;
    options.fedbuff.buffer_size = c.strategy().fedbuff_buffer_size();
    options.fedbuff.max_staleness = c.strategy().fedbuff_max_staleness();
    options.fedbuff.concurrency =
        Concurrency(ToFedBuffOptions(c.strategy()), c.num_agents());
  }
  if (c.strategy().fraction_evaluate() > 0) {
    // Each agent's held-out data: its IID share of the test split (as
    // fedge-agent holds in simulation mode).
    absl::StatusOr<Partition> eval =
        PartitionIid(data.test.num_examples(), c.num_agents(),
                     c.partition().seed(), SimPartitionNames());
    if (!eval.ok()) {
      return Annotate(eval.status(),
                      "strategy.fraction_evaluate: the test set is split "
                      "among the agents");
    }
    options.eval_partitions = *std::move(eval);
  }
  ASSIGN_OR_RETURN(auto sim,
                   Simulator::Create(options, std::move(partition),
                                     std::move(initial), std::move(trainers),
                                     [](int) { at::set_num_threads(1); }));

  std::unique_ptr<HistoryWriter> history;
  if (!c.history_out().empty()) {
    ASSIGN_OR_RETURN(history, HistoryWriter::Open(
                                  c.history_out(), /*with_bytes=*/true,
                                  speed.examples_per_second() > 0,
                                  /*with_privacy=*/sim->privacy() != nullptr));
  }
  SimRunSummary summary;
  summary.num_threads = threads;
  absl::Status write_status;
  ASSIGN_OR_RETURN(summary.rounds, sim->Run([&](const RoundRecord& r) {
    PrintRound(out, r, *sim, c.rounds());
    if (history != nullptr && write_status.ok()) {
      write_status = history->Append(r);
    }
    const double acc = r.test_accuracy.value_or(0);
    summary.best_accuracy = std::max(summary.best_accuracy, acc);
    if (c.stop_at_accuracy() > 0 && acc >= c.stop_at_accuracy() &&
        summary.first_round_at_target < 0) {
      summary.first_round_at_target = r.round;
      summary.simulated_seconds_at_target = r.simulated_seconds.value_or(-1);
    }
  }));
  RETURN_IF_ERROR(write_status);
  summary.completed_rounds = sim->completed_rounds();
  if (c.strategy().secure_aggregation().enabled()) {
    const Simulator::SecAggSeconds& t = sim->secagg_seconds();
    absl::FPrintF(out,
                  "secure aggregation: %d rounds aggregated, server %.3f s "
                  "per round, agents %.3f s per round (summed over agents, "
                  "training excluded)\n",
                  t.rounds, t.rounds > 0 ? t.server / t.rounds : 0.0,
                  t.rounds > 0 ? t.agents / t.rounds : 0.0);
  }
  if (!sim->stop_reason().empty()) {
    absl::FPrintF(out, "%s\n", sim->stop_reason());
  }
  if (const RoundPrivacy* privacy = sim->privacy(); privacy != nullptr) {
    const PrivacySpent spent = privacy->Spent();
    absl::FPrintF(out,
                  "privacy: %s DP, epsilon %.4f at delta %g after %d rounds "
                  "(noise multiplier %g, clip norm %g)\n",
                  spent.local ? "local" : "central", spent.epsilon, spent.delta,
                  spent.rounds, privacy->options().noise_multiplier,
                  privacy->options().clip_norm);
  }
  if (!c.model_out().empty()) {
    // The final global model and its spec, as the coordinator's
    // final_model.fedge and final_model.spec.
    RETURN_IF_ERROR(Annotate(
        ml::WriteModelWithSpec(c.model_out(), sim->global_model(), spec),
        "model_out"));
    absl::FPrintF(out, "final model written to %s (spec %s)\n", c.model_out(),
                  ml::DefaultSpecPath(c.model_out()));
  }
  summary.total_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return summary;
}

}  // namespace fedge
