#include "common/secagg/quantization.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace fedge::secagg {

absl::StatusOr<Quantizer> Quantizer::Create(
    const QuantizationOptions& options) {
  if (options.max_clients < 1 || options.max_clients > kMaxQuantizedInputs) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_clients must be in [1, ", kMaxQuantizedInputs,
                     "], got ", options.max_clients));
  }
  if (!std::isfinite(options.max_abs_value) || options.max_abs_value <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_abs_value must be finite and > 0, got ", options.max_abs_value));
  }
  const double n = options.max_clients;
  const double scale = (2147483647.0 - n) / (n * options.max_abs_value);
  if (!(scale > 0) || !std::isfinite(scale)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_abs_value ", options.max_abs_value, " gives no usable scale"));
  }
  return Quantizer(options.max_abs_value, scale);
}

uint32_t Quantizer::QuantizeOne(float x) const {
  const double c = max_abs_value_;
  const double clipped = x > c ? c : (x < -c ? -c : static_cast<double>(x));
  const int64_t q = static_cast<int64_t>(std::nearbyint(clipped * scale_));
  return static_cast<uint32_t>(q);
}

absl::Status Quantizer::Quantize(absl::Span<const float> in,
                                 absl::Span<uint32_t> out) const {
  FEDGE_CHECK(in.size() == out.size())
      << "Quantize: " << in.size() << " inputs, " << out.size() << " outputs";
  for (size_t i = 0; i < in.size(); ++i) {
    if (std::isnan(in[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("input element ", i, " is NaN"));
    }
    out[i] = QuantizeOne(in[i]);
  }
  return absl::OkStatus();
}

void Quantizer::Dequantize(absl::Span<const uint32_t> sum,
                           absl::Span<float> out) const {
  FEDGE_CHECK(sum.size() == out.size())
      << "Dequantize: " << sum.size() << " inputs, " << out.size()
      << " outputs";
  const double inv = 1.0 / scale_;
  for (size_t i = 0; i < sum.size(); ++i) {
    out[i] = static_cast<float>(static_cast<int32_t>(sum[i]) * inv);
  }
}

}  // namespace fedge::secagg
