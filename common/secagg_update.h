// Secure aggregation of federated updates: what an agent masks and how the
// round's sum goes back into the strategy. The protocol itself (masks,
// shares, dropouts) is common/secagg/; this is the federated-learning glue
// both sides share: the agent (fedge-sim's virtual agents, and any real
// agent) builds its input with SecAggInput, the server turns the
// dequantized sum into a FitSum with DecodeSecAggSum (server/secagg_round.h
// drives a round's session).
//
// What an agent with n examples, weight w (UpdateSumWeights: n, or n / a
// for fednova) and local work a masks, in this order, every element divided
// by U = weight_unit:
//   w * delta         every float32 element of its delta, tensor by tensor
//                     (int64 tensors, counters, are not aggregated);
//   w, n, n * a / kSecAggWorkUnit, n * loss, n * accuracy
//                     (kSecAggScalars scalars: the strategy's total weight,
//                     examples and FedNova's work; the round's
//                     example-weighted training metrics).
// Each element is then clipped to [-clip_range, clip_range] and quantized
// (common/secagg/quantization.h). The server learns only the sums.
//
// Pure functions and value types; thread-compatible. No gRPC, no LibTorch.
#ifndef FEDGE_COMMON_SECAGG_UPDATE_H_
#define FEDGE_COMMON_SECAGG_UPDATE_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secagg/config.h"
#include "common/strategy.h"
#include "common/tensor_buffer.h"

namespace fedge {

// StrategyConfig.secure_aggregation (config.proto documents each field).
struct SecureAggregationOptions {
  bool enabled = false;
  int threshold = 0;  // At least floor(|N| / 2) + 1 (SecAggThreshold).
  int neighbors = 0;  // 0: complete graph.
  double clip_range = 10;
  // 0: automatic (ResolveWeightUnit; the config's default).
  double weight_unit = 1000;
};

// The options a round uses: an automatic weight_unit (0) becomes the
// largest example count the round's agents declared (`max_examples`; 1000
// when none did), so that no agent's weight n / U exceeds 1 and its scaled
// update stays within the clip range.
SecureAggregationOptions ResolveWeightUnit(
    const SecureAggregationOptions& options, int64_t max_examples);

// FedNova's local work is masked as n * a / kSecAggWorkUnit (n * a is often
// far beyond the examples' scale).
inline constexpr double kSecAggWorkUnit = 1000;
inline constexpr int kSecAggScalars = 5;

// The elements one agent masks for a model of `schema`.
int64_t SecAggVectorLength(const ModelSchema& schema);

// The threshold a round of `num_agents` agents uses: `options.threshold`,
// raised to floor(|N| / 2) + 1 when lower (the protocol needs 2t > |N|),
// with |N| the neighbourhood size (num_agents for the complete graph,
// neighbors + 1 for SecAgg+).
int SecAggThreshold(const SecureAggregationOptions& options, int num_agents);

// The session of one round: `num_agents` (>= 2) agents with client ids
// 1..num_agents. The SecAgg+ graph is used only when num_agents >
// neighbors + 1 (else every agent is a neighbour of every other anyway).
// INVALID_ARGUMENT (naming strategy.secure_aggregation.<field>) when the
// round cannot run with these options, e.g. too few agents for the
// threshold.
absl::StatusOr<secagg::SecAggConfig> SecAggSessionConfig(
    const SecureAggregationOptions& options, std::string session_id,
    int num_agents, int64_t vector_length);

// An agent's input: its delta scaled in place by w / U and the scalars, as
// the consecutive pieces SecAggClient::MaskInputPieces takes (no copy of
// the model).
class SecAggInput {
 public:
  // Scales *result.delta in place (it must outlive the input).
  // INVALID_ARGUMENT when the update has no delta, a weight that is not
  // finite and > 0, or metrics that are not finite.
  static absl::StatusOr<SecAggInput> Prepare(
      const SecureAggregationOptions& options, const StrategyOptions& strategy,
      const FitResult& result);

  // The float32 tensors of the scaled delta, then the scalars.
  std::vector<absl::Span<const float>> pieces() const;
  // Elements beyond the clip range (masking clips them: a bias worth a
  // warning, or a larger clip_range).
  int64_t clipped() const { return clipped_; }

 private:
  SecAggInput() = default;

  const ModelState* delta_ = nullptr;
  int64_t clipped_ = 0;
  std::array<float, kSecAggScalars> scalars_{};
};

// A round's sum in the strategy's terms.
struct SecAggSum {
  // sum_i w_i delta_i (float32 tensors); int64 tensors are the global
  // model's.
  ModelState weighted_delta_sum;
  double total_weight = 0;
  double examples = 0;
  double work = 0;
  double loss_sum = 0;      // sum_i n_i loss_i.
  double accuracy_sum = 0;  // sum_i n_i accuracy_i.
  int64_t num_updates = 0;

  // The strategy's view (points into weighted_delta_sum).
  FitSum fit() const;
};

// The dequantized `sum` of `num_updates` agents' inputs (SecAggVectorLength
// of global's schema elements) as a SecAggSum. INVALID_ARGUMENT when the
// length differs, or when the summed weight or examples are not > 0.
absl::StatusOr<SecAggSum> DecodeSecAggSum(
    const SecureAggregationOptions& options, const ModelState& global,
    absl::Span<const float> sum, int64_t num_updates);

}  // namespace fedge

#endif  // FEDGE_COMMON_SECAGG_UPDATE_H_
