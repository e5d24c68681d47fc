// TorchTrainer: the LibTorch implementation of LocalTrainer. It owns one
// network, from the zoo or a TorchScript archive (torchscript_model.h),
// and trains it with SGD (momentum, weight decay,
// optional FedProx term) on examples of a Dataset it is bound to, then
// returns the delta from the global model it started from. Training can be
// interrupted between batches (TrainPlan::should_stop) and continued
// exactly where it stopped (TrainPlan::resume_from): same order of
// examples, same momentum, same result.
//
// The datasets are not copied: they must outlive the trainer. One trainer
// per thread (the network is not thread-safe); several trainers may share
// the same datasets, which they only read.
#ifndef FEDGE_COMMON_ML_TORCH_TRAINER_H_
#define FEDGE_COMMON_ML_TORCH_TRAINER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/dataset.h"
#include "common/local_trainer.h"
#include "common/ml/model_zoo.h"

namespace fedge::ml {

struct TorchTrainerOptions {
  ModelSpec model;                 // Network to build or archive to load.
  const Dataset* train = nullptr;  // Local training examples (required).
  const Dataset* eval = nullptr;   // Evaluation examples (optional).
  int64_t eval_batch_size = 1000;  // Examples per evaluation forward pass.
};

class TorchTrainer final : public LocalTrainer {
 public:
  // INVALID_ARGUMENT when the model cannot be built or the datasets do not
  // fit it (example shape, classes); for architecture "torchscript" the
  // statuses of TorchScriptNet::Create too (e.g. NOT_FOUND: no archive).
  static absl::StatusOr<std::unique_ptr<TorchTrainer>> Create(
      TorchTrainerOptions options);

  absl::StatusOr<TrainOutput> Train(const ModelState& global,
                                    const TrainPlan& plan,
                                    absl::Span<const int64_t> indices) override;
  absl::StatusOr<EvalMetrics> Evaluate(const ModelState& weights) override;
  absl::StatusOr<EvalMetrics> EvaluateOn(
      const ModelState& weights, absl::Span<const int64_t> indices) override;

  // The network's current state (after Create: its seeded initial weights).
  absl::StatusOr<ModelState> State() const;

  Net& net() { return *net_; }

 private:
  TorchTrainer(TorchTrainerOptions options, std::shared_ptr<Net> net);
  // The examples `indices` names (all when empty), checked.
  absl::StatusOr<std::vector<int64_t>> LocalOrder(
      absl::Span<const int64_t> indices) const;
  // Runs SGD from `progress` on, updating it. Returns true when
  // plan.should_stop interrupted it (then `momentum` holds the optimizer's
  // momentum buffers), false when it finished.
  absl::StatusOr<bool> RunSgd(const ModelState& global, const TrainPlan& plan,
                              TrainProgress& progress, ModelState* momentum);
  static TrainMetrics Metrics(const TrainProgress& progress);
  // INVALID_ARGUMENT unless `c` can continue training `global` with `plan`
  // on the examples `order`.
  absl::Status CheckContinuation(const TrainContinuation& c,
                                 const ModelState& global,
                                 const TrainPlan& plan,
                                 std::vector<int64_t> order) const;
  std::vector<std::pair<std::string, torch::Tensor>> NamedParameters() const;
  // SGD's momentum buffers as "momentum.<parameter name>" tensors, and back.
  absl::StatusOr<ModelState> ExportMomentum(torch::optim::SGD& sgd) const;
  absl::Status ImportMomentum(const ModelState& momentum,
                              torch::optim::SGD& sgd) const;
  absl::StatusOr<ModelState> Delta(const ModelState& global) const;
  // Loss and accuracy of the current weights on eval examples x, y.
  absl::StatusOr<EvalMetrics> EvaluateTensors(const torch::Tensor& x,
                                              const torch::Tensor& y);

  TorchTrainerOptions options_;
  std::shared_ptr<Net> net_;
  torch::Tensor train_x_, train_y_;  // Views of options_.train.
  torch::Tensor eval_x_, eval_y_;    // Views of options_.eval (if any).
};

// A tensor [N, example_shape...] viewing the dataset's features, and an int64
// tensor [N] viewing its labels (no copies).
torch::Tensor FeaturesView(const Dataset& d);
torch::Tensor LabelsView(const Dataset& d);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_TORCH_TRAINER_H_
