#include "common/server_optimizer.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/little_endian.h"
#include "common/logging.h"
#include "common/model_codec.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

using Kind = AdaptiveServerOptimizer::Kind;

constexpr char kMagic[] = "FEDGEAOS";
constexpr size_t kMagicBytes = 8;
constexpr uint32_t kVersion = 1;
// Magic, version, kind, step_count.
constexpr size_t kHeaderBytes = kMagicBytes + 4 + 1 + 8;

bool IsValidKind(int value) {
  return value == static_cast<int>(Kind::kAdagrad) ||
         value == static_cast<int>(Kind::kAdam) ||
         value == static_cast<int>(Kind::kYogi);
}

// The float32 entries of `schema`, in order: the shape of m and v.
ModelSchema Float32Schema(const ModelSchema& schema) {
  ModelSchema out;
  for (const TensorSpec& spec : schema) {
    if (spec.dtype == DType::kFloat32) out.push_back(spec);
  }
  return out;
}

// A model with `schema` whose every value is `value`.
ModelState Filled(const ModelSchema& schema, float value) {
  ModelState out;
  for (const TensorSpec& spec : schema) {
    absl::StatusOr<TensorBuffer> t =
        TensorBuffer::Uninitialized(spec.name, spec.dtype, spec.shape);
    // The spec comes from an existing tensor, so it is valid.
    FEDGE_CHECK(t.ok()) << t.status();
    absl::Span<float> v = t->mutable_floats();
    std::fill(v.begin(), v.end(), value);
    out.Add(*std::move(t));
  }
  return out;
}

double Sign(double x) { return (x > 0) - (x < 0); }

// One step over one tensor: see the header for the rule. Templated on the
// kind so that the element loop has no branch on it.
template <Kind kKind>
void StepTensor(const AdaptiveServerOptimizer::Options& options,
                absl::Span<const float> delta, absl::Span<float> m,
                absl::Span<float> v, absl::Span<float> x) {
  const double beta1 = options.beta1;
  const double beta2 = options.beta2;
  const double eta = options.learning_rate;
  const double tau = options.tau;
  const size_t size = delta.size();
  for (size_t j = 0; j < size; ++j) {
    const double d = delta[j];
    const double d2 = d * d;
    const double mj = beta1 * m[j] + (1 - beta1) * d;
    double vj = v[j];
    if constexpr (kKind == Kind::kAdagrad) {
      vj += d2;
    } else if constexpr (kKind == Kind::kAdam) {
      vj = beta2 * vj + (1 - beta2) * d2;
    } else {
      vj -= (1 - beta2) * d2 * Sign(vj - d2);
    }
    m[j] = static_cast<float>(mj);
    v[j] = static_cast<float>(vj);
    x[j] = static_cast<float>(x[j] + eta * mj / (std::sqrt(vj) + tau));
  }
}

// DATA_LOSS unless every value of m is finite and every value of v finite
// and >= 0.
absl::Status CheckMoments(const ModelState& m, const ModelState& v) {
  for (size_t i = 0; i < m.size(); ++i) {
    for (float x : m.tensor(i).floats()) {
      if (!std::isfinite(x)) {
        return absl::DataLossError(absl::StrCat(
            "optimizer state: m of '", m.tensor(i).name(), "' holds ", x));
      }
    }
    for (float x : v.tensor(i).floats()) {
      if (!std::isfinite(x) || x < 0) {
        return absl::DataLossError(
            absl::StrCat("optimizer state: v of '", v.tensor(i).name(),
                         "' holds ", x, "; must be finite and >= 0"));
      }
    }
  }
  return absl::OkStatus();
}

// Reads the next uint64-length-prefixed model encoding from `*in`, moving
// past it. DATA_LOSS when it is truncated or does not decode.
absl::StatusOr<ModelState> ReadModel(absl::string_view* in,
                                     absl::string_view what,
                                     const DecodeLimits& limits) {
  if (in->size() < 8) {
    return absl::DataLossError(
        absl::StrCat("optimizer state truncated before the size of ", what));
  }
  const uint64_t len = ReadLE(in->data(), 8);
  in->remove_prefix(8);
  if (len > in->size()) {
    return absl::DataLossError(absl::StrCat("optimizer state truncated: ", what,
                                            " needs ", len, " bytes, ",
                                            in->size(), " remain"));
  }
  absl::StatusOr<ModelState> model = DecodeModel(in->substr(0, len), limits);
  if (!model.ok()) {
    return absl::DataLossError(
        absl::StrCat("optimizer state: ", what,
                     " does not decode: ", model.status().message()));
  }
  in->remove_prefix(len);
  return model;
}

}  // namespace

const char* ServerOptimizerKindName(Kind kind) {
  switch (kind) {
    case Kind::kAdagrad:
      return "adagrad";
    case Kind::kAdam:
      return "adam";
    case Kind::kYogi:
      return "yogi";
  }
  return "unknown";
}

absl::Status AdaptiveServerOptimizer::Validate(const Options& options) {
  if (!IsValidKind(static_cast<int>(options.kind))) {
    return absl::InvalidArgumentError(
        absl::StrCat("kind must be adagrad, adam or yogi, got ",
                     static_cast<int>(options.kind)));
  }
  if (!(std::isfinite(options.learning_rate) && options.learning_rate > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "learning_rate must be finite and > 0, got ", options.learning_rate));
  }
  if (!(options.beta1 >= 0 && options.beta1 < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("beta1 must be in [0, 1), got ", options.beta1));
  }
  if (!(options.beta2 >= 0 && options.beta2 < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("beta2 must be in [0, 1), got ", options.beta2));
  }
  if (!(std::isfinite(options.tau) && options.tau > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tau must be finite and > 0, got ", options.tau));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<AdaptiveServerOptimizer>>
AdaptiveServerOptimizer::Create(const Options& options) {
  RETURN_IF_ERROR(Validate(options));
  return std::unique_ptr<AdaptiveServerOptimizer>(
      new AdaptiveServerOptimizer(options));
}

absl::Status AdaptiveServerOptimizer::Step(const ModelState& mean_delta,
                                           ModelState& global) {
  RETURN_IF_ERROR(Annotate(CheckSameSchema(global, mean_delta), "mean_delta"));
  RETURN_IF_ERROR(Annotate(CheckFinite(mean_delta), "mean_delta"));
  const ModelSchema float_schema = Float32Schema(SchemaOf(global));
  if (step_count_ == 0) {
    m_ = Filled(float_schema, 0.0f);
    v_ = Filled(float_schema, static_cast<float>(options_.tau * options_.tau));
  } else {
    RETURN_IF_ERROR(Annotate(CheckSchema(float_schema, m_),
                             "the optimizer state is for another model"));
  }
  size_t k = 0;  // Index into m_ and v_.
  for (size_t i = 0; i < global.size(); ++i) {
    TensorBuffer& x = global.mutable_tensor(i);
    if (x.dtype() != DType::kFloat32) continue;
    absl::Span<const float> d = mean_delta.tensor(i).floats();
    absl::Span<float> m = m_.mutable_tensor(k).mutable_floats();
    absl::Span<float> v = v_.mutable_tensor(k).mutable_floats();
    switch (options_.kind) {
      case Kind::kAdagrad:
        StepTensor<Kind::kAdagrad>(options_, d, m, v, x.mutable_floats());
        break;
      case Kind::kAdam:
        StepTensor<Kind::kAdam>(options_, d, m, v, x.mutable_floats());
        break;
      case Kind::kYogi:
        StepTensor<Kind::kYogi>(options_, d, m, v, x.mutable_floats());
        break;
    }
    ++k;
  }
  ++step_count_;
  return absl::OkStatus();
}

std::string AdaptiveServerOptimizer::SaveState() const {
  std::string out;
  out.reserve(kHeaderBytes + 16 + EncodedSize(m_) + EncodedSize(v_));
  out.append(kMagic, kMagicBytes);
  AppendLE(&out, kVersion, 4);
  AppendLE(&out, static_cast<uint8_t>(options_.kind), 1);
  AppendLE(&out, static_cast<uint64_t>(step_count_), 8);
  std::string chunk;
  for (const ModelState* model : {&m_, &v_}) {
    AppendLE(&out, static_cast<uint64_t>(EncodedSize(*model)), 8);
    ModelEncoder encoder(*model);
    while (encoder.Next(&chunk)) out.append(chunk);
  }
  return out;
}

absl::Status AdaptiveServerOptimizer::RestoreState(absl::string_view bytes,
                                                   const ModelSchema& schema) {
  if (bytes.size() < kHeaderBytes) {
    return absl::DataLossError(
        absl::StrCat("optimizer state truncated: ", bytes.size(),
                     " bytes, the header alone is ", kHeaderBytes));
  }
  if (bytes.substr(0, kMagicBytes) != absl::string_view(kMagic, kMagicBytes)) {
    return absl::DataLossError("not an optimizer state (bad magic)");
  }
  const uint64_t version = ReadLE(bytes.data() + kMagicBytes, 4);
  if (version != kVersion) {
    return absl::DataLossError(
        absl::StrCat("unsupported optimizer state version ", version));
  }
  const int kind = static_cast<uint8_t>(bytes[kMagicBytes + 4]);
  if (!IsValidKind(kind)) {
    return absl::DataLossError(
        absl::StrCat("optimizer state has unknown kind ", kind));
  }
  if (kind != static_cast<int>(options_.kind)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "optimizer state was saved by ",
        ServerOptimizerKindName(static_cast<Kind>(kind)),
        ", this optimizer is ", ServerOptimizerKindName(options_.kind)));
  }
  const int64_t step_count =
      static_cast<int64_t>(ReadLE(bytes.data() + kMagicBytes + 5, 8));
  if (step_count < 0) {
    return absl::DataLossError(
        absl::StrCat("optimizer state has step count ", step_count));
  }

  const ModelSchema float_schema = Float32Schema(schema);
  DecodeLimits limits;
  limits.max_tensors =
      std::max<int64_t>(limits.max_tensors, float_schema.size());
  absl::string_view rest = bytes.substr(kHeaderBytes);
  ASSIGN_OR_RETURN(ModelState m, ReadModel(&rest, "m", limits));
  ASSIGN_OR_RETURN(ModelState v, ReadModel(&rest, "v", limits));
  if (!rest.empty()) {
    return absl::DataLossError(absl::StrCat("optimizer state has ", rest.size(),
                                            " bytes after its end"));
  }
  if (step_count == 0) {
    if (m.size() != 0 || v.size() != 0) {
      return absl::DataLossError(
          "optimizer state has moments but no step was taken");
    }
  } else {
    RETURN_IF_ERROR(
        Annotate(CheckSchema(float_schema, m), "optimizer state m"));
    RETURN_IF_ERROR(
        Annotate(CheckSchema(float_schema, v), "optimizer state v"));
    RETURN_IF_ERROR(CheckMoments(m, v));
  }
  step_count_ = step_count;
  m_ = std::move(m);
  v_ = std::move(v);
  return absl::OkStatus();
}

absl::Status AdaptiveServerOptimizer::CheckState() const {
  return CheckMoments(m_, v_);
}

}  // namespace fedge
