// The agent's LibTorch side, behind torch-free declarations: the factory
// that builds a LocalTrainer (common/ml/torch_trainer.h) for the model the
// coordinator names on the agent's local data or partition, and offline
// prediction with the cached global model. The only agent code that
// includes LibTorch (in its .cc).
//
// Thread-safety: the factory is called from the agent loop's thread; the
// functions share no state.
#ifndef FEDGE_EDGE_AGENT_TORCH_SUPPORT_H_
#define FEDGE_EDGE_AGENT_TORCH_SUPPORT_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/data_source.h"
#include "common/data/dataset.h"
#include "edge_agent/agent.h"
#include "fedge/v1/config.pb.h"

namespace fedge {

// Where the TorchScript archive that the session's model names
// (architecture "torchscript", model.torchscript_sha256) lies on this
// device, fetched from the coordinator when needed; or the status to fail
// the trainer with.
using ArchiveResolver =
    std::function<absl::StatusOr<std::string>(const v1::JoinResponse& join)>;

// A TrainerFactory (agent.h) for LibTorch trainers. Local examples: the
// configured partition (config.partition_index of config.num_partitions,
// split with config.partition) when set, else the partition the
// coordinator hands out in simulation mode (JoinResponse.partition_index
// >= 0 with num_partitions > 0, index taken modulo num_partitions), else
// the whole training set. The model's input shape and classes default to
// the data's when the spec leaves them unset. A TorchScript model is
// loaded from the path `archives` gives, once the file matches the spec's
// SHA-256 and size. The factory returns INVALID_ARGUMENT when the data does
// not fit the model or the partition cannot be made; for a TorchScript
// model FAILED_PRECONDITION without `archives`, the resolver's error,
// DATA_LOSS when the file does not match the spec, and the archive's load
// errors (common/ml/torchscript_model.h). `config` and `data` must outlive
// the factory.
TrainerFactory MakeTorchTrainerFactory(const v1::AgentConfig& config,
                                       const LoadedData& data,
                                       ArchiveResolver archives = nullptr);

// Local examples reported at Join: the configured partition's size, else
// the whole training set's. INVALID_ARGUMENT when the partition cannot be
// made (e.g. more partitions than examples).
absl::StatusOr<int64_t> NumLocalExamples(const v1::AgentConfig& config,
                                         const LoadedData& data);

// With a configured partition (partition_index >= 0), keeps only that
// partition of `data` (train, and the agent's share of test) and marks it
// partitioned: an agent holding 600 of MNIST's 60,000 examples keeps 600,
// not all of them. Nothing changes otherwise (the coordinator's partition
// is known only at Join, and may change when the agent joins again).
// INVALID_ARGUMENT when the partition cannot be made.
absl::Status KeepOwnPartition(const v1::AgentConfig& config, LoadedData& data);

// Zoo architectures this build can train ("torchscript" too once the agent
// passes an ArchiveResolver to MakeTorchTrainerFactory).
// With `archives`, "torchscript" too.
std::vector<std::string> TrainableArchitectures(bool archives = false);

// LibTorch intra-op threads (at least 1).
void SetTorchThreads(int num_threads);

struct PredictOptions {
  // The agent's state directory (holds the cached model and its spec).
  std::string state_dir;
  // Examples to classify.
  v1::DataConfig data;
  // "test" (default; the train split when there is no test split) or
  // "train".
  std::string split = "test";
  // Classify at most this many examples (0 = all).
  int64_t limit = 0;
  // LibTorch threads.
  int num_threads = 1;
  // For a TorchScript model: the archive, which must match the cached
  // spec's SHA-256 and size.
  std::string torchscript_path;
  // The pinned model-signing keys: the cached model is used only when the
  // signature kept with it verifies (null: not verified). Not owned.
  const ModelVerifier* verifier = nullptr;
};

struct PredictSummary {
  int64_t model_version = -1;
  std::string model_sha256;
  int64_t num_examples = 0;
  double accuracy = 0;  // Against the examples' labels.
};

// Classifies examples with the newest cached global model, with no
// coordinator: writes "index<TAB>predicted<TAB>label" lines (after a
// header) to `out`. NOT_FOUND when state_dir holds no model or spec yet;
// INVALID_ARGUMENT for a bad split or limit, or data that does not fit the
// model; data loading errors naming the file; with a verifier,
// UNAUTHENTICATED (naming the version and why) when the newest cached
// model's signature does not verify.
absl::StatusOr<PredictSummary> Predict(const PredictOptions& options,
                                       std::FILE* out);

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_TORCH_SUPPORT_H_
