#include "common/ml/model_zoo.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ml/torch_status.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

int64_t Product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t d : v) p *= d;
  return p;
}

// Linear layers with ReLU between them; flattens its input.
class Mlp : public Net {
 public:
  Mlp(int64_t in, const std::vector<int64_t>& hidden, int64_t out) {
    int64_t prev = in;
    for (size_t i = 0; i <= hidden.size(); ++i) {
      const int64_t next = i < hidden.size() ? hidden[i] : out;
      layers_.push_back(register_module(absl::StrCat("fc", i + 1),
                                        torch::nn::Linear(prev, next)));
      prev = next;
    }
  }
  torch::Tensor forward(torch::Tensor x) override {
    x = x.flatten(1);
    for (size_t i = 0; i < layers_.size(); ++i) {
      x = layers_[i]->forward(x);
      if (i + 1 < layers_.size()) x = torch::relu(x);
    }
    return x;
  }

 private:
  std::vector<torch::nn::Linear> layers_;
};

// The FedAvg paper's CNN.
class FedAvgCnn : public Net {
 public:
  FedAvgCnn(int64_t channels, int64_t h, int64_t w, int64_t classes)
      : conv1_(register_module(
            "conv1",
            torch::nn::Conv2d(
                torch::nn::Conv2dOptions(channels, 32, 5).padding(2)))),
        conv2_(register_module(
            "conv2",
            torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 5).padding(2)))),
        fc1_(register_module("fc1",
                             torch::nn::Linear((h / 4) * (w / 4) * 64, 512))),
        fc2_(register_module("fc2", torch::nn::Linear(512, classes))) {}

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::max_pool2d(torch::relu(conv1_->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2_->forward(x)), 2);
    x = torch::relu(fc1_->forward(x.flatten(1)));
    return fc2_->forward(x);
  }

 private:
  torch::nn::Conv2d conv1_, conv2_;
  torch::nn::Linear fc1_, fc2_;
};

// Depthwise-separable CNN: a 3x3 stem, then three blocks of depthwise 3x3 +
// pointwise 1x1 with batch norm, global average pooling, one linear layer.
class MobileCnn : public Net {
 public:
  MobileCnn(int64_t channels, int64_t classes) {
    stem_ = register_module(
        "stem", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, 16, 3)
                                      .stride(2)
                                      .padding(1)
                                      .bias(false)));
    stem_bn_ = register_module("stem_bn", torch::nn::BatchNorm2d(16));
    const int64_t widths[] = {16, 32, 64, 128};
    for (int i = 0; i < 3; ++i) {
      auto dw =
          torch::nn::Conv2d(torch::nn::Conv2dOptions(widths[i], widths[i], 3)
                                .stride(i == 0 ? 1 : 2)
                                .padding(1)
                                .groups(widths[i])
                                .bias(false));
      auto pw = torch::nn::Conv2d(
          torch::nn::Conv2dOptions(widths[i], widths[i + 1], 1).bias(false));
      depthwise_.push_back(register_module(absl::StrCat("dw", i + 1), dw));
      dw_bn_.push_back(register_module(absl::StrCat("dw", i + 1, "_bn"),
                                       torch::nn::BatchNorm2d(widths[i])));
      pointwise_.push_back(register_module(absl::StrCat("pw", i + 1), pw));
      pw_bn_.push_back(register_module(absl::StrCat("pw", i + 1, "_bn"),
                                       torch::nn::BatchNorm2d(widths[i + 1])));
    }
    fc_ = register_module("fc", torch::nn::Linear(128, classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(stem_bn_->forward(stem_->forward(x)));
    for (size_t i = 0; i < depthwise_.size(); ++i) {
      x = torch::relu(dw_bn_[i]->forward(depthwise_[i]->forward(x)));
      x = torch::relu(pw_bn_[i]->forward(pointwise_[i]->forward(x)));
    }
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc_->forward(x);
  }

 private:
  torch::nn::Conv2d stem_{nullptr};
  torch::nn::BatchNorm2d stem_bn_{nullptr};
  std::vector<torch::nn::Conv2d> depthwise_, pointwise_;
  std::vector<torch::nn::BatchNorm2d> dw_bn_, pw_bn_;
  torch::nn::Linear fc_{nullptr};
};

// A bias-free convolution with 'same'-style padding (kernel / 2) and its
// batch norm, registered in `parent` as `name` and `name`_bn.
class ConvBn {
 public:
  ConvBn() = default;
  ConvBn(torch::nn::Module& parent, const std::string& name, int64_t in,
         int64_t out, int64_t kernel, int64_t stride, int64_t groups)
      : conv_(parent.register_module(
            name, torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                                        .stride(stride)
                                        .padding(kernel / 2)
                                        .groups(groups)
                                        .bias(false)))),
        bn_(parent.register_module(name + "_bn", torch::nn::BatchNorm2d(out))) {
  }

  torch::Tensor operator()(const torch::Tensor& x) {
    return bn_->forward(conv_->forward(x));
  }
  explicit operator bool() const { return !conv_.is_empty(); }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
};

torch::Tensor Relu6(const torch::Tensor& x) { return torch::hardtanh(x, 0, 6); }

torch::Tensor GlobalAveragePool(const torch::Tensor& x) {
  return torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
}

// MobileNetV2's inverted residual: expand (1x1, ReLU6), depthwise 3x3
// (ReLU6), linear 1x1 projection, plus the input when shapes allow.
class InvertedResidual : public torch::nn::Module {
 public:
  explicit InvertedResidual(const InvertedResidualBlock& b)
      : residual_(b.stride == 1 && b.in == b.out) {
    const int64_t hidden = b.in * b.expansion;
    if (b.expansion != 1) {
      expand_ = ConvBn(*this, "expand", b.in, hidden, 1, 1, 1);
    }
    dw_ = ConvBn(*this, "dw", hidden, hidden, 3, b.stride, hidden);
    project_ = ConvBn(*this, "project", hidden, b.out, 1, 1, 1);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = expand_ ? Relu6(expand_(x)) : x;
    y = project_(Relu6(dw_(y)));
    return residual_ ? x + y : y;
  }

 private:
  const bool residual_;
  ConvBn expand_, dw_, project_;
};

// A small MobileNetV2 (Sandler et al. 2018) for 28x28 to 32x32 inputs; see
// MobileNetV2LayoutOf (model_spec.h).
class MobileNetV2 : public Net {
 public:
  explicit MobileNetV2(const ModelSpec& spec) {
    const MobileNetV2Layout layout = MobileNetV2LayoutOf(spec);
    stem_ = ConvBn(*this, "stem", spec.input_shape[0], layout.stem, 3, 1, 1);
    for (size_t i = 0; i < layout.blocks.size(); ++i) {
      blocks_.push_back(register_module(
          absl::StrCat("block", i + 1),
          std::make_shared<InvertedResidual>(layout.blocks[i])));
    }
    head_ =
        ConvBn(*this, "head", layout.blocks.back().out, layout.head, 1, 1, 1);
    fc_ =
        register_module("fc", torch::nn::Linear(layout.head, spec.num_classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = Relu6(stem_(x));
    for (const auto& block : blocks_) x = block->forward(x);
    return fc_->forward(GlobalAveragePool(Relu6(head_(x))));
  }

 private:
  ConvBn stem_, head_;
  std::vector<std::shared_ptr<InvertedResidual>> blocks_;
  torch::nn::Linear fc_{nullptr};
};

// [N, C, H, W] with its C channels viewed as [groups, C / groups],
// transposed.
torch::Tensor ChannelShuffle(const torch::Tensor& x, int64_t groups) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  return x.view({n, groups, c / groups, h, w})
      .transpose(1, 2)
      .contiguous()
      .view({n, c, h, w});
}

// A ShuffleNet V2 unit. Stride 1: split the channels in halves, transform
// the second (1x1, depthwise 3x3, 1x1), concatenate, shuffle. Stride 2:
// branch 1 (depthwise 3x3, 1x1) and branch 2 (as above) both see the whole
// input; concatenate, shuffle.
class ShuffleV2Unit : public torch::nn::Module {
 public:
  explicit ShuffleV2Unit(const ShuffleUnit& u) : stride_(u.stride) {
    const int64_t half = u.out / 2;
    if (u.stride == 2) {
      branch1_dw_ = ConvBn(*this, "branch1_dw", u.in, u.in, 3, 2, u.in);
      branch1_pw_ = ConvBn(*this, "branch1_pw", u.in, half, 1, 1, 1);
    }
    const int64_t in = u.stride == 2 ? u.in : half;
    branch2_pw1_ = ConvBn(*this, "branch2_pw1", in, half, 1, 1, 1);
    branch2_dw_ = ConvBn(*this, "branch2_dw", half, half, 3, u.stride, half);
    branch2_pw2_ = ConvBn(*this, "branch2_pw2", half, half, 1, 1, 1);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor kept, transformed;
    if (stride_ == 1) {
      std::vector<torch::Tensor> halves = x.chunk(2, 1);
      kept = halves[0];
      transformed = halves[1];
    } else {
      kept = torch::relu(branch1_pw_(branch1_dw_(x)));
      transformed = x;
    }
    transformed = torch::relu(branch2_pw1_(transformed));
    transformed = torch::relu(branch2_pw2_(branch2_dw_(transformed)));
    return ChannelShuffle(torch::cat({kept, transformed}, 1), 2);
  }

 private:
  const int64_t stride_;
  ConvBn branch1_dw_, branch1_pw_, branch2_pw1_, branch2_dw_, branch2_pw2_;
};

// A small ShuffleNet V2 (Ma et al. 2018); see ShuffleNetV2LayoutOf.
class ShuffleNetV2 : public Net {
 public:
  explicit ShuffleNetV2(const ModelSpec& spec) {
    const ShuffleNetV2Layout layout = ShuffleNetV2LayoutOf(spec);
    stem_ = ConvBn(*this, "stem", spec.input_shape[0], layout.stem, 3, 1, 1);
    for (size_t i = 0; i < layout.units.size(); ++i) {
      units_.push_back(
          register_module(absl::StrCat("unit", i + 1),
                          std::make_shared<ShuffleV2Unit>(layout.units[i])));
    }
    head_ =
        ConvBn(*this, "head", layout.units.back().out, layout.head, 1, 1, 1);
    fc_ =
        register_module("fc", torch::nn::Linear(layout.head, spec.num_classes));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(stem_(x));
    for (const auto& unit : units_) x = unit->forward(x);
    return fc_->forward(GlobalAveragePool(torch::relu(head_(x))));
  }

 private:
  ConvBn stem_, head_;
  std::vector<std::shared_ptr<ShuffleV2Unit>> units_;
  torch::nn::Linear fc_{nullptr};
};

// SqueezeNet's fire module: squeeze 1x1, then expand 1x1 and 3x3 side by
// side, concatenated; batch norm and ReLU after each convolution.
class Fire : public torch::nn::Module {
 public:
  explicit Fire(const FireModule& f)
      : squeeze_(*this, "squeeze", f.in, f.squeeze, 1, 1, 1),
        expand1x1_(*this, "expand1x1", f.squeeze, f.expand, 1, 1, 1),
        expand3x3_(*this, "expand3x3", f.squeeze, f.expand, 3, 1, 1) {}

  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor s = torch::relu(squeeze_(x));
    return torch::cat({torch::relu(expand1x1_(s)), torch::relu(expand3x3_(s))},
                      1);
  }

 private:
  ConvBn squeeze_, expand1x1_, expand3x3_;
};

// A small SqueezeNet 1.1 (Iandola et al. 2016); see SqueezeNetLayoutOf.
// Unlike the original it has batch norm after every convolution but the
// classifier (without it, this 14-layer plain network did not train at
// usual learning rates), no dropout and no ReLU on the class scores (which
// can silence a class for good).
class SqueezeNet : public Net {
 public:
  explicit SqueezeNet(const ModelSpec& spec) {
    const SqueezeNetLayout layout = SqueezeNetLayoutOf(spec);
    stem_ = ConvBn(*this, "stem", spec.input_shape[0], layout.stem, 3, 1, 1);
    for (size_t i = 0; i < layout.fires.size(); ++i) {
      fires_.push_back(
          register_module(absl::StrCat("fire", i + 1),
                          std::make_shared<Fire>(layout.fires[i])));
      pool_before_.push_back(layout.fires[i].pool_before);
    }
    classifier_ = register_module(
        "classifier",
        torch::nn::Conv2d(torch::nn::Conv2dOptions(
            2 * layout.fires.back().expand, spec.num_classes, 1)));
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = torch::relu(stem_(x));
    for (size_t i = 0; i < fires_.size(); ++i) {
      if (pool_before_[i]) x = torch::max_pool2d(x, 3, 2, 1);
      x = fires_[i]->forward(x);
    }
    return GlobalAveragePool(classifier_->forward(x));
  }

 private:
  ConvBn stem_;
  std::vector<std::shared_ptr<Fire>> fires_;
  std::vector<bool> pool_before_;
  torch::nn::Conv2d classifier_{nullptr};
};

absl::StatusOr<std::shared_ptr<Net>> Build(const ModelSpec& spec) {
  const std::string& arch = spec.architecture;
  const int64_t in = Product(spec.input_shape);
  const auto& s = spec.input_shape;
  if (arch == "logreg") {
    return std::make_shared<Mlp>(in, std::vector<int64_t>{}, spec.num_classes);
  }
  if (arch == "2nn") {
    return std::make_shared<Mlp>(in, std::vector<int64_t>{200, 200},
                                 spec.num_classes);
  }
  if (arch == "mlp") {
    return std::make_shared<Mlp>(in, spec.hidden_units, spec.num_classes);
  }
  if (arch == "cnn") {
    return std::make_shared<FedAvgCnn>(s[0], s[1], s[2], spec.num_classes);
  }
  if (arch == "mobile_cnn") {
    return std::make_shared<MobileCnn>(s[0], spec.num_classes);
  }
  if (arch == "mobilenet_v2") return std::make_shared<MobileNetV2>(spec);
  if (arch == "shufflenet_v2") return std::make_shared<ShuffleNetV2>(spec);
  return std::make_shared<SqueezeNet>(spec);
}

}  // namespace

absl::StatusOr<std::shared_ptr<Net>> BuildModel(const ModelSpec& spec) {
  RETURN_IF_ERROR(CheckModelSpec(spec));
  return CallTorch([&]() -> absl::StatusOr<std::shared_ptr<Net>> {
    torch::manual_seed(spec.init_seed);
    return Build(spec);
  });
}

int64_t CountParameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace fedge::ml
