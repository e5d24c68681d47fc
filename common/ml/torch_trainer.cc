#include "common/ml/torch_trainer.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/ml/prune.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torch_status.h"
#include "common/ml/torchscript_model.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

namespace F = torch::nn::functional;

absl::Status CheckDataset(const Dataset& d, const ModelSpec& spec,
                          absl::string_view what) {
  if (d.example_shape != spec.input_shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " examples have shape [", absl::StrJoin(d.example_shape, ","),
        "] but the model takes [", absl::StrJoin(spec.input_shape, ","), "]"));
  }
  if (d.num_classes > spec.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has ", d.num_classes,
                                                   " classes, the model ",
                                                   spec.num_classes));
  }
  return absl::OkStatus();
}

absl::Status CheckPlan(const TrainPlan& plan) {
  if (plan.epochs < 1 || plan.batch_size < 1 || !(plan.learning_rate > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "train plan needs epochs >= 1, batch_size >= 1, learning_rate > 0; "
        "got epochs=",
        plan.epochs, " batch_size=", plan.batch_size,
        " learning_rate=", plan.learning_rate));
  }
  return absl::OkStatus();
}

// LibTorch 1.13's SGD keys its per-parameter state by the address of the
// parameter's TensorImpl, as a string.
std::string SgdStateKey(const torch::Tensor& param) {
  return c10::guts::to_string(param.unsafeGetTensorImpl());
}

}  // namespace

torch::Tensor FeaturesView(const Dataset& d) {
  std::vector<int64_t> shape = {d.num_examples()};
  shape.insert(shape.end(), d.example_shape.begin(), d.example_shape.end());
  return torch::from_blob(const_cast<float*>(d.features.data()), shape,
                          torch::kFloat32);
}

torch::Tensor LabelsView(const Dataset& d) {
  return torch::from_blob(const_cast<int64_t*>(d.labels.data()),
                          {d.num_examples()}, torch::kInt64);
}

TorchTrainer::TorchTrainer(TorchTrainerOptions options,
                           std::shared_ptr<Net> net)
    : options_(std::move(options)), net_(std::move(net)) {
  train_x_ = FeaturesView(*options_.train);
  train_y_ = LabelsView(*options_.train);
  if (options_.eval != nullptr) {
    eval_x_ = FeaturesView(*options_.eval);
    eval_y_ = LabelsView(*options_.eval);
  }
}

absl::StatusOr<std::unique_ptr<TorchTrainer>> TorchTrainer::Create(
    TorchTrainerOptions options) {
  if (options.train == nullptr) {
    return absl::InvalidArgumentError("TorchTrainer needs a training set");
  }
  RETURN_IF_ERROR(CheckDataset(*options.train, options.model, "training set"));
  if (options.eval != nullptr) {
    RETURN_IF_ERROR(CheckDataset(*options.eval, options.model, "eval set"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Net> net, BuildNet(options.model));
  return std::unique_ptr<TorchTrainer>(
      new TorchTrainer(std::move(options), std::move(net)));
}

absl::StatusOr<ModelState> TorchTrainer::State() const {
  return ExportState(*net_);
}

absl::StatusOr<std::vector<int64_t>> TorchTrainer::LocalOrder(
    absl::Span<const int64_t> indices) const {
  const int64_t n = options_.train->num_examples();
  std::vector<int64_t> order;
  if (indices.empty()) {
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
  } else {
    order.assign(indices.begin(), indices.end());
    for (int64_t i : order) {
      if (i < 0 || i >= n) {
        return absl::InvalidArgumentError(absl::StrCat(
            "example index ", i, " is outside the local data [0, ", n, ")"));
      }
    }
  }
  if (order.empty()) {
    return absl::FailedPreconditionError("no local examples to train on");
  }
  return order;
}

absl::StatusOr<TrainOutput> TorchTrainer::Train(
    const ModelState& global, const TrainPlan& plan,
    absl::Span<const int64_t> indices) {
  RETURN_IF_ERROR(CheckPlan(plan));
  ASSIGN_OR_RETURN(std::vector<int64_t> order, LocalOrder(indices));
  RETURN_IF_ERROR(ImportState(global, *net_));
  if (plan.gradient_correction != nullptr) {
    RETURN_IF_ERROR(Annotate(CheckSameSchema(global, *plan.gradient_correction),
                             "gradient correction"));
  }
  TrainProgress progress;
  if (plan.resume_from != nullptr) {
    RETURN_IF_ERROR(CheckContinuation(*plan.resume_from, global, plan, order));
    RETURN_IF_ERROR(ImportState(plan.resume_from->weights, *net_));
    progress = plan.resume_from->progress;
  } else {
    progress.order = std::move(order);
  }
  TrainOutput out;
  ASSIGN_OR_RETURN(out.interrupted,
                   RunSgd(global, plan, progress, &out.continuation.momentum));
  if (out.interrupted) {
    ASSIGN_OR_RETURN(out.continuation.weights, ExportState(*net_));
    out.continuation.progress = std::move(progress);
    return out;
  }
  out.metrics = Metrics(progress);
  ASSIGN_OR_RETURN(out.delta, Delta(global));
  return out;
}

absl::StatusOr<bool> TorchTrainer::RunSgd(const ModelState& global,
                                          const TrainPlan& plan,
                                          TrainProgress& p,
                                          ModelState* momentum) {
  return CallTorch([&]() -> absl::StatusOr<bool> {
    const absl::Time start = absl::Now();
    net_->train();
    auto params = net_->parameters();
    torch::optim::SGD sgd(params, torch::optim::SGDOptions(plan.learning_rate)
                                      .momentum(plan.momentum)
                                      .weight_decay(plan.weight_decay));
    if (plan.resume_from != nullptr) {
      RETURN_IF_ERROR(ImportMomentum(plan.resume_from->momentum, sgd));
    }
    std::vector<torch::Tensor> anchors;  // Global weights, for FedProx.
    if (plan.proximal_mu > 0) {
      for (size_t i = 0; i < params.size(); ++i) {
        anchors.push_back(ViewAsTensor(global.tensor(i)));
      }
    }
    // Fine-tuning a pruned model: the global model's pruning mask.
    ModelState mask;
    std::vector<torch::Tensor> masks;
    if (plan.keep_pruned) {
      ASSIGN_OR_RETURN(mask, PruningMask(options_.model, global));
      ASSIGN_OR_RETURN(masks, ParameterMasks(params, mask));
    }
    // SCAFFOLD: the correction of each parameter's gradient (parameters
    // come first in the state, in order).
    std::vector<torch::Tensor> corrections;
    if (plan.gradient_correction != nullptr) {
      for (size_t i = 0; i < params.size(); ++i) {
        corrections.push_back(
            ViewAsTensor(plan.gradient_correction->tensor(i)));
      }
    }
    const int64_t max_steps = plan.max_steps > 0
                                  ? plan.max_steps
                                  : std::numeric_limits<int64_t>::max();
    const int64_t total = static_cast<int64_t>(p.order.size());
    // A resumed epoch keeps the order it was interrupted in.
    bool shuffled = plan.resume_from != nullptr;
    for (; p.epoch < plan.epochs && p.num_steps < max_steps;
         ++p.epoch, p.position = 0, shuffled = false) {
      if (!shuffled) {
        DeterministicRng rng(
            MixSeed({plan.seed, static_cast<uint64_t>(p.epoch)}));
        rng.Shuffle(absl::MakeSpan(p.order));
      }
      for (; p.position < total && p.num_steps < max_steps;
           p.position += plan.batch_size) {
        if (plan.should_stop && plan.should_stop()) {
          p.seconds += absl::ToDoubleSeconds(absl::Now() - start);
          ASSIGN_OR_RETURN(*momentum, ExportMomentum(sgd));
          return true;
        }
        const int64_t size =
            std::min<int64_t>(plan.batch_size, total - p.position);
        torch::Tensor idx = torch::from_blob(p.order.data() + p.position,
                                             {size}, torch::kInt64);
        torch::Tensor x = train_x_.index_select(0, idx);
        torch::Tensor y = train_y_.index_select(0, idx);
        ClearGradients(params);
        torch::Tensor logits = net_->forward(x);
        torch::Tensor loss = F::cross_entropy(logits, y);
        if (!anchors.empty()) {
          torch::Tensor prox = torch::zeros({}, torch::kFloat32);
          for (size_t i = 0; i < params.size(); ++i) {
            prox = prox + (params[i] - anchors[i]).pow(2).sum();
          }
          loss = loss + 0.5 * plan.proximal_mu * prox;
        }
        loss.backward();
        for (size_t i = 0; i < corrections.size(); ++i) {
          if (params[i].grad().defined()) params[i].grad().add_(corrections[i]);
        }
        {
          torch::NoGradGuard no_grad;
          MaskedStep(sgd, params, masks);
        }
        p.loss_sum += loss.item<double>() * size;
        p.correct += logits.argmax(1).eq(y).sum().item<int64_t>();
        p.examples_seen += size;
        ++p.num_steps;
      }
    }
    p.seconds += absl::ToDoubleSeconds(absl::Now() - start);
    return false;
  });
}

TrainMetrics TorchTrainer::Metrics(const TrainProgress& p) {
  TrainMetrics m;
  // A step cap may stop before every example was used once.
  m.num_examples =
      std::min<int64_t>(static_cast<int64_t>(p.order.size()), p.examples_seen);
  m.num_steps = p.num_steps;
  m.loss = p.loss_sum / p.examples_seen;
  m.accuracy = static_cast<double>(p.correct) / p.examples_seen;
  m.seconds = p.seconds;
  return m;
}

absl::Status TorchTrainer::CheckContinuation(const TrainContinuation& c,
                                             const ModelState& global,
                                             const TrainPlan& plan,
                                             std::vector<int64_t> order) const {
  RETURN_IF_ERROR(Annotate(CheckSameSchema(global, c.weights),
                           "the interrupted training's weights"));
  const TrainProgress& p = c.progress;
  std::vector<int64_t> resumed = p.order;
  std::sort(order.begin(), order.end());
  std::sort(resumed.begin(), resumed.end());
  if (resumed != order) {
    return absl::InvalidArgumentError(
        "the interrupted training ran on other examples");
  }
  const int64_t total = static_cast<int64_t>(order.size());
  if (p.epoch < 0 || p.epoch >= plan.epochs || p.position < 0 ||
      p.position >= total || p.num_steps < 0 || p.examples_seen < 0 ||
      p.correct < 0 || p.correct > p.examples_seen) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the interrupted training's progress does not fit the plan: epoch ",
        p.epoch, " of ", plan.epochs, ", position ", p.position, " of ",
        total));
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, torch::Tensor>>
TorchTrainer::NamedParameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : net_->named_parameters()) {
    out.emplace_back(item.key(), item.value());
  }
  return out;
}

absl::StatusOr<ModelState> TorchTrainer::ExportMomentum(
    torch::optim::SGD& sgd) const {
  ModelState out;
  for (const auto& [name, param] : NamedParameters()) {
    auto it = sgd.state().find(SgdStateKey(param));
    if (it == sgd.state().end()) continue;
    const auto& state =
        static_cast<const torch::optim::SGDParamState&>(*it->second);
    if (!state.momentum_buffer().defined()) continue;
    ASSIGN_OR_RETURN(TensorBuffer t, ToTensorBuffer("momentum." + name,
                                                    state.momentum_buffer()));
    out.Add(std::move(t));
  }
  return out;
}

absl::Status TorchTrainer::ImportMomentum(const ModelState& momentum,
                                          torch::optim::SGD& sgd) const {
  for (const auto& [name, param] : NamedParameters()) {
    const TensorBuffer* t = momentum.Find("momentum." + name);
    if (t == nullptr) continue;
    if (t->dtype() != DType::kFloat32 ||
        t->shape() !=
            std::vector<int64_t>(param.sizes().begin(), param.sizes().end())) {
      return absl::InvalidArgumentError(
          absl::StrCat("the interrupted training's momentum ", t->DebugString(),
                       " does not fit parameter ", name));
    }
    auto state = std::make_unique<torch::optim::SGDParamState>();
    state->momentum_buffer(ViewAsTensor(*t).clone());
    sgd.state()[SgdStateKey(param)] = std::move(state);
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelState> TorchTrainer::Delta(const ModelState& global) const {
  ModelState delta;
  auto tensors = StateTensors(*net_);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorBuffer& g = global.tensor(i);
    ASSIGN_OR_RETURN(TensorBuffer d, TensorBuffer::Uninitialized(
                                         g.name(), g.dtype(), g.shape()));
    RETURN_IF_ERROR(CallTorch([&]() -> absl::Status {
      torch::NoGradGuard no_grad;
      torch::Tensor out = ViewAsTensor(d);
      if (g.dtype() == DType::kFloat32) {
        torch::sub_out(out, tensors[i].second, ViewAsTensor(g));
      } else {
        out.copy_(tensors[i].second);
      }
      return absl::OkStatus();
    }));
    delta.Add(std::move(d));
  }
  return delta;
}

absl::StatusOr<EvalMetrics> TorchTrainer::Evaluate(const ModelState& weights) {
  if (options_.eval == nullptr) {
    return absl::FailedPreconditionError("this trainer has no evaluation set");
  }
  RETURN_IF_ERROR(ImportState(weights, *net_));
  return EvaluateTensors(eval_x_, eval_y_);
}

absl::StatusOr<EvalMetrics> TorchTrainer::EvaluateOn(
    const ModelState& weights, absl::Span<const int64_t> indices) {
  if (options_.eval == nullptr) {
    return absl::FailedPreconditionError("this trainer has no evaluation set");
  }
  const int64_t n = options_.eval->num_examples();
  for (int64_t i : indices) {
    if (i < 0 || i >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("evaluation index ", i,
                       " is outside the evaluation set [0, ", n, ")"));
    }
  }
  RETURN_IF_ERROR(ImportState(weights, *net_));
  std::vector<int64_t> copy(indices.begin(), indices.end());
  return CallTorch([&]() -> absl::StatusOr<EvalMetrics> {
    torch::Tensor idx = torch::from_blob(
        copy.data(), {static_cast<int64_t>(copy.size())}, torch::kInt64);
    return EvaluateTensors(eval_x_.index_select(0, idx),
                           eval_y_.index_select(0, idx));
  });
}

absl::StatusOr<EvalMetrics> TorchTrainer::EvaluateTensors(
    const torch::Tensor& x, const torch::Tensor& y_all) {
  return CallTorch([&]() -> absl::StatusOr<EvalMetrics> {
    torch::NoGradGuard no_grad;
    net_->eval();
    EvalMetrics m;
    m.num_examples = x.size(0);
    double loss_sum = 0;
    int64_t correct = 0;
    const int64_t bs = std::max<int64_t>(1, options_.eval_batch_size);
    for (int64_t begin = 0; begin < m.num_examples; begin += bs) {
      const int64_t end = std::min(m.num_examples, begin + bs);
      torch::Tensor logits = net_->forward(x.slice(0, begin, end));
      torch::Tensor y = y_all.slice(0, begin, end);
      loss_sum +=
          F::cross_entropy(logits, y,
                           F::CrossEntropyFuncOptions().reduction(torch::kSum))
              .item<double>();
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    }
    net_->train();
    if (m.num_examples > 0) {
      m.loss = loss_sum / m.num_examples;
      m.accuracy = static_cast<double>(correct) / m.num_examples;
    }
    return m;
  });
}

}  // namespace fedge::ml
