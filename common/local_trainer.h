// LocalTrainer: the interface between federated logic (simulator, agent) and
// the ML framework. Implementations train a model on local examples starting
// from a global model and return the delta (local minus global); the core
// never sees LibTorch. common/ml/torch_trainer.h is the LibTorch one; tests
// use fakes.
//
// An implementation is bound to its local data at construction; examples are
// named by index into that data. Not thread-safe: give each thread its own.
#ifndef FEDGE_COMMON_LOCAL_TRAINER_H_
#define FEDGE_COMMON_LOCAL_TRAINER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/tensor_buffer.h"
#include "common/update_codec.h"

namespace fedge {

struct TrainContinuation;

// What to do in one round of local training.
struct TrainPlan {
  int epochs = 1;              // Passes over the local examples (E).
  int batch_size = 10;         // Minibatch size (B).
  double learning_rate = 0.1;  // SGD step size.
  double momentum = 0.0;       // SGD momentum (buffer reset every round).
  double weight_decay = 0.0;   // L2 penalty.
  double proximal_mu = 0.0;    // FedProx term mu/2 * |w - w_global|^2.
  uint64_t seed = 0;           // Shuffling seed (derive per agent and round).
  // Stop after this many optimizer steps (0 = after `epochs` epochs): the
  // local-work cap of slow devices.
  int64_t max_steps = 0;
  // Fine-tuning a pruned model: the elements the global model holds at
  // zero (its pruning mask: common/ml/prune.h PruningMask) stay exactly
  // zero: no gradient, no momentum, no weight decay.
  bool keep_pruned = false;
  // SCAFFOLD: added to every trainable parameter's gradient at every step
  // (c - c_i: server minus agent control variate), with the model's schema
  // (tensors without gradients, e.g. running statistics, are ignored);
  // null for plain local training. Not owned.
  const ModelState* gradient_correction = nullptr;
  // How the agent sends its update (fp32, fp16, int8, top-k with error
  // feedback): not the trainer's business, part of the round's plan.
  EncodingOptions update_encoding;
  // Differential privacy (common/dp.h PrivatizeUpdate, applied to the delta
  // after training, before encoding): clip it to this L2 norm (0 = no
  // clipping) and, for local DP, add Gaussian noise of this stddev (0 =
  // none). Not the trainer's business either.
  double dp_clip_norm = 0;
  double dp_noise_stddev = 0;
  // Interruptible training (a device condition failed): asked before each
  // batch; when it answers true the trainer stops there and returns the
  // partial state (TrainOutput::interrupted). Null: never stops.
  std::function<bool()> should_stop;
  // Continues an interrupted training from where it stopped: the same
  // global model, plan (seed included) and examples must be passed again,
  // and the result is then the one training without the interruption
  // gives. Null: start from the global model. Not owned.
  const TrainContinuation* resume_from = nullptr;
};

struct TrainMetrics {
  int64_t num_examples = 0;  // Distinct local examples (FedAvg weight).
  int64_t num_steps = 0;     // Optimizer steps taken.
  double loss = 0;           // Mean training loss over all steps.
  double accuracy = 0;       // Training accuracy over all steps.
  double seconds = 0;        // Wall time of the training loop.
};

// How far a training got: the loop's position and running sums.
struct TrainProgress {
  int epoch = 0;         // The epoch in progress (0-based).
  int64_t position = 0;  // Offset in that epoch's order of the next batch.
  // That epoch's (shuffled) order of the examples; the next epoch
  // shuffles it again, as an uninterrupted training would.
  std::vector<int64_t> order;
  int64_t num_steps = 0;      // Optimizer steps taken.
  int64_t examples_seen = 0;  // Examples trained on (with repeats).
  int64_t correct = 0;        // Correct top-1 predictions among them.
  double loss_sum = 0;        // Sum of loss x batch size.
  double seconds = 0;         // Training time so far.
};

// Where an interrupted training stopped: everything needed to continue it
// exactly (TrainPlan::resume_from).
struct TrainContinuation {
  ModelState weights;   // The local model when it stopped.
  ModelState momentum;  // SGD momentum buffers by parameter name (empty
                        // without momentum or before the first step).
  TrainProgress progress;
};

struct TrainOutput {
  ModelState delta;  // Local model minus the global model it started from.
  TrainMetrics metrics;
  // TrainPlan::should_stop stopped the training: `delta` and `metrics` are
  // empty and `continuation` says where it stopped.
  bool interrupted = false;
  TrainContinuation continuation;
};

struct EvalMetrics {
  int64_t num_examples = 0;
  double loss = 0;      // Mean cross-entropy.
  double accuracy = 0;  // Fraction of correct top-1 predictions.
};

class LocalTrainer {
 public:
  virtual ~LocalTrainer() = default;

  // Trains from `global` on the local examples `indices` (all local examples
  // when empty) following `plan`. INVALID_ARGUMENT when `global` does not fit
  // the model or an index is out of range; INTERNAL when the ML framework
  // fails.
  virtual absl::StatusOr<TrainOutput> Train(
      const ModelState& global, const TrainPlan& plan,
      absl::Span<const int64_t> indices) = 0;

  // Evaluates `weights` on the trainer's evaluation set. INVALID_ARGUMENT
  // when `weights` does not fit the model; FAILED_PRECONDITION when there is
  // no evaluation set.
  virtual absl::StatusOr<EvalMetrics> Evaluate(const ModelState& weights) = 0;

  // Evaluates `weights` on the examples `indices` of the evaluation set
  // (an agent's held-out share, in simulations). INVALID_ARGUMENT for an
  // index out of range; UNIMPLEMENTED when the trainer cannot.
  virtual absl::StatusOr<EvalMetrics> EvaluateOn(
      const ModelState& weights, absl::Span<const int64_t> indices) {
    return absl::UnimplementedError("this trainer evaluates its whole set");
  }
};

}  // namespace fedge

#endif  // FEDGE_COMMON_LOCAL_TRAINER_H_
