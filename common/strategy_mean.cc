// The streaming strategies: one running weighted sum per round (float64,
// memory O(model)), then a server step.
//
//   fedavg        global += lr * mean(delta)             (McMahan et al. 2017)
//   fedprox       as fedavg; the plan carries mu          (Li et al. 2020)
//   fedavgm       v = m v + mean; global += lr v           (Hsu et al. 2019)
//   fednova       normalized averaging by local steps      (Wang et al. 2020)
//   fedadam/...   mean as a pseudo-gradient                (Reddi et al. 2021)
//   scaffold      control variates                  (Karimireddy et al. 2020)
//   norm_bounded  each delta clipped to an L2 norm, then fedavg
//                                                           (Sun et al. 2019)
//
// Central differential privacy (StrategyOptions::dp, common/dp.h): every
// update weighs 1, and "the mean" the server steps take is the sum of the
// round's (clipped) updates over the number of agents the round sampled
// (the fixed denominator) plus Gaussian noise of stddev
// MeanNoiseStddev, seeded from a secret base seed and the round; int64
// counters keep the global model's values (they would not be noised).
#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/aggregation.h"
#include "common/dp.h"
#include "common/logging.h"
#include "common/model_codec.h"
#include "common/random.h"
#include "common/robust_aggregation.h"
#include "common/scaffold.h"
#include "common/server_optimizer.h"
#include "common/status_macros.h"
#include "common/strategy_impl.h"

namespace fedge {
namespace {

// Tensors of a state blob: the canonical model encoding (empty = none).
absl::StatusOr<std::optional<ModelState>> DecodeStateModel(
    absl::string_view bytes, const ModelSchema& schema, const char* what) {
  if (bytes.empty()) return std::optional<ModelState>();
  absl::StatusOr<ModelState> m = DecodeModel(bytes, {}, schema);
  if (!m.ok()) {
    return absl::DataLossError(absl::StrCat(
        what,
        " in the checkpoint does not fit the model: ", m.status().message()));
  }
  RETURN_IF_ERROR(CheckFinite(*m));
  return std::optional<ModelState>(*std::move(m));
}

// v = m * v + mean, element-wise over float32 tensors (int64: mean's).
void MomentumStep(double m, const ModelState& mean, ModelState& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    TensorBuffer& t = v.mutable_tensor(i);
    if (t.dtype() != DType::kFloat32) {
      std::copy(mean.tensor(i).int64s().begin(), mean.tensor(i).int64s().end(),
                t.mutable_int64s().begin());
      continue;
    }
    absl::Span<float> vv = t.mutable_floats();
    absl::Span<const float> d = mean.tensor(i).floats();
    for (size_t j = 0; j < vv.size(); ++j) {
      vv[j] = static_cast<float>(m * vv[j] + d[j]);
    }
  }
}

class MeanStrategy : public Strategy {
 public:
  MeanStrategy(const StrategyOptions& options, const ModelState& model)
      : Strategy(options),
        schema_(SchemaOf(model)),
        sum_(model),
        central_dp_(options.dp.has_value() && !options.dp->local),
        noise_secret_(!central_dp_                  ? 0
                      : options.dp->noise_seed != 0 ? options.dp->noise_seed
                                                    : SecretSeed()) {}

  absl::string_view name() const override { return options_.name; }

  absl::Status CheckUpdate(const FitResult& r) const override {
    if (r.delta == nullptr) {
      return absl::InvalidArgumentError("update without a delta");
    }
    RETURN_IF_ERROR(sum_.Validate(*r.delta, Weight(r)));
    return CheckMore(r);
  }

  void Fold(const FitResult& r) override {
    Prepare(r);
    sum_.AddValidated(*r.delta, Weight(r));
    AddMore(r);
    ++num_updates_;
  }

  int64_t num_updates() const override { return num_updates_; }

  absl::Status AddSum(const FitSum& s) override {
    if (!IsSumOnlyStrategy(options_.name)) return Strategy::AddSum(s);
    if (s.weighted_delta_sum == nullptr || s.num_updates <= 0) {
      return absl::InvalidArgumentError("a sum without updates");
    }
    if (!(s.examples > 0) || !std::isfinite(s.examples) || !(s.work >= 0) ||
        !std::isfinite(s.work)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a sum with examples ", s.examples, " and work ", s.work));
    }
    RETURN_IF_ERROR(sum_.AddWeightedSum(*s.weighted_delta_sum, s.total_weight,
                                        s.num_updates));
    AddSumMore(s);
    num_updates_ += s.num_updates;
    return absl::OkStatus();
  }

  absl::StatusOr<ModelState> AggregateFit(const FitRound& round,
                                          const ModelState& global) override {
    absl::StatusOr<ModelState> next = Aggregate(round, global);
    DiscardRound();
    return next;
  }

  void DiscardRound() override {
    sum_.Reset();
    num_updates_ = 0;
    ResetMore();
  }

 protected:
  // The example weight of an update (FedNova divides it by the local work);
  // 1 under central DP (each agent's sensitivity is its clip norm).
  virtual double Weight(const FitResult& r) const {
    return central_dp_ ? 1.0 : r.num_examples;
  }
  virtual absl::Status CheckMore(const FitResult& r) const {
    return absl::OkStatus();
  }
  // Changes the update before it is folded (norm_bounded clips it).
  virtual void Prepare(const FitResult& r) {}
  virtual void AddMore(const FitResult& r) {}
  virtual void AddSumMore(const FitSum& s) {}
  virtual void ResetMore() {}
  // global + the server step, for a round with updates; must leave the
  // strategy's state unchanged until the result is known to be finite.
  virtual absl::StatusOr<ModelState> Step(const FitRound& round,
                                          const ModelState& global) {
    if (central_dp_) {
      ModelState next = global.Clone();
      ASSIGN_OR_RETURN(ModelState mean, RoundMean(round, global));
      RETURN_IF_ERROR(
          AddScaledInPlace(next, mean, static_cast<float>(LearningRate(1.0))));
      return next;
    }
    return sum_.MeanPlus(global, LearningRate(1.0));
  }

  // The round's mean delta the server step uses: the weighted mean, or
  // under central DP the noised fixed-denominator mean (file comment).
  absl::StatusOr<ModelState> RoundMean(const FitRound& round,
                                       const ModelState& global) const {
    if (!central_dp_) return sum_.Mean();
    const DpFedAvgOptions& dp = *options_.dp;
    const int64_t sampled = static_cast<int64_t>(FitSelectionSize(
        options_,
        static_cast<size_t>(std::max<int64_t>(0, round.num_available))));
    if (sampled < 1 || sum_.num_updates() > sampled) {
      return absl::FailedPreconditionError(absl::StrCat(
          "round ", round.round, " has ", sum_.num_updates(),
          " updates but samples ", sampled, " of ", round.num_available,
          " agents: the DP mean's fixed denominator would not bound each "
          "agent's influence"));
    }
    ModelState mean = global.Clone();
    for (TensorBuffer& t : mean.mutable_tensors()) {
      if (t.dtype() != DType::kFloat32) continue;
      for (float& v : t.mutable_floats()) v = 0.0f;
    }
    // sum / sampled = (sum / total_weight) * (total_weight / sampled).
    RETURN_IF_ERROR(sum_.AddMeanTo(
        mean, sum_.total_weight() / static_cast<double>(sampled)));
    for (size_t i = 0; i < mean.size(); ++i) {  // Counters: the global's.
      TensorBuffer& t = mean.mutable_tensor(i);
      if (t.dtype() == DType::kFloat32) continue;
      std::copy(global.tensor(i).int64s().begin(),
                global.tensor(i).int64s().end(), t.mutable_int64s().begin());
    }
    AddGaussianNoise(mean, MeanNoiseStddev(dp, sampled),
                     MixSeed({noise_secret_, kDpNoiseStream,
                              static_cast<uint64_t>(round.round)}));
    return mean;
  }

  double LearningRate(double fallback) const {
    return options_.server_learning_rate >= 0 ? options_.server_learning_rate
                                              : fallback;
  }

  const ModelSchema schema_;
  WeightedMeanAccumulator sum_;

 private:
  // The noise's seed stream ("dpnoise"), apart from every other use of it.
  static constexpr uint64_t kDpNoiseStream = 0x64706e6f697365ULL;
  const bool central_dp_;
  // Secret: whoever knows it can subtract the noise (common/dp.h).
  const uint64_t noise_secret_;

  absl::StatusOr<ModelState> Aggregate(const FitRound& round,
                                       const ModelState& global) {
    if (num_updates_ == 0) {
      return absl::FailedPreconditionError("no update to aggregate");
    }
    ASSIGN_OR_RETURN(ModelState next, Step(round, global));
    RETURN_IF_ERROR(CheckAggregate(next));
    Commit();
    return next;
  }
  // Makes the state computed by Step() the strategy's state.
  virtual void Commit() {}

  int64_t num_updates_ = 0;
};

class NormBounded final : public MeanStrategy {
 public:
  using MeanStrategy::MeanStrategy;

 private:
  void Prepare(const FitResult& r) override {
    ClipToL2Norm(*r.delta, options_.max_update_norm);
  }
};

class FedAvgM final : public MeanStrategy {
 public:
  using MeanStrategy::MeanStrategy;

  std::string SaveState() const override {
    return velocity_.has_value() ? EncodeModel(*velocity_) : "";
  }
  absl::Status RestoreState(absl::string_view bytes,
                            const ModelSchema& schema) override {
    ASSIGN_OR_RETURN(velocity_,
                     DecodeStateModel(bytes, schema, "fedavgm's velocity"));
    return absl::OkStatus();
  }
  int64_t StateBytes() const override {
    return velocity_.has_value() ? velocity_->NumBytes() : 0;
  }

 private:
  absl::StatusOr<ModelState> Step(const FitRound& round,
                                  const ModelState& global) override {
    ASSIGN_OR_RETURN(ModelState mean, RoundMean(round, global));
    if (velocity_.has_value()) {
      next_velocity_ = velocity_->Clone();
      MomentumStep(options_.server_momentum, mean, *next_velocity_);
    } else {
      next_velocity_ = std::move(mean);  // v = 0 before the first round.
    }
    ModelState next = global.Clone();
    RETURN_IF_ERROR(AddScaledInPlace(next, *next_velocity_,
                                     static_cast<float>(LearningRate(1.0))));
    return next;
  }
  void Commit() override { velocity_ = std::move(next_velocity_); }
  void ResetMore() override { next_velocity_.reset(); }

  std::optional<ModelState> velocity_;
  std::optional<ModelState> next_velocity_;
};

// FedNova: an agent that ran tau_i local steps contributes its normalized
// update delta_i / a_i (a_i = tau_i for plain SGD; with local momentum rho,
// a_i = (tau_i - rho (1 - rho^tau_i) / (1 - rho)) / (1 - rho)), and the
// result is rescaled by tau_eff = sum_i p_i a_i (p_i = n_i / n), so agents
// that do more local work do not pull the objective toward their data.
class FedNova final : public MeanStrategy {
 public:
  using MeanStrategy::MeanStrategy;

 private:
  double LocalWork(const FitResult& r) const {
    return UpdateSumWeights(options_, r.num_examples, r.num_steps).work;
  }
  double Weight(const FitResult& r) const override {
    return UpdateSumWeights(options_, r.num_examples, r.num_steps).weight;
  }
  absl::Status CheckMore(const FitResult& r) const override {
    if (r.num_steps <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fednova needs each update's local step count (num_steps > 0), "
          "got ",
          r.num_steps));
    }
    return absl::OkStatus();
  }
  void AddMore(const FitResult& r) override {
    examples_ += r.num_examples;
    work_ += r.num_examples * LocalWork(r);
  }
  void AddSumMore(const FitSum& s) override {
    examples_ += s.examples;
    work_ += s.work;
  }
  void ResetMore() override { examples_ = work_ = 0; }
  absl::StatusOr<ModelState> Step(const FitRound& round,
                                  const ModelState& global) override {
    // sum_ holds S = sum (n_i / a_i) delta_i over W = sum n_i / a_i; the
    // step is tau_eff * sum p_i delta_i / a_i = (A / N) * (S / N), with
    // N = sum n_i and A = sum n_i a_i; MeanPlus adds (S / W) * scale.
    const double scale = work_ * sum_.total_weight() / (examples_ * examples_);
    return sum_.MeanPlus(global, LearningRate(1.0) * scale);
  }

  double examples_ = 0;  // N.
  double work_ = 0;      // A.
};

class Adaptive final : public MeanStrategy {
 public:
  Adaptive(const StrategyOptions& options, const ModelState& model,
           std::unique_ptr<AdaptiveServerOptimizer> optimizer)
      : MeanStrategy(options, model), optimizer_(std::move(optimizer)) {}

  std::string SaveState() const override { return optimizer_->SaveState(); }
  absl::Status RestoreState(absl::string_view bytes,
                            const ModelSchema& schema) override {
    if (bytes.empty()) return absl::OkStatus();
    return optimizer_->RestoreState(bytes, schema);
  }
  int64_t StateBytes() const override {
    int64_t floats = 0;
    for (const TensorSpec& t : schema_) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      if (t.dtype == DType::kFloat32) floats += n;
    }
    return 2 * 4 * floats;  // m and v.
  }

 private:
  absl::StatusOr<ModelState> Step(const FitRound& round,
                                  const ModelState& global) override {
    ASSIGN_OR_RETURN(ModelState mean, RoundMean(round, global));
    backup_ = optimizer_->SaveState();
    ModelState next = global.Clone();
    absl::Status stepped = optimizer_->Step(mean, next);
    // Moments that overflowed float32 would poison every later round (and
    // the checkpoint): refuse the round instead.
    if (stepped.ok()) {
      absl::Status state = optimizer_->CheckState();
      if (!state.ok()) {
        stepped = absl::InvalidArgumentError(
            absl::StrCat("the server optimizer's moments would not be finite (",
                         state.message(), "); the round is refused"));
      }
    }
    if (stepped.ok()) {
      // Counters (int64) take the agents' maxima, as in FedAvg.
      for (size_t i = 0; i < next.size(); ++i) {
        if (next.tensor(i).dtype() != DType::kInt64) continue;
        std::copy(mean.tensor(i).int64s().begin(),
                  mean.tensor(i).int64s().end(),
                  next.mutable_tensor(i).mutable_int64s().begin());
      }
      if (CheckFinite(next).ok()) return next;
    }
    FEDGE_CHECK(optimizer_->RestoreState(backup_, schema_).ok());
    if (!stepped.ok()) return stepped;
    return next;  // Not finite: refused by the caller.
  }
  void ResetMore() override { backup_.clear(); }

  std::unique_ptr<AdaptiveServerOptimizer> optimizer_;
  std::string backup_;
};

class Scaffold final : public MeanStrategy {
 public:
  Scaffold(const StrategyOptions& options, const ModelState& model)
      : MeanStrategy(options, model),
        control_(ScaffoldZeros(SchemaOf(model), kScaffoldControlPrefix)),
        dc_sum_(ScaffoldZeros(SchemaOf(model), kScaffoldDeltaPrefix)) {}

  ModelSchema ExtrasSchema(const ModelSchema& model) const override {
    return ScaffoldSchema(model, kScaffoldDeltaPrefix);
  }
  const ModelState* BroadcastExtras() const override { return &control_; }
  absl::string_view client_algorithm() const override { return "scaffold"; }

  std::string SaveState() const override { return EncodeModel(control_); }
  absl::Status RestoreState(absl::string_view bytes,
                            const ModelSchema& schema) override {
    ASSIGN_OR_RETURN(
        std::optional<ModelState> c,
        DecodeStateModel(bytes, ScaffoldSchema(schema, kScaffoldControlPrefix),
                         "scaffold's control variate"));
    if (c.has_value()) control_ = *std::move(c);
    return absl::OkStatus();
  }
  int64_t StateBytes() const override { return 2 * control_.NumBytes(); }

 private:
  absl::Status CheckMore(const FitResult& r) const override {
    if (r.extras == nullptr || r.extras->size() == 0) {
      return absl::InvalidArgumentError(
          "scaffold needs the agent's control-variate delta with its update "
          "(tensors scaffold.dc/*); the agent sent none");
    }
    return dc_sum_.Validate(*r.extras, 1.0);
  }
  void AddMore(const FitResult& r) override {
    dc_sum_.AddValidated(*r.extras, 1.0);
  }
  void ResetMore() override {
    dc_sum_.Reset();
    next_control_.reset();
  }
  absl::StatusOr<ModelState> Step(const FitRound& round,
                                  const ModelState& global) override {
    ASSIGN_OR_RETURN(ModelState next, sum_.MeanPlus(global, LearningRate(1.0)));
    // c += |S| / N * mean(dc): dc_sum_ is unweighted, so its mean times
    // |S| / N is the sum over S divided by N.
    const double n = std::max<double>(round.num_available,
                                      static_cast<double>(num_updates()));
    ASSIGN_OR_RETURN(ModelState mean_dc, dc_sum_.Mean());
    next_control_ = control_.Clone();
    RETURN_IF_ERROR(AddScaledInPlace(*next_control_,
                                     RenamedLike(mean_dc, *next_control_),
                                     static_cast<float>(num_updates() / n)));
    RETURN_IF_ERROR(CheckFinite(*next_control_));
    return next;
  }
  void Commit() override { control_ = *std::move(next_control_); }

  // `from` with the tensor names of `like` (same shapes), for arithmetic.
  static ModelState RenamedLike(ModelState& from, const ModelState& like) {
    ModelState out;
    for (size_t i = 0; i < from.size(); ++i) {
      TensorBuffer& t = from.mutable_tensor(i);
      absl::StatusOr<TensorBuffer> r = TensorBuffer::FromFloats(
          like.tensor(i).name(), t.shape(), t.floats());
      FEDGE_CHECK(r.ok()) << r.status();
      out.Add(*std::move(r));
    }
    return out;
  }

  ModelState control_;
  WeightedMeanAccumulator dc_sum_;
  std::optional<ModelState> next_control_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Strategy>> NewMeanStrategy(
    const StrategyOptions& o, const ModelState& model) {
  const std::string& n = o.name;
  if (n == "fedavg" || n == "fedprox") {
    StrategyOptions fed = o;
    if (n == "fedprox") fed.plan.proximal_mu = o.proximal_mu;
    return std::unique_ptr<Strategy>(new MeanStrategy(fed, model));
  }
  if (n == "fedavgm") return std::unique_ptr<Strategy>(new FedAvgM(o, model));
  if (n == "fednova") return std::unique_ptr<Strategy>(new FedNova(o, model));
  if (n == "scaffold") return std::unique_ptr<Strategy>(new Scaffold(o, model));
  if (n == "norm_bounded") {
    return std::unique_ptr<Strategy>(new NormBounded(o, model));
  }
  AdaptiveServerOptimizer::Options opt;
  opt.kind = n == "fedadam"   ? AdaptiveServerOptimizer::Kind::kAdam
             : n == "fedyogi" ? AdaptiveServerOptimizer::Kind::kYogi
                              : AdaptiveServerOptimizer::Kind::kAdagrad;
  if (n != "fedadam" && n != "fedyogi" && n != "fedadagrad") {
    return absl::InvalidArgumentError(
        absl::StrCat("strategy.name '", n, "' is not a streaming strategy"));
  }
  if (o.server_learning_rate >= 0) opt.learning_rate = o.server_learning_rate;
  opt.beta1 = o.beta1;
  opt.beta2 = o.beta2;
  opt.tau = o.tau;
  ASSIGN_OR_RETURN(auto optimizer, AdaptiveServerOptimizer::Create(opt));
  return std::unique_ptr<Strategy>(
      new Adaptive(o, model, std::move(optimizer)));
}

}  // namespace fedge
