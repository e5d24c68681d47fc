#include "common/ml/torch_converters.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ml/torch_status.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

absl::StatusOr<DType> FromTorchDType(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kFloat32) return DType::kFloat32;
  if (t.scalar_type() == torch::kInt64) return DType::kInt64;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported tensor dtype ", c10::toString(t.scalar_type()),
                   " (float32 and int64 are supported)"));
}

torch::ScalarType ToTorchDType(DType d) {
  return d == DType::kFloat32 ? torch::kFloat32 : torch::kInt64;
}

absl::Status CheckFits(const TensorBuffer& b, const std::string& name,
                       const torch::Tensor& t) {
  const std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  auto dtype = FromTorchDType(t);
  if (b.name() != name || !dtype.ok() || *dtype != b.dtype() ||
      b.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state tensor ", b.DebugString(), " does not fit model tensor ", name,
        " ", dtype.ok() ? DTypeName(*dtype) : c10::toString(t.scalar_type()),
        "[", absl::StrJoin(shape, ","), "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TensorBuffer> ToTensorBuffer(const std::string& name,
                                            const torch::Tensor& tensor) {
  ASSIGN_OR_RETURN(DType dtype, FromTorchDType(tensor));
  std::vector<int64_t> shape(tensor.sizes().begin(), tensor.sizes().end());
  ASSIGN_OR_RETURN(TensorBuffer buffer,
                   TensorBuffer::Zeros(name, dtype, std::move(shape)));
  RETURN_IF_ERROR(CallTorch([&]() -> absl::Status {
    torch::Tensor src = tensor.detach().to(torch::kCPU).contiguous();
    if (buffer.num_bytes() > 0) {
      std::memcpy(buffer.mutable_data(), src.data_ptr(), buffer.num_bytes());
    }
    return absl::OkStatus();
  }));
  return buffer;
}

torch::Tensor ViewAsTensor(const TensorBuffer& buffer) {
  return torch::from_blob(
      const_cast<uint8_t*>(buffer.data()), buffer.shape(),
      torch::TensorOptions().dtype(ToTorchDType(buffer.dtype())));
}

absl::StatusOr<std::vector<torch::Tensor>> ParameterMasks(
    const std::vector<torch::Tensor>& params, const ModelState& mask) {
  std::vector<torch::Tensor> masks;
  for (size_t i = 0; i < params.size(); ++i) {
    const TensorBuffer* m = i < mask.size() ? &mask.tensor(i) : nullptr;
    if (m == nullptr || m->dtype() != DType::kFloat32 ||
        m->shape() != params[i].sizes().vec()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the pruning mask does not fit parameter #", i, " of the model"));
    }
    const absl::Span<const float> v = m->floats();
    const bool masks_something = std::find(v.begin(), v.end(), 0.0f) != v.end();
    masks.push_back(masks_something ? ViewAsTensor(*m) : torch::Tensor());
  }
  return masks;
}

void ClearGradients(std::vector<torch::Tensor>& params) {
  for (torch::Tensor& p : params) p.mutable_grad().reset();
}

void MaskedStep(torch::optim::Optimizer& optimizer,
                std::vector<torch::Tensor>& params,
                const std::vector<torch::Tensor>& masks) {
  for (size_t i = 0; i < masks.size(); ++i) {
    if (masks[i].defined() && params[i].grad().defined()) {
      params[i].grad().mul_(masks[i]);
    }
  }
  optimizer.step();
  for (size_t i = 0; i < masks.size(); ++i) {
    if (masks[i].defined()) params[i].mul_(masks[i]);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> StateTensors(
    const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : module.named_parameters())
    out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers())
    out.emplace_back(b.key(), b.value());
  return out;
}

absl::StatusOr<ModelState> ExportState(const torch::nn::Module& module) {
  ModelState state;
  for (const auto& [name, tensor] : StateTensors(module)) {
    ASSIGN_OR_RETURN(TensorBuffer b, ToTensorBuffer(name, tensor));
    state.Add(std::move(b));
  }
  return state;
}

absl::Status ImportState(const ModelState& state, torch::nn::Module& module) {
  auto tensors = StateTensors(module);
  const size_t common = std::min(tensors.size(), state.size());
  for (size_t i = 0; i < common; ++i) {
    RETURN_IF_ERROR(
        CheckFits(state.tensor(i), tensors[i].first, tensors[i].second));
  }
  if (tensors.size() != state.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state has ", state.size(), " tensors, the model ", tensors.size(),
        "; first unmatched: ",
        state.size() > common ? "state tensor " + state.tensor(common).name()
                              : "model tensor " + tensors[common].first));
  }
  return CallTorch([&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < tensors.size(); ++i) {
      tensors[i].second.copy_(ViewAsTensor(state.tensor(i)));
    }
    return absl::OkStatus();
  });
}

}  // namespace fedge::ml
