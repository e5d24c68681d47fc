#include "edge_agent/torch_support.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/ml/model_spec.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torch_status.h"
#include "common/ml/torch_trainer.h"
#include "common/partition.h"
#include "common/scaffold.h"
#include "common/status_macros.h"
#include "edge_agent/model_cache.h"

namespace fedge {
namespace {

// A TorchTrainer together with the partitions of the local data it trains
// and evaluates on (null when it uses the whole set, which outlives it).
class PartitionTrainer final : public LocalTrainer {
 public:
  PartitionTrainer(std::unique_ptr<Dataset> owned,
                   std::unique_ptr<Dataset> owned_test,
                   std::unique_ptr<ml::TorchTrainer> trainer)
      : owned_(std::move(owned)),
        owned_test_(std::move(owned_test)),
        trainer_(std::move(trainer)) {}

  absl::StatusOr<TrainOutput> Train(
      const ModelState& global, const TrainPlan& plan,
      absl::Span<const int64_t> indices) override {
    return trainer_->Train(global, plan, indices);
  }
  absl::StatusOr<EvalMetrics> Evaluate(const ModelState& weights) override {
    return trainer_->Evaluate(weights);
  }

 private:
  // Declared first: they outlive trainer_.
  std::unique_ptr<Dataset> owned_;
  std::unique_ptr<Dataset> owned_test_;
  std::unique_ptr<ml::TorchTrainer> trainer_;
};

// How the config that set the split names its fields: "" for the agent's
// own (num_partitions, partition.*), "simulation_mode." for the
// coordinator's.
PartitionArgNames PartitionNames(const std::string& prefix) {
  PartitionArgNames names;
  names.num_clients = prefix + "num_partitions";
  names.shards_per_client = prefix + "partition.shards_per_agent";
  names.alpha = prefix + "partition.dirichlet_alpha";
  return names;
}

// Indices of this agent's local examples (empty: the whole set): the
// configured partition, else the one the coordinator hands out.
absl::StatusOr<std::vector<int64_t>> LocalIndices(
    const v1::AgentConfig& c, const LoadedData& data,
    const v1::JoinResponse& join) {
  if (data.partitioned) return std::vector<int64_t>();
  const Dataset& train = data.train;
  if (c.partition_index() >= 0) {
    const v1::PartitionConfig& p = c.partition();
    ASSIGN_OR_RETURN(
        Partition parts,
        PartitionByMethod(p.method(), train.labels, c.num_partitions(),
                          p.seed(), p.dirichlet_alpha(), p.shards_per_agent(),
                          PartitionNames("")));
    return std::move(parts[c.partition_index()]);
  }
  // Outside simulation mode the coordinator sets partition_index -1 (or
  // leaves num_partitions 0, proto3's default).
  if (join.partition_index() < 0 || join.num_partitions() <= 0) {
    return std::vector<int64_t>();
  }
  absl::StatusOr<Partition> parts = PartitionByMethod(
      join.partition_method(), train.labels, join.num_partitions(),
      join.partition_seed(), join.dirichlet_alpha(), join.shards_per_agent(),
      PartitionNames("simulation_mode."));
  if (!parts.ok()) {
    return Annotate(parts.status(), "the coordinator's partition");
  }
  return std::move((*parts)[join.partition_index() % join.num_partitions()]);
}

// This agent's held-out examples (for federated evaluation): when it holds
// partition i of n of a shared data set, an IID partition i of n of the
// test split (agents then evaluate on different data); else the whole test
// split (empty).
std::vector<int64_t> LocalTestIndices(const v1::AgentConfig& c,
                                      const LoadedData& data,
                                      const v1::JoinResponse& join) {
  if (data.partitioned) return {};
  const Dataset& test = data.test;
  int index = -1, count = 0;
  uint64_t seed = 0;
  if (c.partition_index() >= 0) {
    index = c.partition_index();
    count = c.num_partitions();
    seed = c.partition().seed();
  } else if (join.partition_index() >= 0 && join.num_partitions() > 0) {
    index = join.partition_index() % join.num_partitions();
    count = join.num_partitions();
    seed = join.partition_seed();
  }
  if (index < 0 || count <= 0 || test.num_examples() < count) return {};
  absl::StatusOr<Partition> parts =
      PartitionIid(test.num_examples(), count, seed);
  if (!parts.ok()) return {};
  return std::move((*parts)[index]);
}

// The spec the coordinator names; unset input shape and classes come from
// the data. A TorchScript archive must be at `archive_path`, matching the
// spec.
absl::StatusOr<ml::ModelSpec> ToModelSpec(const v1::ModelSpecProto& p,
                                          const Dataset& data,
                                          const std::string& archive_path) {
  ml::ModelSpec spec = ml::SpecFromProto(p);
  if (spec.input_shape.empty()) spec.input_shape = data.example_shape;
  if (spec.num_classes <= 0) spec.num_classes = std::max(data.num_classes, 2);
  if (spec.architecture == "torchscript") {
    spec.torchscript_path = archive_path;
    RETURN_IF_ERROR(ml::VerifyArchive(spec));
  }
  return spec;
}

// Where the archive of a TorchScript spec is ("" for a zoo spec).
absl::StatusOr<std::string> ArchivePath(const v1::JoinResponse& join,
                                        const ArchiveResolver& archives) {
  const v1::ModelSpecProto& spec = join.model();
  if (spec.architecture() != "torchscript") return std::string();
  if (archives == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the federation trains TorchScript archive ", spec.torchscript_sha256(),
        " and this agent cannot fetch archives"));
  }
  return archives(join);
}

absl::StatusOr<std::unique_ptr<LocalTrainer>> MakeTrainer(
    const v1::AgentConfig& c, const LoadedData& data,
    const v1::JoinResponse& join, const ArchiveResolver& archives) {
  ASSIGN_OR_RETURN(std::vector<int64_t> indices, LocalIndices(c, data, join));
  std::unique_ptr<Dataset> owned;
  if (!indices.empty()) {
    owned = std::make_unique<Dataset>(Subset(data.train, indices));
  }
  std::unique_ptr<Dataset> owned_test;
  const std::vector<int64_t> test_indices = LocalTestIndices(c, data, join);
  if (!test_indices.empty()) {
    owned_test = std::make_unique<Dataset>(Subset(data.test, test_indices));
  }
  ASSIGN_OR_RETURN(std::string archive, ArchivePath(join, archives));
  ml::TorchTrainerOptions options;
  ASSIGN_OR_RETURN(options.model,
                   ToModelSpec(join.model(), data.train, archive));
  options.train = owned != nullptr ? owned.get() : &data.train;
  options.eval = owned_test != nullptr          ? owned_test.get()
                 : data.test.num_examples() > 0 ? &data.test
                                                : nullptr;
  absl::StatusOr<std::unique_ptr<ml::TorchTrainer>> trainer =
      ml::TorchTrainer::Create(options);
  if (!trainer.ok()) {
    return Annotate(trainer.status(), "the local data does not fit the model");
  }
  FEDGE_LOG(INFO) << "training " << options.model.architecture << " on "
                  << options.train->num_examples() << " local examples";
  return std::unique_ptr<LocalTrainer>(new PartitionTrainer(
      std::move(owned), std::move(owned_test), *std::move(trainer)));
}

constexpr int64_t kPredictBatch = 1000;

// Top-1 class of each of the first `n` examples of `set`.
absl::StatusOr<std::vector<int64_t>> Classify(ml::Net& net, const Dataset& set,
                                              int64_t n) {
  return ml::CallTorch([&]() -> absl::StatusOr<std::vector<int64_t>> {
    torch::NoGradGuard no_grad;
    net.eval();
    const torch::Tensor x = ml::FeaturesView(set);
    std::vector<int64_t> predicted;
    predicted.reserve(n);
    for (int64_t begin = 0; begin < n; begin += kPredictBatch) {
      const int64_t end = std::min(n, begin + kPredictBatch);
      const torch::Tensor top =
          net.forward(x.slice(0, begin, end)).argmax(1).contiguous();
      const int64_t* p = top.data_ptr<int64_t>();
      predicted.insert(predicted.end(), p, p + (end - begin));
    }
    return predicted;
  });
}

absl::Status CheckPredictOptions(const PredictOptions& o) {
  if (o.split != "test" && o.split != "train") {
    return absl::InvalidArgumentError(
        absl::StrCat("--split must be test or train, got '", o.split, "'"));
  }
  if (o.limit < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--limit must be >= 0, got ", o.limit));
  }
  if (o.state_dir.empty()) {
    return absl::InvalidArgumentError("--state_dir must be set");
  }
  return ValidateDataConfig(o.data, "data.");
}

// The cached model's spec, with a clear error when there is none.
absl::StatusOr<v1::ModelSpecProto> CachedSpec(const ModelCache& cache) {
  absl::StatusOr<v1::ModelSpecProto> spec = cache.GetSpec();
  if (spec.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(absl::StrCat(
        "no model spec in ", cache.state_dir(),
        " (the agent has not joined a federation with this state_dir yet)"));
  }
  return spec;
}

// Builds the cached model's network, checked against `set`.
absl::StatusOr<std::unique_ptr<ml::TorchTrainer>> LoadNet(
    const v1::ModelSpecProto& spec, const std::string& archive,
    const ModelState& weights, const Dataset& set) {
  ml::TorchTrainerOptions options;
  ASSIGN_OR_RETURN(options.model, ToModelSpec(spec, set, archive));
  options.train = &set;
  absl::StatusOr<std::unique_ptr<ml::TorchTrainer>> trainer =
      ml::TorchTrainer::Create(options);
  if (!trainer.ok()) {
    return Annotate(trainer.status(), "the data does not fit the model");
  }
  RETURN_IF_ERROR(ml::ImportState(weights, (*trainer)->net()));
  return trainer;
}

}  // namespace

absl::StatusOr<int64_t> NumLocalExamples(const v1::AgentConfig& c,
                                         const LoadedData& data) {
  ASSIGN_OR_RETURN(std::vector<int64_t> indices,
                   LocalIndices(c, data, v1::JoinResponse()));
  return indices.empty() ? data.train.num_examples()
                         : static_cast<int64_t>(indices.size());
}

absl::Status KeepOwnPartition(const v1::AgentConfig& c, LoadedData& data) {
  if (c.partition_index() < 0 || data.partitioned) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<int64_t> indices,
                   LocalIndices(c, data, v1::JoinResponse()));
  const std::vector<int64_t> test_indices =
      LocalTestIndices(c, data, v1::JoinResponse());
  // The whole sets' buffers are freed as they are replaced.
  if (!indices.empty()) data.train = Subset(data.train, indices);
  if (!test_indices.empty()) data.test = Subset(data.test, test_indices);
  data.partitioned = true;
  return absl::OkStatus();
}

TrainerFactory MakeTorchTrainerFactory(const v1::AgentConfig& config,
                                       const LoadedData& data,
                                       ArchiveResolver archives) {
  return [&config, &data,
          archives = std::move(archives)](const v1::JoinResponse& join) {
    return MakeTrainer(config, data, join, archives);
  };
}

std::vector<std::string> TrainableArchitectures(bool archives) {
  std::vector<std::string> names = ml::ZooNames();
  if (archives) names.push_back("torchscript");
  return names;
}

void SetTorchThreads(int num_threads) {
  at::set_num_threads(std::max(1, num_threads));
}

absl::StatusOr<PredictSummary> Predict(const PredictOptions& o,
                                       std::FILE* out) {
  RETURN_IF_ERROR(CheckPredictOptions(o));
  SetTorchThreads(o.num_threads);
  ModelCacheOptions cache_options;
  cache_options.state_dir = o.state_dir;
  cache_options.read_only = true;
  ASSIGN_OR_RETURN(auto cache, ModelCache::Open(cache_options));
  ASSIGN_OR_RETURN(v1::ModelSpecProto spec, CachedSpec(*cache));
  ASSIGN_OR_RETURN(CachedModel cached, cache->Latest());
  if (o.verifier != nullptr) {
    RETURN_IF_ERROR(Annotate(
        o.verifier->Verify(cached.version, spec, cached.sha256_hex,
                           cached.signature),
        absl::StrCat("refusing the cached model in ", o.state_dir, "/models")));
  }
  ASSIGN_OR_RETURN(LoadedData data, LoadData(o.data));
  if (data.used_fallback) FEDGE_LOG(WARNING) << data.description;
  const bool use_train = o.split == "train" || data.test.num_examples() == 0;
  const Dataset& set = use_train ? data.train : data.test;
  ASSIGN_OR_RETURN(auto trainer,
                   LoadNet(spec, o.torchscript_path,
                           StripScaffoldTensors(std::move(cached.model)), set));
  const int64_t n =
      o.limit > 0 ? std::min(o.limit, set.num_examples()) : set.num_examples();
  ASSIGN_OR_RETURN(std::vector<int64_t> predicted,
                   Classify(trainer->net(), set, n));
  PredictSummary summary;
  summary.model_version = cached.version;
  summary.model_sha256 = cached.sha256_hex;
  summary.num_examples = n;
  int64_t correct = 0;
  absl::FPrintF(out, "index\tpredicted\tlabel\n");
  for (int64_t i = 0; i < n; ++i) {
    absl::FPrintF(out, "%d\t%d\t%d\n", i, predicted[i], set.labels[i]);
    correct += predicted[i] == set.labels[i] ? 1 : 0;
  }
  summary.accuracy = n > 0 ? static_cast<double>(correct) / n : 0.0;
  return summary;
}

}  // namespace fedge
