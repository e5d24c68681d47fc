// Adaptive server optimizers of Reddi et al. 2021, "Adaptive Federated
// Optimization" (Algorithm 2): FedAdagrad, FedAdam and FedYogi.
//
// Each round the mean client delta Δ (new local model minus global model,
// averaged) is a pseudo-gradient, and every float32 coordinate is updated:
//   m = β1·m + (1 − β1)·Δ
//   v = v + Δ²                               (Adagrad)
//   v = β2·v + (1 − β2)·Δ²                   (Adam)
//   v = v − (1 − β2)·Δ²·sign(v − Δ²)         (Yogi)
//   x = x + η·m / (√v + τ)
// as in the paper: β1 applies to every kind (β1 = 0 gives the paper's
// plain Adagrad), β2 is unused by Adagrad, and there is no bias correction
// (Flower's FedAdam adds one; the paper's algorithm has none).
//
// Initial state: m = 0 and v = τ². Algorithm 2 takes v₋₁ ≥ τ² as input;
// τ² is the smallest allowed value, so v carries no assumed history. With
// v₋₁ = 0 instead (Flower's choice) the first step is η·(1−β1)/√(1−β2)·
// sign(Δ) (= η·sign(Δ) with the defaults) for every coordinate however
// small its Δ, whereas from τ² a coordinate with |Δ| ≪ τ moves in
// proportion to Δ: τ is the "degree of adaptivity" the paper tunes. It is
// also TensorFlow Addons' Yogi default (ε = 1e-3, initial v = 1e-6).
//
// m and v are stored as float32 tensors (the model's float32 tensors, in
// order); each step computes in float64 and rounds the results. int64
// tensors (counters) are not optimizer parameters: Step leaves them
// unchanged in `global` and the caller sets them (e.g. to the aggregated
// maxima, as FedAvgStrategy does).
//
// State persists across coordinator restarts with SaveState() /
// RestoreState(); a restored optimizer continues bit-identically.
//
// Not thread-safe (m and v are state); one per coordinator, like
// FedAvgStrategy. Non-copyable.
#ifndef FEDGE_COMMON_SERVER_OPTIMIZER_H_
#define FEDGE_COMMON_SERVER_OPTIMIZER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor_buffer.h"

namespace fedge {

class AdaptiveServerOptimizer {
 public:
  // Which second-moment rule. Values are stable: they appear in saved state.
  enum class Kind : uint8_t { kAdagrad = 1, kAdam = 2, kYogi = 3 };

  // Defaults: β1 = 0.9 and β2 = 0.99 are the values the paper uses in its
  // experiments (and Flower's defaults). τ = 1e-3 and η = 1e-2 are Flower's
  // FedYogi defaults (current Flower uses τ = 1e-3 for FedAdam and
  // FedAdagrad too; older Flower's FedAdam τ = 1e-9 with v₋₁ = 0 makes the
  // first steps sign-like) and lie inside the paper's tuning grids. The
  // best η depends on the task: tune it first.
  struct Options {
    Kind kind = Kind::kAdam;
    double learning_rate = 1e-2;  // η: server learning rate; finite, > 0.
    double beta1 = 0.9;           // Momentum decay; in [0, 1).
    double beta2 = 0.99;  // Second-moment decay; in [0, 1). Unused by Adagrad.
    double tau = 1e-3;    // τ: adaptivity; finite, > 0. Also v's start, τ².
  };

  // OK when every field is in range; otherwise INVALID_ARGUMENT naming the
  // field and its range (e.g. "beta2 must be in [0, 1), got 1").
  static absl::Status Validate(const Options& options);

  // A fresh optimizer (m = 0, v = τ², no step taken). INVALID_ARGUMENT as
  // Validate().
  static absl::StatusOr<std::unique_ptr<AdaptiveServerOptimizer>> Create(
      const Options& options);

  AdaptiveServerOptimizer(const AdaptiveServerOptimizer&) = delete;
  AdaptiveServerOptimizer& operator=(const AdaptiveServerOptimizer&) = delete;

  // One server step: updates m and v from `mean_delta` and moves the
  // float32 tensors of `global`; int64 tensors of `global` are unchanged.
  // The first step fixes the model the state belongs to.
  // INVALID_ARGUMENT, with `global` and the state unchanged, when
  // mean_delta's schema differs from global's, mean_delta holds a
  // non-finite value, or global's float32 tensors differ from those of the
  // model the state was built for.
  absl::Status Step(const ModelState& mean_delta, ModelState& global);
  // OK when every moment is finite (and v >= 0): a step on a huge but
  // finite delta can overflow them in float32. DATA_LOSS naming the tensor
  // otherwise.
  absl::Status CheckState() const;

  // The state (kind, step count, m, v) as bytes, for RestoreState:
  //   magic "FEDGEAOS", uint32 version (1), uint8 kind, int64 step_count,
  //   uint64 m_len, m as EncodeModel (model_codec.h), uint64 v_len, v,
  // little-endian. Before the first step m and v are encoded empty.
  std::string SaveState() const;

  // Replaces the state with one saved by SaveState() for a model with
  // `schema`. On error nothing changes:
  //   DATA_LOSS         the bytes are truncated, corrupt or not a saved
  //                     state (bad magic, version, sizes or encodings,
  //                     trailing bytes, non-finite m, negative or
  //                     non-finite v);
  //   INVALID_ARGUMENT  a well-formed state that does not fit: saved by
  //                     another kind, or m/v not shaped like `schema`'s
  //                     float32 tensors.
  absl::Status RestoreState(absl::string_view bytes, const ModelSchema& schema);

  // Number of successful Step() calls (including restored ones).
  int64_t step_count() const { return step_count_; }
  const Options& options() const { return options_; }

 private:
  explicit AdaptiveServerOptimizer(const Options& options)
      : options_(options) {}

  Options options_;
  int64_t step_count_ = 0;
  // First and second moments, one float32 tensor per float32 tensor of the
  // model; empty until the first Step().
  ModelState m_;
  ModelState v_;
};

// "adagrad", "adam" or "yogi".
const char* ServerOptimizerKindName(AdaptiveServerOptimizer::Kind kind);

}  // namespace fedge

#endif  // FEDGE_COMMON_SERVER_OPTIMIZER_H_
