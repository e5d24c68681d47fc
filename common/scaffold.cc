#include "common/scaffold.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {

ModelSchema ScaffoldSchema(const ModelSchema& model,
                           const std::string& prefix) {
  ModelSchema out;
  for (const TensorSpec& t : model) {
    if (t.dtype != DType::kFloat32) continue;
    out.push_back({prefix + t.name, DType::kFloat32, t.shape});
  }
  return out;
}

ModelState ScaffoldZeros(const ModelSchema& model, const std::string& prefix) {
  ModelState out;
  for (const TensorSpec& t : ScaffoldSchema(model, prefix)) {
    absl::StatusOr<TensorBuffer> z =
        TensorBuffer::Zeros(t.name, DType::kFloat32, t.shape);
    FEDGE_CHECK(z.ok()) << z.status();  // Shapes come from a valid model.
    out.Add(*std::move(z));
  }
  return out;
}

absl::Status SplitScaffoldDownload(ModelState download, ModelState* model,
                                   ModelState* control) {
  ModelState m, c;
  for (TensorBuffer& t : download.mutable_tensors()) {
    if (absl::StartsWith(t.name(), kScaffoldControlPrefix)) {
      c.Add(std::move(t));
    } else {
      if (c.size() > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("model tensor '", t.name(),
                         "' after the SCAFFOLD control tensors"));
      }
      m.Add(std::move(t));
    }
  }
  RETURN_IF_ERROR(
      CheckSchema(ScaffoldSchema(SchemaOf(m), kScaffoldControlPrefix), c));
  *model = std::move(m);
  *control = std::move(c);
  return absl::OkStatus();
}

ModelState StripScaffoldTensors(ModelState download) {
  ModelState out;
  for (TensorBuffer& t : download.mutable_tensors()) {
    if (!absl::StartsWith(t.name(), kScaffoldControlPrefix)) {
      out.Add(std::move(t));
    }
  }
  return out;
}

absl::StatusOr<ScaffoldClient> ScaffoldClient::Create(const ModelSchema& model,
                                                      ModelState control) {
  if (control.size() == 0) {
    control = ScaffoldZeros(model, kScaffoldControlPrefix);
  }
  RETURN_IF_ERROR(
      CheckSchema(ScaffoldSchema(model, kScaffoldControlPrefix), control));
  RETURN_IF_ERROR(CheckFinite(control));
  return ScaffoldClient(model, std::move(control));
}

absl::StatusOr<ModelState> ScaffoldClient::Correction(
    const ModelState& server_control) const {
  RETURN_IF_ERROR(CheckSameSchema(control_, server_control));
  ModelState out;
  size_t k = 0;
  for (const TensorSpec& t : model_) {
    ASSIGN_OR_RETURN(TensorBuffer corr,
                     TensorBuffer::Zeros(t.name, t.dtype, t.shape));
    if (t.dtype == DType::kFloat32) {
      absl::Span<float> o = corr.mutable_floats();
      absl::Span<const float> c = server_control.tensor(k).floats();
      absl::Span<const float> ci = control_.tensor(k).floats();
      for (size_t j = 0; j < o.size(); ++j) o[j] = c[j] - ci[j];
      ++k;
    }
    out.Add(std::move(corr));
  }
  return out;
}

absl::StatusOr<ModelState> ScaffoldClient::Finish(
    const ModelState& delta, const ModelState& server_control,
    int64_t num_steps, double learning_rate) {
  if (num_steps <= 0 || !(learning_rate > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SCAFFOLD needs num_steps > 0 and learning_rate > 0, "
                     "got ",
                     num_steps, " and ", learning_rate));
  }
  RETURN_IF_ERROR(CheckSchema(model_, delta));
  RETURN_IF_ERROR(CheckSameSchema(control_, server_control));
  const double inv = 1.0 / (static_cast<double>(num_steps) * learning_rate);
  ModelState dc = ScaffoldZeros(model_, kScaffoldDeltaPrefix);
  size_t k = 0;
  for (const TensorBuffer& d : delta.tensors()) {
    if (d.dtype() != DType::kFloat32) continue;
    absl::Span<float> out = dc.mutable_tensor(k).mutable_floats();
    absl::Span<const float> c = server_control.tensor(k).floats();
    absl::Span<const float> dd = d.floats();
    // c_i+ - c_i = -c + (x - y) / (K lr) = -c - delta / (K lr).
    for (size_t j = 0; j < out.size(); ++j) {
      out[j] = static_cast<float>(-c[j] - dd[j] * inv);
    }
    ++k;
  }
  RETURN_IF_ERROR(CheckFinite(dc));
  for (size_t t = 0; t < dc.size(); ++t) {
    absl::Span<float> ci = control_.mutable_tensor(t).mutable_floats();
    absl::Span<const float> x = dc.tensor(t).floats();
    for (size_t j = 0; j < ci.size(); ++j) ci[j] += x[j];
  }
  return dc;
}

}  // namespace fedge
