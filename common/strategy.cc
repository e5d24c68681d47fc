// Strategy: the base class (selection, plans, federated evaluation), the
// option checks and the factory. The strategies themselves are in
// strategy_mean.cc (streaming) and strategy_robust.cc (buffered).
#include "common/strategy.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/strategy_impl.h"

namespace fedge {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view rule,
                     double got) {
  return absl::InvalidArgumentError(
      absl::StrCat("strategy.", field, " ", rule, ", got ", got));
}

}  // namespace

size_t FitSelectionSize(const StrategyOptions& o, size_t available) {
  int64_t k = o.count > 0
                  ? o.count
                  : std::max<int64_t>(1, std::llround(o.fraction * available));
  k = std::max<int64_t>(k, o.min_fit_agents);
  return static_cast<size_t>(std::min<int64_t>(k, available));
}

bool SupportsDifferentialPrivacy(absl::string_view name) {
  for (absl::string_view n :
       {"fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad"}) {
    if (name == n) return true;
  }
  return false;
}

std::vector<std::string> SampleAgents(std::vector<std::string> ids, size_t k,
                                      uint64_t seed, int64_t round) {
  std::sort(ids.begin(), ids.end());
  k = std::min(k, ids.size());
  DeterministicRng rng(SplitMix64(seed ^ SplitMix64(round)));
  for (size_t i = 0; i < k; ++i) {
    const size_t j = i + rng.UniformInt(ids.size() - i);
    std::swap(ids[i], ids[j]);
  }
  ids.resize(k);
  std::sort(ids.begin(), ids.end());
  return ids;
}

uint64_t AgentPlanSeed(uint64_t seed, int64_t round,
                       absl::string_view agent_id) {
  return MixSeed({seed, static_cast<uint64_t>(round),
                  StableHash64(agent_id.data(), agent_id.size())});
}

absl::Status Strategy::AddUpdate(const FitResult& result) {
  RETURN_IF_ERROR(CheckUpdate(result));
  Fold(result);
  return absl::OkStatus();
}

TrainPlan Strategy::PlanFor(int64_t round, const AgentInfo& agent) const {
  TrainPlan plan = options_.plan;
  plan.seed = AgentPlanSeed(options_.seed, round, agent.id);
  plan.update_encoding.seed = plan.seed;  // Stochastic rounding, per agent.
  for (const DeviceClassPlan& d : options_.device_plans) {
    if (d.device_class != agent.device_class) continue;
    if (d.epochs > 0) plan.epochs = d.epochs;
    if (d.max_steps > 0) plan.max_steps = d.max_steps;
    if (d.update_encoding.has_value()) {
      plan.update_encoding.kind = *d.update_encoding;
    }
  }
  if (options_.dp.has_value()) {
    plan.dp_clip_norm = options_.dp->clip_norm;
    plan.dp_noise_stddev = options_.dp->local ? NoiseStddev(*options_.dp) : 0;
  }
  if (options_.local_time_budget_ms > 0 && agent.examples_per_second > 0) {
    const double examples =
        agent.examples_per_second * options_.local_time_budget_ms / 1000.0;
    const int64_t steps = std::max<int64_t>(
        1, static_cast<int64_t>(examples / std::max(1, plan.batch_size)));
    plan.max_steps =
        plan.max_steps > 0 ? std::min(plan.max_steps, steps) : steps;
  }
  return plan;
}

std::vector<FitInstruction> Strategy::ConfigureFit(
    int64_t round, absl::Span<const AgentInfo> available) const {
  std::vector<std::string> ids;
  ids.reserve(available.size());
  for (const AgentInfo& a : available) ids.push_back(a.id);
  const std::vector<std::string> chosen = SampleAgents(
      ids, FitSelectionSize(options_, ids.size()), options_.seed, round);
  std::vector<FitInstruction> out;
  out.reserve(chosen.size());
  for (const AgentInfo& a : available) {
    if (!std::binary_search(chosen.begin(), chosen.end(), a.id)) continue;
    out.push_back({a.id, PlanFor(round, a)});
  }
  std::sort(out.begin(), out.end(),
            [](const FitInstruction& x, const FitInstruction& y) {
              return x.agent_id < y.agent_id;
            });
  return out;
}

std::vector<std::string> Strategy::ConfigureEvaluate(
    int64_t round, absl::Span<const AgentInfo> available) const {
  if (options_.fraction_evaluate <= 0 || available.empty()) return {};
  std::vector<std::string> ids;
  for (const AgentInfo& a : available) ids.push_back(a.id);
  size_t k =
      std::max<int64_t>(options_.min_evaluate_agents,
                        std::llround(options_.fraction_evaluate * ids.size()));
  // A stream of its own, so evaluation does not shift training selection.
  return SampleAgents(std::move(ids), k,
                      MixSeed({options_.seed, 0x6576616cULL}), round);
}

EvalMetrics Strategy::AggregateEvaluate(
    absl::Span<const EvalMetrics> results) const {
  EvalMetrics out;
  double loss = 0, accuracy = 0;
  for (const EvalMetrics& r : results) {
    if (r.num_examples <= 0) continue;
    out.num_examples += r.num_examples;
    loss += r.num_examples * r.loss;
    accuracy += r.num_examples * r.accuracy;
  }
  if (out.num_examples > 0) {
    out.loss = loss / out.num_examples;
    out.accuracy = accuracy / out.num_examples;
  }
  return out;
}

absl::Status Strategy::RestoreState(absl::string_view bytes,
                                    const ModelSchema& schema) {
  if (bytes.empty()) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("strategy ", name(),
                                          " keeps no state, but the "
                                          "checkpoint holds ",
                                          bytes.size(), " bytes of it"));
}

std::vector<std::string> StrategyNames() {
  return {"fedavg",  "fedavgm",    "fedprox",     "fednova", "fedadam",
          "fedyogi", "fedadagrad", "scaffold",    "median",  "trimmed_mean",
          "krum",    "multi_krum", "norm_bounded"};
}

bool IsSumOnlyStrategy(absl::string_view name) {
  for (absl::string_view n : {"fedavg", "fedavgm", "fedprox", "fednova",
                              "fedadam", "fedyogi", "fedadagrad"}) {
    if (name == n) return true;
  }
  return false;
}

namespace {
// FedNova's a_i: tau local steps, or with local momentum rho
// (tau - rho (1 - rho^tau) / (1 - rho)) / (1 - rho) (Wang et al. 2020).
double LocalWork(double tau, double rho) {
  if (rho <= 0) return tau;
  return (tau - rho * (1 - std::pow(rho, tau)) / (1 - rho)) / (1 - rho);
}
}  // namespace

UpdateWeights UpdateSumWeights(const StrategyOptions& options,
                               double num_examples, int64_t num_steps) {
  UpdateWeights w;
  w.weight = num_examples;
  if (options.name == "fednova" && num_steps > 0) {
    w.work = LocalWork(static_cast<double>(num_steps), options.plan.momentum);
    w.weight = num_examples / w.work;
  } else {
    w.work = static_cast<double>(num_steps);
  }
  return w;
}

absl::Status Strategy::AddSum(const FitSum& sum) {
  return absl::FailedPreconditionError(absl::StrCat(
      "strategy '", name(),
      "' needs each update, not only their sum (secure aggregation works "
      "with fedavg, fedavgm, fedprox, fednova, fedadam, fedyogi, "
      "fedadagrad)"));
}

absl::Status CheckAggregate(ModelState& next) {
  absl::Status finite = CheckFinite(next);
  if (!finite.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the aggregate is not finite (", finite.message(),
                     "); the global model is kept"));
  }
  for (TensorBuffer& t : next.mutable_tensors()) {
    if (t.dtype() == DType::kFloat32) t.set_known_finite();
  }
  return absl::OkStatus();
}

absl::Status ValidateStrategyOptions(const StrategyOptions& o) {
  const std::vector<std::string> names = StrategyNames();
  if (std::find(names.begin(), names.end(), o.name) == names.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("strategy.name '", o.name,
                     "' is unknown; valid: ", absl::StrJoin(names, ", ")));
  }
  if (!(o.fraction > 0 && o.fraction <= 1)) {
    return Invalid("fraction", "must be in (0, 1]", o.fraction);
  }
  if (o.count < 0) return Invalid("count", "must be >= 0", o.count);
  if (o.min_fit_agents < 1) {
    return Invalid("min_fit_agents", "must be >= 1", o.min_fit_agents);
  }
  if (o.server_learning_rate >= 0 && !(o.server_learning_rate > 0)) {
    return Invalid("server_learning_rate", "must be > 0",
                   o.server_learning_rate);
  }
  if (!std::isfinite(o.server_learning_rate)) {
    return Invalid("server_learning_rate", "must be finite",
                   o.server_learning_rate);
  }
  if (o.name == "fedavgm" &&
      !(o.server_momentum >= 0 && o.server_momentum < 1)) {
    return Invalid("server_momentum", "must be in [0, 1)", o.server_momentum);
  }
  if (o.name == "fedprox" &&
      !(o.proximal_mu >= 0 && std::isfinite(o.proximal_mu))) {
    return Invalid("proximal_mu", "must be >= 0", o.proximal_mu);
  }
  if (o.name == "fedadam" || o.name == "fedyogi" || o.name == "fedadagrad") {
    if (!(o.beta1 >= 0 && o.beta1 < 1)) {
      return Invalid("beta1", "must be in [0, 1)", o.beta1);
    }
    if (!(o.beta2 >= 0 && o.beta2 < 1)) {
      return Invalid("beta2", "must be in [0, 1)", o.beta2);
    }
    if (!(o.tau > 0 && std::isfinite(o.tau))) {
      return Invalid("tau", "must be > 0", o.tau);
    }
  }
  if (o.name == "trimmed_mean" && !(o.trim_beta >= 0 && o.trim_beta < 0.5)) {
    return Invalid("trim_beta", "must be in [0, 0.5)", o.trim_beta);
  }
  if (o.name == "krum" || o.name == "multi_krum") {
    if (o.krum_f < 0) return Invalid("krum_f", "must be >= 0", o.krum_f);
    // Krum needs n >= 2f + 3 updates; a round may close with as few as
    // min_fit_agents of them.
    const int64_t need = 2 * int64_t{o.krum_f} + 3;
    if (o.min_fit_agents < need) {
      return absl::InvalidArgumentError(absl::StrCat(
          "strategy.krum_f = ", o.krum_f, " needs at least 2f+3 = ", need,
          " updates per round, but a round may close with "
          "strategy.min_fit_agents = ",
          o.min_fit_agents,
          "; raise min_fit_agents (and the selection count) or lower "
          "krum_f"));
    }
    if (o.count > 0 && o.count < need) {
      return absl::InvalidArgumentError(absl::StrCat(
          "strategy.krum_f = ", o.krum_f, " is too large for strategy.count = ",
          o.count, " selected agents: Krum needs n >= 2f+3 = ", need));
    }
    if (o.krum_m < 0) return Invalid("krum_m", "must be >= 0", o.krum_m);
  }
  if (o.name == "norm_bounded" &&
      !(o.max_update_norm > 0 && std::isfinite(o.max_update_norm))) {
    return Invalid("max_update_norm", "must be > 0", o.max_update_norm);
  }
  if (o.max_buffered_updates < 1) {
    return Invalid("max_buffered_updates", "must be >= 1",
                   o.max_buffered_updates);
  }
  if (!(o.fraction_evaluate >= 0 && o.fraction_evaluate <= 1)) {
    return Invalid("fraction_evaluate", "must be in [0, 1]",
                   o.fraction_evaluate);
  }
  if (o.min_evaluate_agents < 1) {
    return Invalid("min_evaluate_agents", "must be >= 1",
                   o.min_evaluate_agents);
  }
  if (o.local_time_budget_ms < 0) {
    return Invalid("local_time_budget_ms", "must be >= 0",
                   o.local_time_budget_ms);
  }
  if (o.dp.has_value()) {
    if (absl::Status s = o.dp->Validate(); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("strategy.dp.", s.message()));
    }
    if (!SupportsDifferentialPrivacy(o.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "strategy.dp.mode '", o.dp->local ? "local" : "central",
          "' does not work with strategy.name '", o.name,
          "': DP-FedAvg's guarantee needs every clipped update to enter a "
          "uniform-weight sum (robust rules, FedNova's step weights and "
          "SCAFFOLD's control variates break it); use fedavg, fedprox, "
          "fedavgm, fedadam, fedyogi or fedadagrad, or set strategy.dp.mode "
          "to off"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Strategy>> CreateStrategy(
    const StrategyOptions& options, const ModelState& model) {
  RETURN_IF_ERROR(ValidateStrategyOptions(options));
  const std::string& n = options.name;
  if (n == "median" || n == "trimmed_mean" || n == "krum" ||
      n == "multi_krum") {
    return NewRobustStrategy(options, model);
  }
  return NewMeanStrategy(options, model);
}

}  // namespace fedge
