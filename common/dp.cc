#include "common/dp.h"

#include <cmath>
#include <cstdint>
#include <random>

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
  if (!(delta > 0.0 && delta < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta must be in (0, 1), got ", delta));
  }
  if (!(max_epsilon >= 0.0 && std::isfinite(max_epsilon))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_epsilon must be >= 0 and finite (0 = no budget), got ",
        max_epsilon));
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

void PrivatizeUpdate(ModelState& delta, double clip_norm, double noise_stddev,
                     uint64_t seed) {
  FEDGE_CHECK(clip_norm >= 0.0 && std::isfinite(clip_norm))
      << "clip_norm must be >= 0 and finite, got " << clip_norm;
  if (clip_norm > 0.0) ClipUpdate(delta, clip_norm);
  AddGaussianNoise(delta, noise_stddev, seed);
}

uint64_t SecretSeed() {
  std::random_device device;
  // random_device yields 32 bits at a time.
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

}  // namespace fedge
