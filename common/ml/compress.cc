#include "common/ml/compress.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <functional>
#include <numeric>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/ml/model_files.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torch_status.h"
#include "common/ml/torch_trainer.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kEvalBatch = 1000;

// A batch of examples -> logits.
using Forward = std::function<torch::Tensor(const torch::Tensor&)>;
// A batch of examples and labels -> loss.
using LossFn =
    std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;

absl::Status CheckSgd(const SgdOptions& o) {
  if (o.epochs < 1 || o.batch_size < 1 || !(o.learning_rate > 0) ||
      !(o.momentum >= 0 && o.momentum < 1) || !(o.weight_decay >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training needs --epochs >= 1, --batch_size >= 1, --learning_rate > 0"
        ", --momentum in [0, 1) and --weight_decay >= 0; got epochs=",
        o.epochs, " batch_size=", o.batch_size,
        " learning_rate=", o.learning_rate, " momentum=", o.momentum,
        " weight_decay=", o.weight_decay));
  }
  return absl::OkStatus();
}

absl::Status CheckData(const Dataset& data) {
  if (data.num_examples() == 0) {
    return absl::InvalidArgumentError("the data set has no examples");
  }
  return absl::OkStatus();
}

// SGD over `data` minimizing `loss`; the masked elements stay zero.
// `masks`: one per parameter (or none), see ParameterMasks.
TrainStats RunSgd(Net& net, const Dataset& data, const SgdOptions& o,
                  const LossFn& loss_fn,
                  const std::vector<torch::Tensor>& masks) {
  const absl::Time start = absl::Now();
  const torch::Tensor features = FeaturesView(data);
  const torch::Tensor labels = LabelsView(data);
  std::vector<torch::Tensor> params = net.parameters();
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(o.learning_rate)
                                    .momentum(o.momentum)
                                    .weight_decay(o.weight_decay));
  std::vector<int64_t> order(data.num_examples());
  std::iota(order.begin(), order.end(), 0);
  TrainStats stats;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    net.train();
    DeterministicRng rng(MixSeed({o.seed, static_cast<uint64_t>(epoch)}));
    rng.Shuffle(absl::MakeSpan(order));
    double loss_sum = 0;
    for (size_t begin = 0; begin < order.size(); begin += o.batch_size) {
      const int64_t size =
          std::min<int64_t>(o.batch_size, order.size() - begin);
      const torch::Tensor idx =
          torch::from_blob(order.data() + begin, {size}, torch::kInt64);
      ClearGradients(params);
      torch::Tensor loss =
          loss_fn(features.index_select(0, idx), labels.index_select(0, idx));
      loss.backward();
      torch::NoGradGuard no_grad;
      MaskedStep(sgd, params, masks);
      loss_sum += loss.item<double>() * size;
      ++stats.steps;
    }
    stats.last_epoch_loss = loss_sum / order.size();
  }
  net.eval();
  stats.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return stats;
}

// Runs `forward` over the first n examples in batches; calls `consume`
// with each batch's logits and its first index.
absl::Status ForBatches(
    const Forward& forward, const Dataset& data, int64_t limit,
    const std::function<void(const torch::Tensor&, int64_t)>& consume) {
  RETURN_IF_ERROR(CheckData(data));
  const int64_t n =
      limit > 0 ? std::min(limit, data.num_examples()) : data.num_examples();
  return CallTorch([&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    const torch::Tensor x = FeaturesView(data);
    for (int64_t begin = 0; begin < n; begin += kEvalBatch) {
      const int64_t end = std::min(n, begin + kEvalBatch);
      consume(forward(x.slice(0, begin, end)), begin);
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<double> Accuracy(const Forward& forward, const Dataset& data,
                                int64_t limit) {
  const torch::Tensor labels = LabelsView(data);
  int64_t correct = 0, seen = 0;
  RETURN_IF_ERROR(ForBatches(
      forward, data, limit, [&](const torch::Tensor& logits, int64_t begin) {
        const int64_t size = logits.size(0);
        correct += logits.argmax(1)
                       .eq(labels.slice(0, begin, begin + size))
                       .sum()
                       .item<int64_t>();
        seen += size;
      }));
  return static_cast<double>(correct) / seen;
}

Forward NetForward(Net& net) {
  net.eval();
  return [&net](const torch::Tensor& x) { return net.forward(x); };
}

Forward ModuleForward(torch::jit::Module& module) {
  module.eval();
  return [&module](const torch::Tensor& x) {
    return module.forward({x}).toTensor();
  };
}

absl::StatusOr<Logits> LogitsOf(const Forward& forward, const Dataset& data,
                                int64_t limit) {
  Logits out;
  RETURN_IF_ERROR(ForBatches(
      forward, data, limit, [&](const torch::Tensor& logits, int64_t) {
        const torch::Tensor c = logits.contiguous();
        out.num_classes = c.size(1);
        out.num_examples += c.size(0);
        const float* p = c.data_ptr<float>();
        out.values.insert(out.values.end(), p, p + c.numel());
      }));
  return out;
}

absl::StatusOr<at::QEngine> ParseEngine(const std::string& engine) {
  at::QEngine e = at::QEngine::NoQEngine;
  if (engine == "qnnpack") e = at::QEngine::QNNPACK;
  if (engine == "onednn") e = at::QEngine::ONEDNN;
  if (engine == "fbgemm") e = at::QEngine::FBGEMM;
  if (engine == "x86") e = at::QEngine::X86;
  const auto& supported = at::globalContext().supportedQEngines();
  if (e != at::QEngine::NoQEngine &&
      std::find(supported.begin(), supported.end(), e) != supported.end()) {
    return e;
  }
  std::vector<std::string> names;
  for (at::QEngine s : supported) {
    if (s != at::QEngine::NoQEngine) names.push_back(c10::toString(s));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--engine '", engine, "' is not available in this LibTorch ",
      "(it has: ", absl::AsciiStrToLower(absl::StrJoin(names, ", ")), ")"));
}

}  // namespace

absl::StatusOr<TrainStats> FinetuneMasked(Net& net, const Dataset& data,
                                          const SgdOptions& options,
                                          const ModelState& mask) {
  RETURN_IF_ERROR(CheckSgd(options));
  RETURN_IF_ERROR(CheckData(data));
  return CallTorch([&]() -> absl::StatusOr<TrainStats> {
    ASSIGN_OR_RETURN(std::vector<torch::Tensor> masks,
                     ParameterMasks(net.parameters(), mask));
    return RunSgd(
        net, data, options,
        [&net](const torch::Tensor& x, const torch::Tensor& y) {
          return F::cross_entropy(net.forward(x), y);
        },
        masks);
  });
}

absl::StatusOr<TrainStats> Distill(Net& teacher, Net& student,
                                   const Dataset& data,
                                   const DistillOptions& options) {
  RETURN_IF_ERROR(CheckSgd(options.sgd));
  RETURN_IF_ERROR(CheckData(data));
  if (!(options.temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--temperature must be > 0, got ", options.temperature));
  }
  const double t = options.temperature;
  return CallTorch([&]() -> absl::StatusOr<TrainStats> {
    teacher.eval();
    return RunSgd(
        student, data, options.sgd,
        [&](const torch::Tensor& x, const torch::Tensor&) {
          torch::Tensor target;
          {
            torch::NoGradGuard no_grad;
            target = F::softmax(teacher.forward(x) / t, 1);
          }
          const torch::Tensor log_p = F::log_softmax(student.forward(x) / t, 1);
          return F::kl_div(log_p, target,
                           F::KLDivFuncOptions().reduction(torch::kBatchMean)) *
                 (t * t);
        },
        /*masks=*/{});
  });
}

absl::StatusOr<double> EvaluateAccuracy(Net& net, const Dataset& data,
                                        int64_t limit) {
  return Accuracy(NetForward(net), data, limit);
}

absl::StatusOr<double> EvaluateAccuracy(torch::jit::Module& module,
                                        const Dataset& data, int64_t limit) {
  return Accuracy(ModuleForward(module), data, limit);
}

absl::StatusOr<Logits> ComputeLogits(Net& net, const Dataset& data,
                                     int64_t limit) {
  return LogitsOf(NetForward(net), data, limit);
}

absl::StatusOr<Logits> ComputeLogits(torch::jit::Module& module,
                                     const Dataset& data, int64_t limit) {
  return LogitsOf(ModuleForward(module), data, limit);
}

absl::Status SetQuantizedEngine(const std::string& engine) {
  ASSIGN_OR_RETURN(at::QEngine e, ParseEngine(engine));
  return CallTorch([&]() -> absl::Status {
    at::globalContext().setQEngine(e);
    return absl::OkStatus();
  });
}

absl::StatusOr<torch::jit::Module> LoadTorchScriptFile(
    const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return ErrnoStatus(errno, "TorchScript file", path);
  }
  try {
    torch::jit::Module module = torch::jit::load(path, torch::kCPU);
    module.eval();
    return module;
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is not a readable TorchScript file: ", TorchErrorMessage(e)));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a readable TorchScript file: ", e.what()));
  }
}

absl::Status QuantizeInt8(const std::string& float_path,
                          const Dataset& calibration,
                          const std::string& work_dir, const std::string& out,
                          const QuantizeOptions& options) {
  RETURN_IF_ERROR(CheckData(calibration));
  RETURN_IF_ERROR(ParseEngine(options.engine).status());
  std::vector<int64_t> shape = {calibration.num_examples()};
  shape.insert(shape.end(), calibration.example_shape.begin(),
               calibration.example_shape.end());
  const std::string examples = work_dir + "/calibration.npy";
  RETURN_IF_ERROR(WriteNpy(examples, shape, calibration.features));
  absl::StatusOr<std::string> ran =
      RunPythonScript(options.python, "quantize_int8.py",
                      {"--model", float_path, "--calibration", examples,
                       "--out", out, "--engine", options.engine});
  std::remove(examples.c_str());
  return ran.status();
}

}  // namespace fedge::ml
