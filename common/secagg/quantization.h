// Fixed-point quantization of float32 inputs into the ring Z_{2^32}, in
// which secure aggregation adds masked inputs, and back.
//
// With at most N inputs summed (max_clients) and every element clipped to
// [-C, C] (max_abs_value), the scale is
//     scale = (2^31 - 1 - N) / (N C)          ring units per 1.0
// and an element x becomes q = round_half_even(clip(x, -C, C) * scale)
// mod 2^32. Then |q| <= C scale + 1/2, so any sum of up to N such q lies in
// [-(2^31 - 1), 2^31 - 1]: read as a two's-complement int32 the ring sum IS
// the integer sum, never wrapped. Dequantize divides that int32 by scale.
//
// Precision: each element is off by at most 1 / (2 scale) after rounding, so
// for k <= N inputs
//     |Dequantize(sum) - sum_i clip(x_i)| <= k / (2 scale) + ulp
// (ulp: float32 rounding of the result, at most |result| * 2^-24). Relative
// to C the step is about N / 2^31: e.g. N = 100, C = 1 gives a step of
// 4.7e-8 and a sum error of at most 2.3e-6 per element. The caller chooses
// C: values beyond it are clipped (a bias), so pick it from a norm bound
// (e.g. the DP clip norm) or the largest weighted update expected.
//
// Thread-safe (immutable after Create).
#ifndef FEDGE_COMMON_SECAGG_QUANTIZATION_H_
#define FEDGE_COMMON_SECAGG_QUANTIZATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fedge::secagg {

// Largest max_clients a Quantizer accepts (the step is then ~2^-11 C).
inline constexpr int kMaxQuantizedInputs = 1 << 20;

struct QuantizationOptions {
  // N: the most inputs that will ever be summed. 1..kMaxQuantizedInputs.
  int max_clients = 1;
  // C: elements are clipped to [-C, C]. Finite, > 0.
  double max_abs_value = 1.0;
};

class Quantizer {
 public:
  // INVALID_ARGUMENT naming the bad option.
  static absl::StatusOr<Quantizer> Create(const QuantizationOptions& options);

  // Ring units per 1.0 (see above).
  double scale() const { return scale_; }
  // The bound on |Dequantize(sum of k inputs) - sum of the clipped inputs|
  // per element, without the final float32 rounding: k / (2 scale).
  double MaxSumError(int k) const { return k / (2.0 * scale_); }

  // out[i] = q(in[i]) (see above); in and out have the same size (checked).
  // INVALID_ARGUMENT naming the index of the first NaN (out then partly
  // written). Infinities clip to +-C.
  absl::Status Quantize(absl::Span<const float> in,
                        absl::Span<uint32_t> out) const;
  // One element.
  uint32_t QuantizeOne(float x) const;

  // out[i] = int32(sum[i]) / scale, same sizes (checked).
  void Dequantize(absl::Span<const uint32_t> sum, absl::Span<float> out) const;

 private:
  Quantizer(double max_abs_value, double scale)
      : max_abs_value_(max_abs_value), scale_(scale) {}

  double max_abs_value_;
  double scale_;
};

}  // namespace fedge::secagg

#endif  // FEDGE_COMMON_SECAGG_QUANTIZATION_H_
