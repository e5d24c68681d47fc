#include "common/aggregation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/vectorize.h"

namespace fedge {
namespace {

// sum[j] += w * in[j]: every update's values are folded here.
FEDGE_VECTOR_CLONES
void AddScaledToSums(const float* in, double w, double* sum, size_t n) {
  for (size_t j = 0; j < n; ++j) sum[j] += w * in[j];
}

// sum[j] = w * in[j]: the first update of a round (the sums are stale).
FEDGE_VECTOR_CLONES
void ScaledToSums(const float* in, double w, double* sum, size_t n) {
  for (size_t j = 0; j < n; ++j) sum[j] = w * in[j];
}

// out[j] = base[j] + sum[j] * factor, rounded to float (out may be base).
FEDGE_VECTOR_CLONES
void BasePlusScaledSums(const float* base, const double* sum, double factor,
                        float* out, size_t n) {
  for (size_t j = 0; j < n; ++j) {
    out[j] = static_cast<float>(base[j] + sum[j] * factor);
  }
}

}  // namespace

WeightedMeanAccumulator::WeightedMeanAccumulator(const ModelState& schema)
    : schema_(SchemaOf(schema)) {
  sums_.resize(schema.size());
  maxima_.resize(schema.size());
  for (size_t i = 0; i < schema.size(); ++i) {
    const TensorBuffer& t = schema.tensor(i);
    if (t.dtype() == DType::kFloat32) {
      sums_[i].assign(t.num_elements(), 0.0);
    } else {
      maxima_[i].assign(t.num_elements(), std::numeric_limits<int64_t>::min());
    }
  }
}

absl::Status WeightedMeanAccumulator::Validate(const ModelState& update,
                                               double weight) const {
  if (!std::isfinite(weight) || weight <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("update weight must be finite and > 0, got ", weight));
  }
  RETURN_IF_ERROR(CheckSchema(schema_, update));
  return CheckFinite(update);
}

absl::Status WeightedMeanAccumulator::Add(const ModelState& update,
                                          double weight) {
  RETURN_IF_ERROR(Validate(update, weight));
  AddValidated(update, weight);
  return absl::OkStatus();
}

void WeightedMeanAccumulator::AddValidated(const ModelState& update,
                                           double weight) {
  for (size_t i = 0; i < update.size(); ++i) {
    const TensorBuffer& t = update.tensor(i);
    if (t.dtype() == DType::kFloat32) {
      absl::Span<const float> in = t.floats();
      if (num_updates_ == 0) {
        ScaledToSums(in.data(), weight, sums_[i].data(), in.size());
      } else {
        AddScaledToSums(in.data(), weight, sums_[i].data(), in.size());
      }
    } else {
      absl::Span<const int64_t> in = t.int64s();
      int64_t* mx = maxima_[i].data();
      for (size_t j = 0; j < in.size(); ++j) mx[j] = std::max(mx[j], in[j]);
    }
  }
  ++num_updates_;
  total_weight_ += weight;
}

absl::Status WeightedMeanAccumulator::AddWeightedSum(
    const ModelState& weighted_sum, double total_weight, int64_t num_updates) {
  if (num_updates <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("a sum must hold > 0 updates, got ", num_updates));
  }
  RETURN_IF_ERROR(Validate(weighted_sum, total_weight));
  for (size_t i = 0; i < weighted_sum.size(); ++i) {
    const TensorBuffer& t = weighted_sum.tensor(i);
    if (t.dtype() == DType::kFloat32) {
      absl::Span<const float> in = t.floats();
      if (num_updates_ == 0) {
        ScaledToSums(in.data(), 1.0, sums_[i].data(), in.size());
      } else {
        AddScaledToSums(in.data(), 1.0, sums_[i].data(), in.size());
      }
    } else {
      absl::Span<const int64_t> in = t.int64s();
      int64_t* mx = maxima_[i].data();
      for (size_t j = 0; j < in.size(); ++j) mx[j] = std::max(mx[j], in[j]);
    }
  }
  num_updates_ += num_updates;
  total_weight_ += total_weight;
  return absl::OkStatus();
}

absl::StatusOr<ModelState> WeightedMeanAccumulator::Mean() const {
  if (num_updates_ == 0) {
    return absl::FailedPreconditionError("no update was added");
  }
  ModelState out;
  for (size_t i = 0; i < schema_.size(); ++i) {
    const TensorSpec& spec = schema_[i];
    ASSIGN_OR_RETURN(TensorBuffer t,
                     TensorBuffer::Zeros(spec.name, spec.dtype, spec.shape));
    if (spec.dtype == DType::kFloat32) {
      absl::Span<float> o = t.mutable_floats();
      const double* sum = sums_[i].data();
      for (size_t j = 0; j < o.size(); ++j) {
        o[j] = static_cast<float>(sum[j] / total_weight_);
      }
    } else {
      std::copy(maxima_[i].begin(), maxima_[i].end(),
                t.mutable_int64s().begin());
    }
    out.Add(std::move(t));
  }
  return out;
}

absl::Status WeightedMeanAccumulator::AddMeanTo(ModelState& target,
                                                double scale) const {
  if (num_updates_ == 0) {
    return absl::FailedPreconditionError("no update was added");
  }
  RETURN_IF_ERROR(CheckSchema(schema_, target));
  const double factor = scale / total_weight_;
  for (size_t i = 0; i < schema_.size(); ++i) {
    TensorBuffer& t = target.mutable_tensor(i);
    if (t.dtype() == DType::kFloat32) {
      absl::Span<float> o = t.mutable_floats();
      BasePlusScaledSums(o.data(), sums_[i].data(), factor, o.data(), o.size());
    } else {
      std::copy(maxima_[i].begin(), maxima_[i].end(),
                t.mutable_int64s().begin());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelState> WeightedMeanAccumulator::MeanPlus(
    const ModelState& base, double scale) const {
  if (num_updates_ == 0) {
    return absl::FailedPreconditionError("no update was added");
  }
  RETURN_IF_ERROR(CheckSchema(schema_, base));
  const double factor = scale / total_weight_;
  ModelState out;
  for (size_t i = 0; i < schema_.size(); ++i) {
    const TensorSpec& spec = schema_[i];
    ASSIGN_OR_RETURN(TensorBuffer t, TensorBuffer::Uninitialized(
                                         spec.name, spec.dtype, spec.shape));
    if (spec.dtype == DType::kFloat32) {
      absl::Span<float> o = t.mutable_floats();
      BasePlusScaledSums(base.tensor(i).floats().data(), sums_[i].data(),
                         factor, o.data(), o.size());
    } else {
      std::copy(maxima_[i].begin(), maxima_[i].end(),
                t.mutable_int64s().begin());
    }
    out.Add(std::move(t));
  }
  return out;
}

void WeightedMeanAccumulator::Reset() {
  for (auto& m : maxima_) {
    std::fill(m.begin(), m.end(), std::numeric_limits<int64_t>::min());
  }
  num_updates_ = 0;
  total_weight_ = 0.0;
}

}  // namespace fedge
