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
  return std::make_shared<MobileCnn>(s[0], spec.num_classes);
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
