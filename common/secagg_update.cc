#include "common/secagg_update.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

absl::Status Bad(const char* field, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("strategy.secure_aggregation.", field, ": ", what));
}

bool Finite(double x) { return std::isfinite(x); }

}  // namespace

int64_t SecAggVectorLength(const ModelSchema& schema) {
  int64_t n = 0;
  for (const TensorSpec& t : schema) {
    if (t.dtype != DType::kFloat32) continue;
    int64_t e = 1;
    for (int64_t d : t.shape) e *= d;
    n += e;
  }
  return n + kSecAggScalars;
}

SecureAggregationOptions ResolveWeightUnit(
    const SecureAggregationOptions& options, int64_t max_examples) {
  SecureAggregationOptions o = options;
  if (o.weight_unit <= 0) {
    o.weight_unit = max_examples > 0 ? static_cast<double>(max_examples) : 1000;
  }
  return o;
}

int SecAggThreshold(const SecureAggregationOptions& options, int num_agents) {
  const bool sparse =
      options.neighbors > 0 && num_agents > options.neighbors + 1;
  const int neighbourhood = sparse ? options.neighbors + 1 : num_agents;
  // The protocol needs 2t > |N| (no server collects both secrets of one
  // agent); a lower configured threshold is raised to that.
  return std::max(options.threshold, neighbourhood / 2 + 1);
}

absl::StatusOr<secagg::SecAggConfig> SecAggSessionConfig(
    const SecureAggregationOptions& options, std::string session_id,
    int num_agents, int64_t vector_length) {
  if (num_agents < 2) {
    return Bad("enabled",
               absl::StrCat("a round with secure aggregation needs at least 2 "
                            "agents, this one has ",
                            num_agents));
  }
  secagg::SecAggConfig c;
  c.session_id = std::move(session_id);
  c.num_clients = num_agents;
  c.neighbors = options.neighbors > 0 && num_agents > options.neighbors + 1
                    ? options.neighbors
                    : 0;
  c.threshold = SecAggThreshold(options, num_agents);
  c.vector_length = vector_length;
  c.max_abs_value = options.clip_range;
  const int neighbourhood = c.neighbors > 0 ? c.neighbors + 1 : num_agents;
  if (c.threshold > neighbourhood) {
    return Bad(
        "threshold",
        absl::StrCat(c.threshold, " exceeds the ", neighbourhood,
                     " agents of a neighbourhood in this round of ", num_agents,
                     " agents; lower it or select more "
                     "agents"));
  }
  if (absl::Status s = secagg::ValidateConfig(c); !s.ok()) {
    return Bad("enabled", absl::StrCat("this round of ", num_agents,
                                       " agents cannot run it: ", s.message()));
  }
  return c;
}

absl::StatusOr<SecAggInput> SecAggInput::Prepare(
    const SecureAggregationOptions& options, const StrategyOptions& strategy,
    const FitResult& result) {
  if (result.delta == nullptr) {
    return absl::InvalidArgumentError("update without a delta");
  }
  const double n = result.num_examples;
  const UpdateWeights w = UpdateSumWeights(strategy, n, result.num_steps);
  if (!(w.weight > 0) || !Finite(w.weight) || !Finite(w.work)) {
    return absl::InvalidArgumentError(
        absl::StrCat("update weight must be finite and > 0, got ", w.weight));
  }
  if (!Finite(result.metrics.loss) || !Finite(result.metrics.accuracy)) {
    return absl::InvalidArgumentError("training metrics are not finite");
  }
  const double u = options.weight_unit;
  if (!(u > 0)) {
    return absl::InvalidArgumentError(
        "weight_unit must be > 0 here (resolve an automatic one with "
        "ResolveWeightUnit)");
  }
  const float scale = static_cast<float>(w.weight / u);
  const float c = static_cast<float>(options.clip_range);
  SecAggInput in;
  for (TensorBuffer& t : result.delta->mutable_tensors()) {
    if (t.dtype() != DType::kFloat32) continue;
    for (float& v : t.mutable_floats()) {
      v *= scale;
      in.clipped_ += (v > c) | (v < -c);
    }
  }
  in.delta_ = result.delta;
  in.scalars_ = {static_cast<float>(w.weight / u), static_cast<float>(n / u),
                 static_cast<float>(n * w.work / kSecAggWorkUnit / u),
                 static_cast<float>(n * result.metrics.loss / u),
                 static_cast<float>(n * result.metrics.accuracy / u)};
  for (float v : in.scalars_) in.clipped_ += (v > c) | (v < -c);
  return in;
}

std::vector<absl::Span<const float>> SecAggInput::pieces() const {
  std::vector<absl::Span<const float>> out;
  for (const TensorBuffer& t : delta_->tensors()) {
    if (t.dtype() == DType::kFloat32) out.push_back(t.floats());
  }
  out.push_back(absl::MakeConstSpan(scalars_));
  return out;
}

FitSum SecAggSum::fit() const {
  FitSum f;
  f.weighted_delta_sum = &weighted_delta_sum;
  f.total_weight = total_weight;
  f.examples = examples;
  f.work = work;
  f.num_updates = num_updates;
  return f;
}

absl::StatusOr<SecAggSum> DecodeSecAggSum(
    const SecureAggregationOptions& options, const ModelState& global,
    absl::Span<const float> sum, int64_t num_updates) {
  const int64_t length = SecAggVectorLength(SchemaOf(global));
  if (static_cast<int64_t>(sum.size()) != length) {
    return absl::InvalidArgumentError(
        absl::StrCat("the secure sum has ", sum.size(),
                     " elements, the model needs ", length));
  }
  const double u = options.weight_unit;
  if (!(u > 0)) {
    return absl::InvalidArgumentError(
        "weight_unit must be > 0 here (resolve an automatic one with "
        "ResolveWeightUnit)");
  }
  SecAggSum out;
  size_t at = 0;
  for (const TensorBuffer& g : global.tensors()) {
    if (g.dtype() != DType::kFloat32) {
      out.weighted_delta_sum.Add(g.Clone());
      continue;
    }
    ASSIGN_OR_RETURN(TensorBuffer t, TensorBuffer::Uninitialized(
                                         g.name(), DType::kFloat32, g.shape()));
    absl::Span<float> o = t.mutable_floats();
    for (size_t j = 0; j < o.size(); ++j) {
      o[j] = static_cast<float>(sum[at + j] * u);
    }
    at += o.size();
    out.weighted_delta_sum.Add(std::move(t));
  }
  const absl::Span<const float> s = sum.subspan(at);
  out.total_weight = s[0] * u;
  out.examples = s[1] * u;
  out.work = s[2] * u * kSecAggWorkUnit;
  out.loss_sum = s[3] * u;
  out.accuracy_sum = s[4] * u;
  out.num_updates = num_updates;
  if (!(out.total_weight > 0) || !(out.examples > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the secure sum's weight (", out.total_weight,
                     ") and examples (", out.examples, ") must be > 0"));
  }
  return out;
}

}  // namespace fedge
