#include "common/ml/model_cost.h"

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

// Spatial size of a feature map.
struct Hw {
  int64_t h, w;
};

// Output size of a convolution or pooling window (floor mode).
Hw Window(Hw in, int64_t kernel, int64_t stride, int64_t padding) {
  return {(in.h + 2 * padding - kernel) / stride + 1,
          (in.w + 2 * padding - kernel) / stride + 1};
}

// Collects the layers of one network in registration order.
class Plan {
 public:
  void Linear(std::string name, int64_t in, int64_t out) {
    ModelLayer layer;
    layer.kind = ModelLayer::Kind::kLinear;
    layer.name = std::move(name);
    layer.in = in;
    layer.out = out;
    layers_.push_back(std::move(layer));
  }
  // A k x k convolution on a `size` input; returns the output size.
  Hw Conv(std::string name, int64_t in, int64_t out, int64_t kernel,
          int64_t stride, int64_t padding, int64_t groups, bool bias, Hw size) {
    const Hw out_size = Window(size, kernel, stride, padding);
    ModelLayer layer;
    layer.kind = ModelLayer::Kind::kConv;
    layer.name = std::move(name);
    layer.in = in;
    layer.out = out;
    layer.kernel = kernel;
    layer.stride = stride;
    layer.padding = padding;
    layer.groups = groups;
    layer.bias = bias;
    layer.out_height = out_size.h;
    layer.out_width = out_size.w;
    layers_.push_back(std::move(layer));
    return out_size;
  }
  // A bias-free convolution followed by "<name>_bn".
  Hw ConvBn(const std::string& name, int64_t in, int64_t out, int64_t kernel,
            int64_t stride, int64_t groups, Hw size) {
    const Hw out_size =
        Conv(name, in, out, kernel, stride, kernel / 2, groups, false, size);
    BatchNorm(name + "_bn", out);
    return out_size;
  }
  void BatchNorm(std::string name, int64_t channels) {
    ModelLayer layer;
    layer.kind = ModelLayer::Kind::kBatchNorm;
    layer.name = std::move(name);
    layer.in = layer.out = channels;
    layer.bias = false;
    layers_.push_back(std::move(layer));
  }
  std::vector<ModelLayer> Finish() && { return std::move(layers_); }

 private:
  std::vector<ModelLayer> layers_;
};

void Mlp(Plan& p, int64_t in, const std::vector<int64_t>& hidden, int64_t out) {
  int64_t prev = in;
  for (size_t i = 0; i <= hidden.size(); ++i) {
    const int64_t next = i < hidden.size() ? hidden[i] : out;
    p.Linear(absl::StrCat("fc", i + 1), prev, next);
    prev = next;
  }
}

// conv 5x5 (same) 32, pool 2, conv 5x5 (same) 64, pool 2, fc 512, fc.
void FedAvgCnn(Plan& p, const ModelSpec& s, Hw size) {
  const int64_t c = s.input_shape[0];
  size = Window(p.Conv("conv1", c, 32, 5, 1, 2, 1, true, size), 2, 2, 0);
  size = Window(p.Conv("conv2", 32, 64, 5, 1, 2, 1, true, size), 2, 2, 0);
  p.Linear("fc1", size.h * size.w * 64, 512);
  p.Linear("fc2", 512, s.num_classes);
}

void MobileCnn(Plan& p, const ModelSpec& s, Hw size) {
  size = p.ConvBn("stem", s.input_shape[0], 16, 3, 2, 1, size);
  const int64_t widths[] = {16, 32, 64, 128};
  for (int i = 0; i < 3; ++i) {
    const int64_t c = widths[i];
    size =
        p.ConvBn(absl::StrCat("dw", i + 1), c, c, 3, i == 0 ? 1 : 2, c, size);
    size = p.ConvBn(absl::StrCat("pw", i + 1), c, widths[i + 1], 1, 1, 1, size);
  }
  p.Linear("fc", 128, s.num_classes);
}

void MobileNetV2(Plan& p, const ModelSpec& s, Hw size) {
  const MobileNetV2Layout layout = MobileNetV2LayoutOf(s);
  size = p.ConvBn("stem", s.input_shape[0], layout.stem, 3, 1, 1, size);
  for (size_t i = 0; i < layout.blocks.size(); ++i) {
    const InvertedResidualBlock& b = layout.blocks[i];
    const std::string name = absl::StrCat("block", i + 1, ".");
    const int64_t hidden = b.in * b.expansion;
    if (b.expansion != 1)
      p.ConvBn(name + "expand", b.in, hidden, 1, 1, 1, size);
    size = p.ConvBn(name + "dw", hidden, hidden, 3, b.stride, hidden, size);
    p.ConvBn(name + "project", hidden, b.out, 1, 1, 1, size);
  }
  p.ConvBn("head", layout.blocks.back().out, layout.head, 1, 1, 1, size);
  p.Linear("fc", layout.head, s.num_classes);
}

void ShuffleNetV2(Plan& p, const ModelSpec& s, Hw size) {
  const ShuffleNetV2Layout layout = ShuffleNetV2LayoutOf(s);
  size = p.ConvBn("stem", s.input_shape[0], layout.stem, 3, 1, 1, size);
  for (size_t i = 0; i < layout.units.size(); ++i) {
    const ShuffleUnit& u = layout.units[i];
    const std::string name = absl::StrCat("unit", i + 1, ".");
    const int64_t half = u.out / 2;
    if (u.stride == 2) {
      p.ConvBn(name + "branch1_dw", u.in, u.in, 3, 2, u.in, size);
      p.ConvBn(name + "branch1_pw", u.in, half, 1, 1, 1, Window(size, 3, 2, 1));
    }
    const int64_t in = u.stride == 2 ? u.in : half;
    p.ConvBn(name + "branch2_pw1", in, half, 1, 1, 1, size);
    size = p.ConvBn(name + "branch2_dw", half, half, 3, u.stride, half, size);
    p.ConvBn(name + "branch2_pw2", half, half, 1, 1, 1, size);
  }
  p.ConvBn("head", layout.units.back().out, layout.head, 1, 1, 1, size);
  p.Linear("fc", layout.head, s.num_classes);
}

void SqueezeNet(Plan& p, const ModelSpec& s, Hw size) {
  const SqueezeNetLayout layout = SqueezeNetLayoutOf(s);
  size = p.ConvBn("stem", s.input_shape[0], layout.stem, 3, 1, 1, size);
  for (size_t i = 0; i < layout.fires.size(); ++i) {
    const FireModule& f = layout.fires[i];
    const std::string name = absl::StrCat("fire", i + 1, ".");
    if (f.pool_before) size = Window(size, 3, 2, 1);
    p.ConvBn(name + "squeeze", f.in, f.squeeze, 1, 1, 1, size);
    p.ConvBn(name + "expand1x1", f.squeeze, f.expand, 1, 1, 1, size);
    p.ConvBn(name + "expand3x3", f.squeeze, f.expand, 3, 1, 1, size);
  }
  p.Conv("classifier", 2 * layout.fires.back().expand, s.num_classes, 1, 1, 0,
         1, true, size);
}

// The product of `factors`; nullopt when it overflows int64.
std::optional<int64_t> Product(std::initializer_list<int64_t> factors) {
  int64_t product = 1;
  for (int64_t f : factors) {
    if (__builtin_mul_overflow(product, f, &product)) return std::nullopt;
  }
  return product;
}

// a + b; nullopt when either is nullopt or the sum overflows int64.
std::optional<int64_t> Sum(std::optional<int64_t> a, std::optional<int64_t> b) {
  int64_t sum = 0;
  if (!a.has_value() || !b.has_value() ||
      __builtin_add_overflow(*a, *b, &sum)) {
    return std::nullopt;
  }
  return sum;
}

// ModelLayer::parameters() and macs(), or nullopt when they overflow.
std::optional<int64_t> CheckedParameters(const ModelLayer& l) {
  const int64_t bias = l.bias ? l.out : 0;
  switch (l.kind) {
    case ModelLayer::Kind::kLinear:
      return Sum(Product({l.in, l.out}), bias);
    case ModelLayer::Kind::kConv:
      return Sum(Product({l.out, l.in / l.groups, l.kernel, l.kernel}), bias);
    case ModelLayer::Kind::kBatchNorm:
      return Product({2, l.out});
  }
  return 0;
}

std::optional<int64_t> CheckedMacs(const ModelLayer& l) {
  switch (l.kind) {
    case ModelLayer::Kind::kLinear:
      return Product({l.in, l.out});
    case ModelLayer::Kind::kConv:
      return Product({l.out, l.out_height, l.out_width, l.in / l.groups,
                      l.kernel, l.kernel});
    case ModelLayer::Kind::kBatchNorm:
      return 0;
  }
  return 0;
}

// The layers of `spec`, which passed CheckModelSpec but for (when called
// from CheckModelSize) the layers' sizes: the input's dimensions and
// element count, hidden widths and classes are already bounded, so the
// planning arithmetic cannot overflow.
std::vector<ModelLayer> PlanLayers(const ModelSpec& spec) {
  const std::string& arch = spec.architecture;
  const auto& shape = spec.input_shape;
  int64_t in = 1;
  for (int64_t d : shape) in *= d;
  const Hw size = shape.size() == 3 ? Hw{shape[1], shape[2]} : Hw{1, 1};
  Plan p;
  if (arch == "logreg") {
    Mlp(p, in, {}, spec.num_classes);
  } else if (arch == "2nn") {
    Mlp(p, in, {200, 200}, spec.num_classes);
  } else if (arch == "mlp") {
    Mlp(p, in, spec.hidden_units, spec.num_classes);
  } else if (arch == "cnn") {
    FedAvgCnn(p, spec, size);
  } else if (arch == "mobile_cnn") {
    MobileCnn(p, spec, size);
  } else if (arch == "mobilenet_v2") {
    MobileNetV2(p, spec, size);
  } else if (arch == "shufflenet_v2") {
    ShuffleNetV2(p, spec, size);
  } else {
    SqueezeNet(p, spec, size);
  }
  return std::move(p).Finish();
}

}  // namespace

int64_t ModelLayer::parameters() const {
  const std::optional<int64_t> n = CheckedParameters(*this);
  FEDGE_CHECK(n.has_value()) << name << ": the parameter count overflows";
  return *n;
}

int64_t ModelLayer::macs() const {
  const std::optional<int64_t> n = CheckedMacs(*this);
  FEDGE_CHECK(n.has_value()) << name << ": the MAC count overflows";
  return *n;
}

absl::Status CheckModelSize(const ModelSpec& spec) {
  int64_t elements = 1;
  for (int64_t d : spec.input_shape) {
    if (d < 1 || __builtin_mul_overflow(elements, d, &elements) ||
        elements > kMaxInputElements) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input_shape needs dimensions >= 1 and at most ", kMaxInputElements,
          " elements, got [", absl::StrJoin(spec.input_shape, ","), "]"));
    }
  }
  constexpr int64_t kMaxWidth = std::numeric_limits<int32_t>::max();
  for (int64_t h : spec.hidden_units) {
    if (h < 1 || h > kMaxWidth) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hidden_units must be in [1, ", kMaxWidth, "], got ", h));
    }
  }
  if (spec.num_classes > kMaxWidth) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_classes must be at most ", kMaxWidth, ", got ", spec.num_classes));
  }
  std::optional<int64_t> parameters = 0, macs = 0;
  for (const ModelLayer& layer : PlanLayers(spec)) {
    parameters = Sum(parameters, CheckedParameters(layer));
    macs = Sum(macs, CheckedMacs(layer));
  }
  if (!parameters.has_value() || !macs.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", spec.architecture, "' on input [",
                     absl::StrJoin(spec.input_shape, ","),
                     "] is too large: its parameter or multiply-accumulate "
                     "count overflows 64 bits"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ModelLayer>> ModelLayers(const ModelSpec& spec) {
  RETURN_IF_ERROR(CheckModelSpec(spec));
  return PlanLayers(spec);
}

absl::StatusOr<ModelCost> ComputeModelCost(const ModelSpec& spec) {
  ASSIGN_OR_RETURN(const std::vector<ModelLayer> layers, ModelLayers(spec));
  ModelCost cost;
  for (const ModelLayer& layer : layers) {
    cost.parameters += layer.parameters();
    cost.macs += layer.macs();
  }
  return cost;
}

}  // namespace fedge::ml
