#include "common/dp.h"

#include <cmath>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/tensor_buffer.h"

namespace fedge {
namespace {

// Applied to the clipping scale so that float32 rounding (relative error
// 2^-24 per element) cannot push the clipped norm above the bound.
constexpr double kClipSafetyFactor = 1.0 - 0x1.0p-20;

bool IsPositiveFinite(double x) { return x > 0.0 && std::isfinite(x); }

}  // namespace

absl::Status DpFedAvgOptions::Validate() const {
  if (!IsPositiveFinite(clip_norm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip_norm must be > 0 and finite, got ", clip_norm));
  }
  if (!IsPositiveFinite(noise_multiplier)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "noise_multiplier must be > 0 and finite, got ", noise_multiplier));
  }
  return absl::OkStatus();
}

double NoiseStddev(const DpFedAvgOptions& options) {
  const absl::Status valid = options.Validate();
  FEDGE_CHECK(valid.ok()) << valid;
  return options.noise_multiplier * options.clip_norm;
}

double MeanNoiseStddev(const DpFedAvgOptions& options,
                       int64_t expected_agents) {
  FEDGE_CHECK(expected_agents >= 1)
      << "expected_agents must be >= 1, got " << expected_agents;
  return NoiseStddev(options) / static_cast<double>(expected_agents);
}

double L2Norm(const ModelState& state) {
  double sum_squares = 0.0;
  for (const TensorBuffer& t : state.tensors()) {
    if (t.dtype() != DType::kFloat32) continue;
    for (float v : t.floats()) {
      sum_squares += static_cast<double>(v) * static_cast<double>(v);
    }
  }
  return std::sqrt(sum_squares);
}

double ClipUpdate(ModelState& delta, double clip_norm) {
  FEDGE_CHECK(IsPositiveFinite(clip_norm))
      << "clip_norm must be > 0 and finite, got " << clip_norm;
  const double norm = L2Norm(delta);
  if (norm <= clip_norm) return norm;
  const double scale =
      std::isfinite(norm) ? clip_norm / norm * kClipSafetyFactor : 0.0;
  for (TensorBuffer& t : delta.mutable_tensors()) {
    if (t.dtype() != DType::kFloat32) continue;
    for (float& v : t.mutable_floats()) {
      // 0 * Inf would be NaN: a non-finite update becomes all zeros.
      v = scale == 0.0 ? 0.0f : static_cast<float>(v * scale);
    }
  }
  return norm;
}

void AddGaussianNoise(ModelState& x, double stddev, uint64_t seed) {
  FEDGE_CHECK(stddev >= 0.0 && std::isfinite(stddev))
      << "stddev must be >= 0 and finite, got " << stddev;
  if (stddev == 0.0) return;
  DeterministicRng rng(seed);
  for (TensorBuffer& t : x.mutable_tensors()) {
    if (t.dtype() != DType::kFloat32) continue;
    for (float& v : t.mutable_floats()) {
      v = static_cast<float>(static_cast<double>(v) + stddev * rng.Normal());
    }
  }
}

}  // namespace fedge
