#include "common/strategy.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/fl_config.h"
#include "common/model_codec.h"
#include "common/scaffold.h"
#include "common/tensor_buffer.h"
#include "fedge/v1/config.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_tensors.h"

namespace fedge {
namespace {

using testing::Floats;
using testing::Int64s;
using testing::Model;

using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::FloatEq;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::IsNull;
using ::testing::NotNull;
using ::testing::SizeIs;

constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kFailedPrecondition =
    absl::StatusCode::kFailedPrecondition;
constexpr absl::StatusCode kResourceExhausted =
    absl::StatusCode::kResourceExhausted;
constexpr absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;

// ---------------------------------------------------------------------------
// Tiny models, checked by hand.

// A SCAFFOLD control-variate delta for Model(): "scaffold.dc/w", "/b".
ModelState Dc(float w0, float w1, float b) {
  ModelState m;
  m.Add(Floats("scaffold.dc/w", {w0, w1}));
  m.Add(Floats("scaffold.dc/b", {b}));
  return m;
}

std::vector<float> Values(const ModelState& m, const std::string& name) {
  const TensorBuffer* t = m.Find(name);
  EXPECT_THAT(t, NotNull()) << name;
  if (t == nullptr) return {};
  return std::vector<float>(t->floats().begin(), t->floats().end());
}
std::vector<float> W(const ModelState& m) { return Values(m, "w"); }
float B(const ModelState& m) { return Values(m, "b").at(0); }
int64_t Count(const ModelState& m) {
  const TensorBuffer* t = m.Find("count");
  EXPECT_THAT(t, NotNull());
  return t == nullptr ? -1 : t->int64s()[0];
}

ModelState ZerosOf(const ModelSchema& schema) {
  ModelState out;
  for (const TensorSpec& t : schema) {
    out.Add(*TensorBuffer::Zeros(t.name, t.dtype, t.shape));
  }
  return out;
}

AgentInfo Agent(std::string id) {
  AgentInfo a;
  a.id = std::move(id);
  return a;
}

StrategyOptions Options(const std::string& name) {
  StrategyOptions o;
  o.name = name;
  return o;
}

std::unique_ptr<Strategy> Make(const StrategyOptions& o,
                               const ModelState& model = Model(0, 0, 0)) {
  absl::StatusOr<std::unique_ptr<Strategy>> s = CreateStrategy(o, model);
  EXPECT_TRUE(s.ok()) << o.name << ": " << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

// An update as an agent sends it. `extras` unset: zeros of the strategy's
// ExtrasSchema (so SCAFFOLD gets a valid, neutral control-variate delta).
struct Update {
  ModelState delta;
  double num_examples = 1;
  int64_t num_steps = 1;
  std::optional<ModelState> extras;
};

Update U(ModelState delta, double num_examples = 1, int64_t num_steps = 1) {
  return {std::move(delta), num_examples, num_steps, std::nullopt};
}

// The FitResult of `u` (pointing into `delta` and `extras`, which the
// caller keeps alive).
FitResult ResultOf(const Strategy& s, const Update& u, ModelState& delta,
                   ModelState& extras) {
  delta = u.delta.Clone();
  if (u.extras.has_value()) {
    extras = u.extras->Clone();
  } else {
    extras = ZerosOf(s.ExtrasSchema(SchemaOf(u.delta)));
  }
  FitResult r;
  r.agent_id = "agent";
  r.num_examples = u.num_examples;
  r.num_steps = u.num_steps;
  r.metrics.num_examples = static_cast<int64_t>(u.num_examples);
  r.metrics.num_steps = u.num_steps;
  r.delta = &delta;
  r.extras = extras.size() > 0 ? &extras : nullptr;
  return r;
}

absl::Status Fold(Strategy& s, const Update& u) {
  ModelState delta, extras;
  return s.AddUpdate(ResultOf(s, u, delta, extras));
}

absl::Status Check(const Strategy& s, const Update& u) {
  ModelState delta, extras;
  return s.CheckUpdate(ResultOf(s, u, delta, extras));
}

// AggregateFit of the round folded so far; expects success.
ModelState Next(Strategy& s, const ModelState& global, int64_t round = 1,
                int64_t num_available = 0) {
  FitRound r;
  r.round = round;
  r.num_available = num_available;
  absl::StatusOr<ModelState> next = s.AggregateFit(r, global);
  EXPECT_TRUE(next.ok()) << s.name() << ": " << next.status();
  return next.ok() ? *std::move(next) : ModelState();
}

absl::Status AggregateStatus(Strategy& s, const ModelState& global) {
  return s.AggregateFit(FitRound{1, 0, {}}, global).status();
}

bool IsAdaptive(const std::string& name) {
  return name == "fedadam" || name == "fedyogi" || name == "fedadagrad";
}

// ---------------------------------------------------------------------------
// The averaging strategies, by hand.

TEST(StrategyTest, FedAvg_ExampleWeightedMean) {
  std::unique_ptr<Strategy> s = Make(Options("fedavg"));
  ASSERT_EQ(Fold(*s, U(Model(1, 0, 2, 5), 1)), absl::OkStatus());
  ASSERT_EQ(Fold(*s, U(Model(4, 3, -1, 7), 3)), absl::OkStatus());
  EXPECT_EQ(s->num_updates(), 2);
  ModelState next = Next(*s, Model(1, 2, 0.5f, 3));
  // mean(w) = (1 * [1, 0] + 3 * [4, 3]) / 4 = [3.25, 2.25],
  // mean(b) = (1 * 2 + 3 * -1) / 4 = -0.25, count = max(5, 7).
  EXPECT_THAT(W(next), ElementsAre(FloatEq(4.25f), FloatEq(4.25f)));
  EXPECT_FLOAT_EQ(B(next), 0.25f);
  EXPECT_EQ(Count(next), 7);
  EXPECT_EQ(s->num_updates(), 0);  // The round is forgotten.
  EXPECT_EQ(s->client_algorithm(), "");
  EXPECT_THAT(s->BroadcastExtras(), IsNull());
  EXPECT_THAT(s->ExtrasSchema(SchemaOf(Model(0, 0, 0))), IsEmpty());
}

TEST(StrategyTest, FedAvg_ServerLearningRateScalesTheMean) {
  StrategyOptions o = Options("fedavg");
  o.server_learning_rate = 0.5;
  std::unique_ptr<Strategy> s = Make(o);
  ASSERT_EQ(Fold(*s, U(Model(2, -4, 8))), absl::OkStatus());
  ModelState next = Next(*s, Model(1, 1, 1));
  EXPECT_THAT(W(next), ElementsAre(FloatEq(2), FloatEq(-1)));
  EXPECT_FLOAT_EQ(B(next), 5);
}

TEST(StrategyTest, FedProx_PlanCarriesProximalMu_AggregatesAsFedAvg) {
  StrategyOptions o = Options("fedprox");
  o.proximal_mu = 0.25;
  o.count = 3;
  std::unique_ptr<Strategy> prox = Make(o);
  std::vector<AgentInfo> agents = {Agent("a"), Agent("b"), Agent("c")};
  std::vector<FitInstruction> fit = prox->ConfigureFit(1, agents);
  ASSERT_THAT(fit, SizeIs(3));
  for (const FitInstruction& f : fit) EXPECT_EQ(f.plan.proximal_mu, 0.25);

  StrategyOptions avg_options = o;
  avg_options.name = "fedavg";
  std::unique_ptr<Strategy> avg = Make(avg_options);
  for (const FitInstruction& f : avg->ConfigureFit(1, agents)) {
    EXPECT_EQ(f.plan.proximal_mu, 0.0);  // The base plan's.
  }
  for (Strategy* s : {prox.get(), avg.get()}) {
    ASSERT_EQ(Fold(*s, U(Model(1, 0, 2, 5), 1)), absl::OkStatus());
    ASSERT_EQ(Fold(*s, U(Model(4, 3, -1, 7), 3)), absl::OkStatus());
  }
  EXPECT_EQ(EncodeModel(Next(*prox, Model(1, 2, 0.5f))),
            EncodeModel(Next(*avg, Model(1, 2, 0.5f))));
}

TEST(StrategyTest, FedAvgM_MomentumOverThreeRounds) {
  StrategyOptions o = Options("fedavgm");
  o.server_momentum = 0.5;
  std::unique_ptr<Strategy> s = Make(o);
  // v1 = d1 = [1, 0 | 2]; x1 = x0 + v1.
  ASSERT_EQ(Fold(*s, U(Model(1, 0, 2))), absl::OkStatus());
  ModelState x1 = Next(*s, Model(1, 2, 0.5f), 1);
  EXPECT_THAT(W(x1), ElementsAre(FloatEq(2), FloatEq(2)));
  EXPECT_FLOAT_EQ(B(x1), 2.5f);
  // v2 = 0.5 v1 + d2 = [0.5, 1 | 1]; the mean of two updates is d2.
  ASSERT_EQ(Fold(*s, U(Model(0, 2, 0), 1)), absl::OkStatus());
  ASSERT_EQ(Fold(*s, U(Model(0, 0, 0), 1)), absl::OkStatus());
  ModelState x2 = Next(*s, x1, 2);
  EXPECT_THAT(W(x2), ElementsAre(FloatEq(2.5f), FloatEq(3)));
  EXPECT_FLOAT_EQ(B(x2), 3.5f);
  // v3 = 0.5 v2 + d3 = [1.25, 1.5 | 0.5].
  ASSERT_EQ(Fold(*s, U(Model(1, 1, 0))), absl::OkStatus());
  ModelState x3 = Next(*s, x2, 3);
  EXPECT_THAT(W(x3), ElementsAre(FloatEq(3.75f), FloatEq(4.5f)));
  EXPECT_FLOAT_EQ(B(x3), 4.0f);
  EXPECT_GT(s->StateBytes(), 0);
}

// Two agents with the same data; plain SGD (lr 1) on a linear objective
// whose gradients are g1 = [1, 0 | 1] and g2 = [0, 1 | 1]; agent i runs
// tau_i local steps, so its delta is tau_i * g_i: tau = 1 and 4.
TEST(StrategyTest, FedNova_NormalizesByLocalSteps) {
  std::unique_ptr<Strategy> avg = Make(Options("fedavg"));
  std::unique_ptr<Strategy> nova = Make(Options("fednova"));
  for (Strategy* s : {avg.get(), nova.get()}) {
    ASSERT_EQ(Fold(*s, U(Model(1, 0, 1), 10, 1)), absl::OkStatus());
    ASSERT_EQ(Fold(*s, U(Model(0, 4, 4), 10, 4)), absl::OkStatus());
  }
  // FedAvg: ([1, 0] + [0, 4]) / 2 = [0.5, 2]: four times further along g2,
  // the agent that ran more steps (objective inconsistency).
  EXPECT_THAT(W(Next(*avg, Model(0, 0, 0))),
              ElementsAre(FloatEq(0.5f), FloatEq(2)));
  // FedNova: tau_eff * sum p_i d_i / tau_i = 2.5 * ([1, 0] + [0, 1]) / 2,
  // with tau_eff = (1 + 4) / 2: both directions weigh the same.
  ModelState next = Next(*nova, Model(0, 0, 0));
  EXPECT_THAT(W(next), ElementsAre(FloatEq(1.25f), FloatEq(1.25f)));
  EXPECT_FLOAT_EQ(B(next), 2.5f);  // 2.5 * (1 + 1) / 2.
}

TEST(StrategyTest, FedNova_UnequalData_WeightsNormalizedUpdatesByExamples) {
  std::unique_ptr<Strategy> s = Make(Options("fednova"));
  ASSERT_EQ(Fold(*s, U(Model(1, 0, 0), 30, 1)), absl::OkStatus());
  ASSERT_EQ(Fold(*s, U(Model(0, 4, 0), 10, 4)), absl::OkStatus());
  // p = [0.75, 0.25]; tau_eff = 0.75 * 1 + 0.25 * 4 = 1.75;
  // 1.75 * (0.75 * [1, 0] + 0.25 * [0, 1]) = [1.3125, 0.4375].
  EXPECT_THAT(W(Next(*s, Model(0, 0, 0))),
              ElementsAre(FloatEq(1.3125f), FloatEq(0.4375f)));
}

TEST(StrategyTest, FedNova_LocalMomentum_NormalizesByEffectiveSteps) {
  // SGD with momentum rho = 0.5 (lr 1) on a constant gradient g moves
  // sum_{k=1..tau} g (1 - rho^k) / (1 - rho) = a(tau) g, with
  // a(tau) = (tau - rho (1 - rho^tau) / (1 - rho)) / (1 - rho):
  // a(1) = 1, a(4) = (4 - 0.5 * 0.9375 / 0.5) / 0.5 = 6.125.
  StrategyOptions o = Options("fednova");
  o.plan.momentum = 0.5;
  std::unique_ptr<Strategy> s = Make(o);
  ASSERT_EQ(Fold(*s, U(Model(1, 0, 0), 10, 1)), absl::OkStatus());
  ASSERT_EQ(Fold(*s, U(Model(0, 6.125f, 0), 10, 4)), absl::OkStatus());
  // tau_eff = (1 + 6.125) / 2 = 3.5625; 3.5625 * ([1, 0] + [0, 1]) / 2.
  EXPECT_THAT(
      W(Next(*s, Model(0, 0, 0))),
      ElementsAre(FloatNear(1.78125f, 1e-6), FloatNear(1.78125f, 1e-6)));
}

TEST(StrategyTest, FedNova_EqualStepsEqualsFedAvg) {
  std::unique_ptr<Strategy> avg = Make(Options("fedavg"));
  std::unique_ptr<Strategy> nova = Make(Options("fednova"));
  for (Strategy* s : {avg.get(), nova.get()}) {
    ASSERT_EQ(Fold(*s, U(Model(1, 0, 2, 5), 1, 3)), absl::OkStatus());
    ASSERT_EQ(Fold(*s, U(Model(4, 3, -1, 7), 3, 3)), absl::OkStatus());
  }
  ModelState a = Next(*avg, Model(1, 2, 0.5f));
  ModelState n = Next(*nova, Model(1, 2, 0.5f));
  EXPECT_THAT(W(n), ElementsAre(FloatEq(W(a)[0]), FloatEq(W(a)[1])));
  EXPECT_FLOAT_EQ(B(n), B(a));
  EXPECT_EQ(Count(n), 7);
}

TEST(StrategyTest, FedNova_UpdateWithoutNumSteps_InvalidArgument) {
  std::unique_ptr<Strategy> s = Make(Options("fednova"));
  absl::Status st = Fold(*s, U(Model(1, 1, 1), 10, 0));
  EXPECT_EQ(st.code(), kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("num_steps"));
  EXPECT_EQ(Check(*s, U(Model(1, 1, 1), 10, -3)).code(), kInvalidArgument);
  EXPECT_EQ(s->num_updates(), 0);
  // FedAvg does not need the step count.
  EXPECT_EQ(Fold(*Make(Options("fedavg")), U(Model(1, 1, 1), 10, 0)),
            absl::OkStatus());
}

// Reddi et al. 2021, Algorithm 2 without bias correction; defaults
// eta = 0.01 (server_learning_rate < 0), beta1 = 0.9, beta2 = 0.99,
// tau = 1e-3; m0 = 0, v0 = tau^2 = 1e-6. Global [1, 2 | 0.5]; mean deltas
// d1 = [1, -0.5 | 0], d2 = [0.5, 0.5 | 0]. By hand for Adam, step 1, w[0]:
//   m = 0.1 * 1 = 0.1, v = 0.99e-6 + 0.01 * 1 = 0.01000099,
//   x = 1 + 0.01 * 0.1 / (sqrt(0.01000099) + 0.001) = 1.00990045;
// step 2: m = 0.09 + 0.05 = 0.14, v = 0.99 * 0.01000099 + 0.01 * 0.25,
//   x = 1.00990045 + 0.01 * 0.14 / (sqrt(0.01240098) + 0.001) = 1.02236044.
// Yogi's first v is v0 + 0.01 d^2 too (v0 < d^2); Adagrad's is v0 + d^2.
// b's delta is 0: m and the step stay 0.
struct AdaptiveCase {
  std::string name;
  float step1[2];
  float step2[2];
};

void PrintTo(const AdaptiveCase& c, std::ostream* os) { *os << c.name; }

class AdaptiveStrategyTest : public ::testing::TestWithParam<AdaptiveCase> {};

TEST_P(AdaptiveStrategyTest, OneAndTwoStepsByHand) {
  const AdaptiveCase& c = GetParam();
  std::unique_ptr<Strategy> s = Make(Options(c.name));
  ASSERT_EQ(Fold(*s, U(Model(2, -1, 0, 4))), absl::OkStatus());
  ASSERT_EQ(Fold(*s, U(Model(0, 0, 0, 6))), absl::OkStatus());
  ModelState x1 = Next(*s, Model(1, 2, 0.5f, 1), 1);
  EXPECT_THAT(W(x1), ElementsAre(FloatNear(c.step1[0], 1e-6),
                                 FloatNear(c.step1[1], 1e-6)));
  EXPECT_FLOAT_EQ(B(x1), 0.5f);
  EXPECT_EQ(Count(x1), 6);  // Counters take the agents' maxima.
  ASSERT_EQ(Fold(*s, U(Model(0.5f, 0.5f, 0, 2))), absl::OkStatus());
  ModelState x2 = Next(*s, x1, 2);
  EXPECT_THAT(W(x2), ElementsAre(FloatNear(c.step2[0], 1e-6),
                                 FloatNear(c.step2[1], 1e-6)));
  EXPECT_FLOAT_EQ(B(x2), 0.5f);
  EXPECT_EQ(Count(x2), 2);
}

INSTANTIATE_TEST_SUITE_P(
    Reddi2021, AdaptiveStrategyTest,
    ::testing::Values(AdaptiveCase{"fedadam",
                                   {1.00990045f, 1.99019802f},
                                   {1.02236044f, 1.99089694f}},
                      AdaptiveCase{"fedyogi",
                                   {1.00990045f, 1.99019802f},
                                   {1.02231097f, 1.99089515f}},
                      AdaptiveCase{"fedadagrad",
                                   {1.00099897f, 1.99900198f},
                                   {1.00225008f, 1.99907255f}}),
    [](const ::testing::TestParamInfo<AdaptiveCase>& info) {
      return info.param.name;
    });

TEST(StrategyTest, FedAdam_ExplicitServerLearningRate) {
  StrategyOptions o = Options("fedadam");
  o.server_learning_rate = 0.1;  // Ten times the default step.
  std::unique_ptr<Strategy> s = Make(o);
  ASSERT_EQ(Fold(*s, U(Model(1, 0, 0))), absl::OkStatus());
  EXPECT_THAT(W(Next(*s, Model(1, 2, 0.5f))),
              ElementsAre(FloatNear(1.0990045f, 1e-6), FloatEq(2)));
}

// A pseudo-gradient that is finite but whose square overflows float32
// (|d| > ~1.8e19) must not leave moments that the strategy's own
// RestoreState refuses: either the round is refused (INVALID_ARGUMENT,
// state unchanged), or the state stays restorable (a resumed run equals an
// uninterrupted one, strategy.h).
TEST_P(AdaptiveStrategyTest, HugeFiniteUpdate_StateStaysRestorable) {
  std::unique_ptr<Strategy> s = Make(Options(GetParam().name));
  const std::string before = s->SaveState();
  ASSERT_EQ(Fold(*s, U(Model(1e30f, 0, 0))), absl::OkStatus());
  absl::StatusOr<ModelState> next = s->AggregateFit({1, 1, {}}, Model(0, 0, 0));
  if (!next.ok()) {
    EXPECT_EQ(next.status().code(), kInvalidArgument);
    EXPECT_EQ(s->SaveState(), before);
    return;
  }
  std::unique_ptr<Strategy> resumed = Make(Options(GetParam().name));
  EXPECT_EQ(resumed->RestoreState(s->SaveState(), SchemaOf(Model(0, 0, 0))),
            absl::OkStatus());
}

// After such an update, a later round whose aggregate is not finite must
// be refused with INVALID_ARGUMENT like any other (run in a child process:
// a crash there fails this test instead of ending the test binary).
TEST_P(AdaptiveStrategyTest, HugeFiniteUpdate_LaterNonFiniteRoundIsRefused) {
  EXPECT_EXIT(
      {
        StrategyOptions o = Options(GetParam().name);
        o.server_learning_rate = 1e38;
        std::unique_ptr<Strategy> s = Make(o);
        if (!Fold(*s, U(Model(1e30f, 0, 0))).ok()) std::exit(1);
        // Accepted or refused, both are fine here.
        s->AggregateFit({1, 1, {}}, Model(0, 0, 0)).status().IgnoreError();
        if (!Fold(*s, U(Model(1, 1, 1))).ok()) std::exit(2);
        const float max = std::numeric_limits<float>::max();
        absl::Status st =
            s->AggregateFit({2, 1, {}}, Model(max, max, max)).status();
        std::exit(st.code() == kInvalidArgument ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(StrategyTest, Scaffold_ServerControlVariate_ByHand) {
  std::unique_ptr<Strategy> s = Make(Options("scaffold"));
  EXPECT_EQ(s->client_algorithm(), "scaffold");
  // An update carries one "scaffold.dc/<name>" per float32 model tensor.
  ModelSchema extras = s->ExtrasSchema(SchemaOf(Model(0, 0, 0)));
  ASSERT_THAT(extras, SizeIs(2));
  EXPECT_EQ(extras[0].name, "scaffold.dc/w");
  EXPECT_THAT(extras[0].shape, ElementsAre(2));
  EXPECT_EQ(extras[1].name, "scaffold.dc/b");
  // Agents receive c = 0 at first, as "scaffold.c/<name>".
  const ModelState* c = s->BroadcastExtras();
  ASSERT_THAT(c, NotNull());
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ(c->tensor(0).name(), "scaffold.c/w");
  EXPECT_EQ(c->tensor(1).name(), "scaffold.c/b");
  EXPECT_THAT(Values(*c, "scaffold.c/w"), ElementsAre(0, 0));

  // Round 1: N = 4 agents available, |S| = 2 report.
  ASSERT_EQ(Fold(*s, {Model(1, 2, 3, 1), 1, 5, Dc(1, 2, 4)}), absl::OkStatus());
  ASSERT_EQ(Fold(*s, {Model(3, 2, 1, 2), 3, 5, Dc(3, 0, 0)}), absl::OkStatus());
  ModelState x1 = Next(*s, Model(0, 0, 0), 1, /*num_available=*/4);
  // x += example-weighted mean delta: ([1, 2] + 3 [3, 2]) / 4, (3 + 3) / 4.
  EXPECT_THAT(W(x1), ElementsAre(FloatEq(2.5f), FloatEq(2)));
  EXPECT_FLOAT_EQ(B(x1), 1.5f);
  EXPECT_EQ(Count(x1), 2);
  // c += |S| / N * mean(dc) = 2 / 4 * ([2, 1], [2]).
  c = s->BroadcastExtras();
  EXPECT_THAT(Values(*c, "scaffold.c/w"), ElementsAre(FloatEq(1), 0.5f));
  EXPECT_THAT(Values(*c, "scaffold.c/b"), ElementsAre(FloatEq(1)));

  // Round 2: one of 4 reports: c += 1 / 4 * [2, 2 | 2].
  ASSERT_EQ(Fold(*s, {Model(0, 0, 0), 1, 5, Dc(2, 2, 2)}), absl::OkStatus());
  Next(*s, x1, 2, 4);
  EXPECT_THAT(Values(*s->BroadcastExtras(), "scaffold.c/w"),
              ElementsAre(FloatEq(1.5f), FloatEq(1)));
  EXPECT_THAT(Values(*s->BroadcastExtras(), "scaffold.c/b"),
              ElementsAre(FloatEq(1.5f)));

  // N is never below |S| (a roster that shrank): c += 1 * dc.
  ASSERT_EQ(Fold(*s, {Model(0, 0, 0), 1, 5, Dc(1, 1, 1)}), absl::OkStatus());
  Next(*s, x1, 3, 0);
  EXPECT_THAT(Values(*s->BroadcastExtras(), "scaffold.c/w"),
              ElementsAre(FloatEq(2.5f), FloatEq(2)));
}

TEST(StrategyTest, Scaffold_UpdateWithoutItsControlVariate_InvalidArgument) {
  std::unique_ptr<Strategy> s = Make(Options("scaffold"));
  ModelState delta = Model(1, 1, 1);
  FitResult r;
  r.num_examples = 1;
  r.num_steps = 1;
  r.delta = &delta;
  absl::Status st = s->AddUpdate(r);  // extras null.
  EXPECT_EQ(st.code(), kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("scaffold.dc/"));
  ModelState empty;
  r.extras = &empty;
  EXPECT_EQ(s->CheckUpdate(r).code(), kInvalidArgument);
  // The server's names instead of the delta's.
  ModelState wrong;
  wrong.Add(Floats("scaffold.c/w", {0, 0}));
  wrong.Add(Floats("scaffold.c/b", {0}));
  r.extras = &wrong;
  EXPECT_EQ(s->AddUpdate(r).code(), kInvalidArgument);
  ModelState nan = Dc(std::numeric_limits<float>::quiet_NaN(), 0, 0);
  r.extras = &nan;
  EXPECT_EQ(s->AddUpdate(r).code(), kInvalidArgument);
  EXPECT_EQ(s->num_updates(), 0);
}

TEST(StrategyTest, NormBounded_ClipsEachUpdate) {
  StrategyOptions o = Options("norm_bounded");
  o.max_update_norm = 5;
  std::unique_ptr<Strategy> s = Make(o);
  // |[30, 40, 0]| = 50 -> [3, 4, 0]; |[0, 0, 3]| = 3 stays.
  ASSERT_EQ(Fold(*s, U(Model(30, 40, 0, 9))), absl::OkStatus());
  ASSERT_EQ(Fold(*s, U(Model(0, 0, 3, 2))), absl::OkStatus());
  ModelState next = Next(*s, Model(1, 1, 1));
  EXPECT_THAT(W(next), ElementsAre(FloatEq(2.5f), FloatEq(3)));
  EXPECT_FLOAT_EQ(B(next), 2.5f);
  EXPECT_EQ(Count(next), 9);  // Counters are not clipped.
}

// ---------------------------------------------------------------------------
// The robust strategies.

// 8 honest updates near 1 and 2 poisoned ones at -1000 (all coordinates).
// Counters: honest 1, poisoned 2.
void FoldPoisonedRound(Strategy& s) {
  for (float h : {0.9f, 0.95f, 0.98f, 1.0f, 1.0f, 1.02f, 1.05f, 1.1f}) {
    ASSERT_EQ(Fold(s, U(Model(h, h, h, 1), 100)), absl::OkStatus());
  }
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(Fold(s, U(Model(-1000, -1000, -1000, 2), 1000)),
              absl::OkStatus());
  }
}

TEST(StrategyTest, FedAvg_IsPulledByOutliers) {
  std::unique_ptr<Strategy> s = Make(Options("fedavg"));
  FoldPoisonedRound(*s);
  // (800 * 1.0 - 2000 * 1000) / 2800: far from the honest value.
  EXPECT_LT(W(Next(*s, Model(0, 0, 0)))[0], -700);
}

TEST(StrategyTest, Median_IgnoresOutliers) {
  std::unique_ptr<Strategy> s = Make(Options("median"));
  FoldPoisonedRound(*s);
  EXPECT_EQ(s->num_updates(), 10);
  EXPECT_GT(s->StateBytes(), 0);
  ModelState next = Next(*s, Model(0, 0, 0));
  // Sorted: -1000, -1000, 0.9, 0.95, 0.98 | 1.0, ...: (0.98 + 1.0) / 2.
  EXPECT_THAT(W(next),
              ElementsAre(FloatNear(0.99f, 1e-6), FloatNear(0.99f, 1e-6)));
  EXPECT_NEAR(B(next), 0.99f, 1e-6);
  EXPECT_EQ(Count(next), 2);
  EXPECT_EQ(s->StateBytes(), 0);
}

TEST(StrategyTest, TrimmedMean_IgnoresOutliers) {
  StrategyOptions o = Options("trimmed_mean");
  o.trim_beta = 0.2;  // Drops 2 of 10 at each end.
  std::unique_ptr<Strategy> s = Make(o);
  FoldPoisonedRound(*s);
  // Sorted: -1000, -1000 | 0.9, 0.95, 0.98, 1.0, 1.0, 1.02 | 1.05, 1.1;
  // the mean of the middle six is 5.85 / 6 = 0.975.
  ModelState next = Next(*s, Model(1, 1, 1));
  EXPECT_THAT(W(next),
              ElementsAre(FloatNear(1.975f, 1e-6), FloatNear(1.975f, 1e-6)));
}

TEST(StrategyTest, Krum_PicksAnHonestUpdate) {
  StrategyOptions o = Options("krum");
  o.krum_f = 2;
  o.min_fit_agents = 7;  // 2f + 3.
  std::unique_ptr<Strategy> s = Make(o);
  FoldPoisonedRound(*s);
  ModelState next = Next(*s, Model(0, 0, 0));
  // Scores (squared distances to the 6 nearest): 0.98 and 1.02 lowest.
  EXPECT_THAT(W(next)[0], AnyOf(FloatEq(0.98f), FloatEq(1.02f)));
  EXPECT_EQ(W(next)[0], W(next)[1]);
  EXPECT_EQ(Count(next), 1);  // The chosen update's counter.
}

TEST(StrategyTest, MultiKrum_AveragesTheHonestUpdates) {
  StrategyOptions o = Options("multi_krum");
  o.krum_f = 2;
  o.min_fit_agents = 7;
  std::unique_ptr<Strategy> s = Make(o);  // krum_m 0: n - f = 8 kept.
  FoldPoisonedRound(*s);
  ModelState next = Next(*s, Model(0, 0, 0));
  // The plain mean of the 8 honest updates: 8.0 / 8.
  EXPECT_THAT(W(next), ElementsAre(FloatNear(1, 1e-6), FloatNear(1, 1e-6)));
  EXPECT_EQ(Count(next), 1);
}

TEST(StrategyTest, Robust_IgnoreExampleCounts) {
  std::unique_ptr<Strategy> s = Make(Options("median"));
  ASSERT_EQ(Fold(*s, U(Model(1, 1, 1), 1)), absl::OkStatus());
  ASSERT_EQ(Fold(*s, U(Model(2, 2, 2), 1)), absl::OkStatus());
  ASSERT_EQ(Fold(*s, U(Model(9, 9, 9), 1e9)), absl::OkStatus());
  EXPECT_THAT(W(Next(*s, Model(0, 0, 0))), ElementsAre(FloatEq(2), FloatEq(2)));
}

TEST(StrategyTest, Robust_BufferLimit_ResourceExhausted) {
  StrategyOptions o = Options("median");
  o.max_buffered_updates = 2;
  std::unique_ptr<Strategy> s = Make(o);
  ASSERT_EQ(Fold(*s, U(Model(1, 1, 1))), absl::OkStatus());
  ASSERT_EQ(Fold(*s, U(Model(3, 3, 3))), absl::OkStatus());
  EXPECT_EQ(Check(*s, U(Model(100, 100, 100))).code(), kResourceExhausted);
  absl::Status full = Fold(*s, U(Model(100, 100, 100)));
  EXPECT_EQ(full.code(), kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("max_buffered_updates = 2"));
  EXPECT_EQ(s->num_updates(), 2);
  EXPECT_THAT(W(Next(*s, Model(0, 0, 0))), ElementsAre(FloatEq(2), FloatEq(2)));
  // A new round has room again.
  EXPECT_EQ(Fold(*s, U(Model(1, 1, 1))), absl::OkStatus());
}

TEST(StrategyTest, Krum_TooFewUpdates_FailedPrecondition_RoundForgotten) {
  StrategyOptions o = Options("krum");
  o.krum_f = 1;
  o.min_fit_agents = 5;
  std::unique_ptr<Strategy> s = Make(o);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(Fold(*s, U(Model(1, 1, 1))), absl::OkStatus());
  }
  absl::Status st = AggregateStatus(*s, Model(0, 0, 0));
  EXPECT_EQ(st.code(), kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("needs at least 5"));
  EXPECT_EQ(s->num_updates(), 0);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Fold(*s, U(Model(2, 2, 2))), absl::OkStatus());
  }
  EXPECT_THAT(W(Next(*s, Model(0, 0, 0))), ElementsAre(FloatEq(2), FloatEq(2)));
}

// ---------------------------------------------------------------------------
// The contract every strategy keeps.

// Options under which every strategy aggregates 3 updates as they come
// (Krum with f = 0 needs 3; no clipping).
StrategyOptions ContractOptions(const std::string& name) {
  StrategyOptions o = Options(name);
  o.krum_f = 0;
  o.min_fit_agents = 3;
  o.max_update_norm = 1e300;
  return o;
}

// Good update i of a round (SCAFFOLD: with a control-variate delta).
Update Good(int i, int round = 1) {
  const float v = static_cast<float>(i + round);
  return {Model(v, -v, 0.5f * i, 10 + i), 10.0 * (i + 1), i + 1,
          Dc(v, 1, -0.5f * v)};
}

ModelState Round(Strategy& s, const ModelState& global, int round) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Fold(s, Good(i, round)), absl::OkStatus()) << s.name();
  }
  return Next(s, global, round, /*num_available=*/5);
}

class StrategyContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<Strategy> MakeIt() { return Make(ContractOptions(name())); }
  const std::string& name() const { return GetParam(); }
};

TEST_P(StrategyContractTest, NameAndOptions) {
  std::unique_ptr<Strategy> s = MakeIt();
  EXPECT_EQ(s->name(), name());
  EXPECT_EQ(s->options().min_fit_agents, 3);
}

TEST_P(StrategyContractTest, BadUpdates_InvalidArgument_ChangeNothing) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<std::pair<std::string, std::function<ModelState()>>> bad = {
      {"renamed tensor",
       [] {
         ModelState m;
         m.Add(Floats("v", {1, 1}));
         m.Add(Int64s("count", {1}));
         m.Add(Floats("b", {1}));
         return m;
       }},
      {"wrong shape",
       [] {
         ModelState m;
         m.Add(Floats("w", {1, 1, 1}));
         m.Add(Int64s("count", {1}));
         m.Add(Floats("b", {1}));
         return m;
       }},
      {"wrong dtype",
       [] {
         ModelState m;
         m.Add(Floats("w", {1, 1}));
         m.Add(Floats("count", {1}));
         m.Add(Floats("b", {1}));
         return m;
       }},
      {"missing tensor",
       [] {
         ModelState m;
         m.Add(Floats("w", {1, 1}));
         m.Add(Int64s("count", {1}));
         return m;
       }},
      {"NaN", [nan] { return Model(1, nan, 1); }},
      {"infinity", [inf] { return Model(1, 1, -inf); }},
  };
  std::unique_ptr<Strategy> s = MakeIt();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Fold(*s, Good(i)), absl::OkStatus());
    for (const auto& [what, make] : bad) {
      Update u = Good(i);
      u.delta = make();
      EXPECT_EQ(Check(*s, u).code(), kInvalidArgument) << what;
      EXPECT_EQ(Fold(*s, u).code(), kInvalidArgument) << what;
      EXPECT_EQ(s->num_updates(), i + 1) << what;
    }
    FitResult no_delta;
    no_delta.num_examples = 1;
    no_delta.num_steps = 1;
    EXPECT_EQ(s->CheckUpdate(no_delta).code(), kInvalidArgument);
    EXPECT_EQ(s->AddUpdate(no_delta).code(), kInvalidArgument);
  }
  std::unique_ptr<Strategy> clean = MakeIt();
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(Fold(*clean, Good(i)), absl::OkStatus());
  EXPECT_EQ(EncodeModel(Next(*s, Model(1, 2, 3))),
            EncodeModel(Next(*clean, Model(1, 2, 3))));
}

TEST_P(StrategyContractTest, NoUpdate_FailedPrecondition) {
  std::unique_ptr<Strategy> s = MakeIt();
  EXPECT_EQ(AggregateStatus(*s, Model(0, 0, 0)).code(), kFailedPrecondition);
  // Also after a completed round.
  Round(*s, Model(0, 0, 0), 1);
  EXPECT_EQ(AggregateStatus(*s, Model(0, 0, 0)).code(), kFailedPrecondition);
}

TEST_P(StrategyContractTest,
       NonFiniteAggregate_InvalidArgument_StateUnchanged) {
  StrategyOptions o = ContractOptions(name());
  // The adaptive step is about eta |m| / sqrt(v) (at most ~eta): a huge
  // eta overflows a global model at FLT_MAX.
  if (IsAdaptive(name())) o.server_learning_rate = 1e38;
  const float big = IsAdaptive(name()) ? 1.0f : 3e38f;
  std::unique_ptr<Strategy> s = Make(o);
  std::unique_ptr<Strategy> twin = Make(o);
  Round(*s, Model(0, 0, 0), 1);
  Round(*twin, Model(0, 0, 0), 1);
  const std::string state = s->SaveState();

  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Fold(*s, {Model(big, big, big, 1), 1, 1, Dc(0, 0, 0)}),
              absl::OkStatus());
  }
  const float max = std::numeric_limits<float>::max();
  const ModelState global = Model(max, max, max);
  absl::StatusOr<ModelState> next = s->AggregateFit({2, 5, {}}, global);
  EXPECT_EQ(next.status().code(), kInvalidArgument);
  EXPECT_THAT(next.status().message(), HasSubstr("not finite"));
  EXPECT_EQ(s->num_updates(), 0);
  EXPECT_EQ(s->SaveState(), state);

  // The next round continues as if the refused one never happened.
  EXPECT_EQ(EncodeModel(Round(*s, Model(1, 1, 1), 3)),
            EncodeModel(Round(*twin, Model(1, 1, 1), 3)));
  EXPECT_EQ(s->SaveState(), twin->SaveState());
}

TEST_P(StrategyContractTest, DiscardRound_Forgets) {
  std::unique_ptr<Strategy> s = MakeIt();
  std::unique_ptr<Strategy> twin = MakeIt();
  const std::string state = s->SaveState();
  ASSERT_EQ(Fold(*s, {Model(50, 50, 50, 99), 1000, 7, Dc(9, 9, 9)}),
            absl::OkStatus());
  ASSERT_EQ(Fold(*s, Good(1)), absl::OkStatus());
  s->DiscardRound();
  EXPECT_EQ(s->num_updates(), 0);
  EXPECT_EQ(s->SaveState(), state);
  EXPECT_EQ(AggregateStatus(*s, Model(0, 0, 0)).code(), kFailedPrecondition);
  EXPECT_EQ(EncodeModel(Round(*s, Model(1, 1, 1), 1)),
            EncodeModel(Round(*twin, Model(1, 1, 1), 1)));
}

TEST_P(StrategyContractTest, Int64CountersTakeTheMaximum) {
  std::unique_ptr<Strategy> s = MakeIt();
  for (int64_t count : {10, 12, 11}) {
    ASSERT_EQ(Fold(*s, {Model(1, 1, 1, count), 1, 1, Dc(0, 0, 0)}),
              absl::OkStatus());
  }
  // Krum keeps one update, and its counter: with equal scores the first.
  EXPECT_EQ(Count(Next(*s, Model(0, 0, 0, 100))), name() == "krum" ? 10 : 12);
}

TEST_P(StrategyContractTest, AggregateFit_DoesNotModifyTheGlobalModel) {
  std::unique_ptr<Strategy> s = MakeIt();
  const ModelState global = Model(1, 2, 3, 4);
  const std::string before = EncodeModel(global);
  Round(*s, global, 1);
  EXPECT_EQ(EncodeModel(global), before);
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, StrategyContractTest,
                         ::testing::ValuesIn(StrategyNames()));

// ---------------------------------------------------------------------------
// State across rounds (the coordinator's checkpoint).

class StatefulStrategyTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<Strategy> MakeIt() {
    return Make(ContractOptions(GetParam()));
  }
};

TEST_P(StatefulStrategyTest, SaveRestore_ContinuesBitIdentically) {
  std::unique_ptr<Strategy> uninterrupted = MakeIt();
  ModelState x = Model(0.5f, -0.25f, 1);
  for (int round = 1; round <= 4; ++round) x = Round(*uninterrupted, x, round);

  std::unique_ptr<Strategy> first = MakeIt();
  ModelState y = Model(0.5f, -0.25f, 1);
  for (int round = 1; round <= 2; ++round) y = Round(*first, y, round);
  const std::string state = first->SaveState();
  EXPECT_FALSE(state.empty());
  std::unique_ptr<Strategy> resumed = MakeIt();
  ASSERT_EQ(resumed->RestoreState(state, SchemaOf(y)), absl::OkStatus());
  EXPECT_EQ(resumed->SaveState(), state);
  for (int round = 3; round <= 4; ++round) y = Round(*resumed, y, round);

  EXPECT_EQ(EncodeModel(y), EncodeModel(x));
  EXPECT_EQ(resumed->SaveState(), uninterrupted->SaveState());
}

TEST_P(StatefulStrategyTest, RestoreBadState_ErrorAndNothingChanged) {
  std::unique_ptr<Strategy> s = MakeIt();
  std::unique_ptr<Strategy> twin = MakeIt();
  ModelState x = Round(*s, Model(0, 0, 0), 1);
  Round(*twin, Model(0, 0, 0), 1);
  const std::string state = s->SaveState();

  // The same strategy's state for another model (w has 3 elements).
  ModelState other;
  other.Add(Floats("w", {1, 2, 3}));
  other.Add(Int64s("count", {0}));
  other.Add(Floats("b", {1}));
  std::unique_ptr<Strategy> for_other =
      Make(ContractOptions(GetParam()), other);
  for (int i = 0; i < 3; ++i) {
    ModelState d;
    d.Add(Floats("w", {1.0f + i, 2, 3}));
    d.Add(Int64s("count", {0}));
    d.Add(Floats("b", {1}));
    Update u{std::move(d), 1, 1, std::nullopt};
    if (GetParam() == "scaffold") {
      ModelState dc;
      dc.Add(Floats("scaffold.dc/w", {1, 1, 1}));
      dc.Add(Floats("scaffold.dc/b", {1}));
      u.extras = std::move(dc);
    }
    ASSERT_EQ(Fold(*for_other, u), absl::OkStatus());
  }
  Next(*for_other, other, 1, 5);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"garbage", "this is not a strategy state"},
      {"truncated", state.substr(0, state.size() - 3)},
      {"trailing bytes", state + "xyz"},
      {"another schema", for_other->SaveState()},
  };
  for (const auto& [what, bytes] : bad) {
    absl::Status st = s->RestoreState(bytes, SchemaOf(x));
    EXPECT_THAT(st.code(), AnyOf(kDataLoss, kInvalidArgument)) << what;
    EXPECT_EQ(s->SaveState(), state) << what;
  }
  EXPECT_EQ(EncodeModel(Round(*s, x, 2)), EncodeModel(Round(*twin, x, 2)));
}

TEST(StrategyTest, FedYogi_RefusesFedAdamState) {
  std::unique_ptr<Strategy> adam = Make(ContractOptions("fedadam"));
  Round(*adam, Model(0, 0, 0), 1);
  std::unique_ptr<Strategy> yogi = Make(ContractOptions("fedyogi"));
  const std::string before = yogi->SaveState();
  absl::Status st =
      yogi->RestoreState(adam->SaveState(), SchemaOf(Model(0, 0, 0)));
  EXPECT_EQ(st.code(), kInvalidArgument);
  EXPECT_EQ(yogi->SaveState(), before);
}

INSTANTIATE_TEST_SUITE_P(WithState, StatefulStrategyTest,
                         ::testing::Values("fedavgm", "fedadam", "fedyogi",
                                           "fedadagrad", "scaffold"));

class StatelessStrategyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StatelessStrategyTest, KeepsNoState_RefusesStateBytes) {
  std::unique_ptr<Strategy> s = Make(ContractOptions(GetParam()));
  Round(*s, Model(0, 0, 0), 1);
  EXPECT_EQ(s->SaveState(), "");
  EXPECT_EQ(s->RestoreState("", SchemaOf(Model(0, 0, 0))), absl::OkStatus());
  absl::Status st = s->RestoreState("state", SchemaOf(Model(0, 0, 0)));
  EXPECT_EQ(st.code(), kDataLoss);
  EXPECT_THAT(st.message(), HasSubstr(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(WithoutState, StatelessStrategyTest,
                         ::testing::Values("fedavg", "fedprox", "fednova",
                                           "median", "trimmed_mean", "krum",
                                           "multi_krum", "norm_bounded"));

// ---------------------------------------------------------------------------
// Selection and plans (configure_fit / configure_evaluate).

std::string AgentName(int i) { return absl::StrCat(i < 10 ? "a0" : "a", i); }

std::vector<AgentInfo> Agents(int n) {
  std::vector<AgentInfo> out;
  for (int i = 0; i < n; ++i) out.push_back(Agent(AgentName(i)));
  return out;
}

std::vector<std::string> Selected(const StrategyOptions& o, int n,
                                  int64_t round = 1) {
  std::vector<std::string> ids;
  for (const FitInstruction& f : Make(o)->ConfigureFit(round, Agents(n))) {
    ids.push_back(f.agent_id);
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
  return ids;
}

TEST(StrategyTest, Selection_ByFraction) {
  StrategyOptions o = Options("fedavg");
  o.fraction = 0.25;
  EXPECT_THAT(Selected(o, 20), SizeIs(5));
  o.fraction = 0.01;  // round(0.2) = 0, but at least one.
  EXPECT_THAT(Selected(o, 20), SizeIs(1));
  o.fraction = 1;
  EXPECT_THAT(Selected(o, 20), SizeIs(20));
}

TEST(StrategyTest, Selection_ByCount_CappedByAvailable) {
  StrategyOptions o = Options("fedavg");
  o.count = 3;
  EXPECT_THAT(Selected(o, 10), SizeIs(3));
  o.count = 5;
  EXPECT_THAT(Selected(o, 3), SizeIs(3));
  EXPECT_THAT(Selected(o, 0), IsEmpty());
}

TEST(StrategyTest, Selection_NeverFewerThanMinFit) {
  StrategyOptions o = Options("fedavg");
  o.fraction = 0.1;
  o.min_fit_agents = 3;
  EXPECT_THAT(Selected(o, 10), SizeIs(3));
  o.count = 2;
  EXPECT_THAT(Selected(o, 10), SizeIs(3));
}

TEST(StrategyTest, Selection_DeterministicForSeed_DiffersAcrossSeedsAndRounds) {
  StrategyOptions o = Options("fedavg");
  o.fraction = 0.1;
  o.seed = 42;
  const std::vector<std::string> r1 = Selected(o, 100, 1);
  EXPECT_THAT(r1, SizeIs(10));
  EXPECT_EQ(Selected(o, 100, 1), r1);
  EXPECT_NE(Selected(o, 100, 2), r1);
  EXPECT_NE(Selected(o, 100, 3), Selected(o, 100, 2));
  o.seed = 43;
  EXPECT_NE(Selected(o, 100, 1), r1);
  // The order in which agents are listed does not matter.
  std::vector<AgentInfo> reversed = Agents(100);
  std::reverse(reversed.begin(), reversed.end());
  o.seed = 42;
  std::vector<std::string> ids;
  for (const FitInstruction& f : Make(o)->ConfigureFit(1, reversed)) {
    ids.push_back(f.agent_id);
  }
  EXPECT_EQ(ids, r1);
}

TEST(StrategyTest, Selection_IsPinnedForSeed) {
  // Our own sampler over std::mt19937_64: the same on every standard
  // library, and the same selections as before the Strategy seam.
  StrategyOptions o = Options("fedavg");
  o.count = 4;
  o.seed = 7;
  EXPECT_THAT(Selected(o, 20), ElementsAre("a02", "a03", "a06", "a14"));
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(AgentName(i));
  EXPECT_THAT(SampleAgents(ids, 4, 7, 1),
              ElementsAre("a02", "a03", "a06", "a14"));
}

TEST(StrategyTest, AgentPlanSeed_IsPinned) {
  // MixSeed({7, 1, FNV-1a("a02") then SplitMix64}), computed independently.
  EXPECT_EQ(AgentPlanSeed(7, 1, "a02"), 2763087397313496398ULL);
  EXPECT_EQ(AgentPlanSeed(42, 3, "agent-x"), 9746200983734445785ULL);
  EXPECT_NE(AgentPlanSeed(7, 2, "a02"), AgentPlanSeed(7, 1, "a02"));
  EXPECT_NE(AgentPlanSeed(8, 1, "a02"), AgentPlanSeed(7, 1, "a02"));
  EXPECT_NE(AgentPlanSeed(7, 1, "a03"), AgentPlanSeed(7, 1, "a02"));
}

TEST(StrategyTest, Plans_CarryTheAgentSeedAndTheBasePlan) {
  StrategyOptions o = Options("fedavg");
  o.count = 4;
  o.seed = 7;
  o.plan.epochs = 3;
  o.plan.batch_size = 16;
  o.plan.learning_rate = 0.05;
  o.plan.momentum = 0.9;
  std::vector<FitInstruction> fit = Make(o)->ConfigureFit(1, Agents(20));
  ASSERT_THAT(fit, SizeIs(4));
  for (const FitInstruction& f : fit) {
    EXPECT_EQ(f.plan.seed, AgentPlanSeed(7, 1, f.agent_id)) << f.agent_id;
    EXPECT_EQ(f.plan.epochs, 3);
    EXPECT_EQ(f.plan.batch_size, 16);
    EXPECT_EQ(f.plan.learning_rate, 0.05);
    EXPECT_EQ(f.plan.momentum, 0.9);
    EXPECT_EQ(f.plan.max_steps, 0);
  }
  EXPECT_EQ(fit[0].agent_id, "a02");
  EXPECT_EQ(fit[0].plan.seed, 2763087397313496398ULL);
}

TEST(StrategyTest, Plans_DeviceClassOverridesEpochsAndSteps) {
  StrategyOptions o = Options("fedavg");
  o.fraction = 1;
  o.plan.epochs = 3;
  o.device_plans = {{"slow", 1, 5, std::nullopt}, {"tiny", 0, 2, std::nullopt}};
  std::vector<AgentInfo> agents = {{"fast", 100, "default", 0},
                                   {"slow", 100, "slow", 0},
                                   {"tiny", 100, "tiny", 0},
                                   {"unknown", 100, "", 0}};
  std::vector<FitInstruction> fit = Make(o)->ConfigureFit(1, agents);
  ASSERT_THAT(fit, SizeIs(4));  // Sorted: fast, slow, tiny, unknown.
  EXPECT_EQ(fit[0].plan.epochs, 3);
  EXPECT_EQ(fit[0].plan.max_steps, 0);
  EXPECT_EQ(fit[1].plan.epochs, 1);
  EXPECT_EQ(fit[1].plan.max_steps, 5);
  EXPECT_EQ(fit[2].plan.epochs, 3);  // 0: the plan's.
  EXPECT_EQ(fit[2].plan.max_steps, 2);
  EXPECT_EQ(fit[3].plan.epochs, 3);
  EXPECT_EQ(fit[3].plan.max_steps, 0);
}

TEST(StrategyTest, Plans_EncodingPerDeviceClass) {
  StrategyOptions o = Options("fedavg");
  o.fraction = 1;
  o.plan.update_encoding.kind = UpdateEncoding::kFp16;
  o.device_plans = {{"metered", 0, 0, UpdateEncoding::kTopK}};
  std::vector<AgentInfo> agents = {{"a", 100, "", 0}, {"b", 100, "metered", 0}};
  std::vector<FitInstruction> fit = Make(o)->ConfigureFit(1, agents);
  ASSERT_THAT(fit, SizeIs(2));
  EXPECT_EQ(fit[0].plan.update_encoding.kind, UpdateEncoding::kFp16);
  EXPECT_EQ(fit[1].plan.update_encoding.kind, UpdateEncoding::kTopK);
  // Stochastic rounding is seeded per agent and round, like training.
  EXPECT_EQ(fit[0].plan.update_encoding.seed, fit[0].plan.seed);
  EXPECT_NE(fit[0].plan.update_encoding.seed, fit[1].plan.update_encoding.seed);
}

TEST(StrategyTest, ToStrategyOptions_CarriesTheEncoding_PlanProtoRoundTrips) {
  v1::StrategyConfig c;
  c.set_update_encoding("topk");
  c.set_topk_fraction(0.02);
  c.set_int8_per_channel(true);
  v1::DeviceClassPlanConfig* d = c.add_device_plans();
  d->set_device_class("lte");
  d->set_update_encoding("int8");
  StrategyOptions o = ToStrategyOptions(c, v1::TrainPlanConfig(), 1);
  EXPECT_EQ(o.plan.update_encoding.kind, UpdateEncoding::kTopK);
  EXPECT_EQ(o.plan.update_encoding.topk_fraction, 0.02);
  EXPECT_TRUE(o.plan.update_encoding.per_channel);
  ASSERT_THAT(o.device_plans, SizeIs(1));
  EXPECT_EQ(o.device_plans[0].update_encoding, UpdateEncoding::kInt8);
  // Unset: fp32 and the paper-free default fraction.
  StrategyOptions plain =
      ToStrategyOptions(v1::StrategyConfig(), v1::TrainPlanConfig(), 1);
  EXPECT_EQ(plain.plan.update_encoding.kind, UpdateEncoding::kFp32);
  EXPECT_EQ(plain.plan.update_encoding.topk_fraction, 0.1);

  TrainPlan plan = o.plan;
  plan.seed = 77;
  const TrainPlan back = ToTrainPlan(ToTrainPlanProto(plan));
  EXPECT_EQ(back.update_encoding.kind, UpdateEncoding::kTopK);
  EXPECT_EQ(back.update_encoding.topk_fraction, 0.02);
  EXPECT_TRUE(back.update_encoding.per_channel);
  EXPECT_EQ(back.update_encoding.seed, 77u);
  EXPECT_FALSE(back.keep_pruned);
  // Fine-tuning a pruned model: from the config to the agent's plan.
  v1::TrainPlanConfig fine;
  fine.set_keep_pruned(true);
  EXPECT_TRUE(ToTrainPlan(ToTrainPlanProto(ToStrategyOptions(c, fine, 1).plan))
                  .keep_pruned);
  // A plan from a newer coordinator with an unknown encoding: fp32.
  v1::TrainPlanProto newer = ToTrainPlanProto(plan);
  newer.set_update_encoding("fp4");
  EXPECT_EQ(ToTrainPlan(newer).update_encoding.kind, UpdateEncoding::kFp32);
}

TEST(StrategyTest, Plans_TimeBudgetCapsSteps) {
  StrategyOptions o = Options("fedavg");
  o.fraction = 1;
  o.plan.batch_size = 10;
  o.local_time_budget_ms = 2000;
  o.device_plans = {{"capped", 0, 5, std::nullopt}};
  std::vector<AgentInfo> agents = {
      {"a", 1000, "", 50},        // 50 ex/s * 2 s / 10 = 10 steps.
      {"b", 1000, "capped", 50},  // min(5, 10).
      {"c", 1000, "", 1},         // 2 examples: still 1 step.
      {"d", 1000, "", 0},         // Unknown speed: no cap.
      {"e", 1000, "", 1e6}};      // 200000 steps.
  std::vector<FitInstruction> fit = Make(o)->ConfigureFit(1, agents);
  ASSERT_THAT(fit, SizeIs(5));
  EXPECT_EQ(fit[0].plan.max_steps, 10);
  EXPECT_EQ(fit[1].plan.max_steps, 5);
  EXPECT_EQ(fit[2].plan.max_steps, 1);
  EXPECT_EQ(fit[3].plan.max_steps, 0);
  EXPECT_EQ(fit[4].plan.max_steps, 200000);
}

TEST(StrategyTest, ConfigureEvaluate_FractionAndMinimum) {
  StrategyOptions o = Options("fedavg");
  EXPECT_THAT(Make(o)->ConfigureEvaluate(1, Agents(20)), IsEmpty());  // Off.
  o.fraction_evaluate = 0.25;
  std::vector<std::string> e = Make(o)->ConfigureEvaluate(1, Agents(20));
  EXPECT_THAT(e, SizeIs(5));
  EXPECT_TRUE(std::is_sorted(e.begin(), e.end()));
  EXPECT_EQ(Make(o)->ConfigureEvaluate(1, Agents(20)), e);
  o.fraction_evaluate = 0.05;  // round(1) = 1 < min_evaluate_agents.
  o.min_evaluate_agents = 3;
  EXPECT_THAT(Make(o)->ConfigureEvaluate(1, Agents(20)), SizeIs(3));
  o.min_evaluate_agents = 30;  // Capped by the available agents.
  EXPECT_THAT(Make(o)->ConfigureEvaluate(1, Agents(20)), SizeIs(20));
  EXPECT_THAT(Make(o)->ConfigureEvaluate(1, {}), IsEmpty());
}

TEST(StrategyTest, AggregateEvaluate_ExampleWeighted) {
  std::unique_ptr<Strategy> s = Make(Options("fedavg"));
  EvalMetrics a{100, 1.0, 0.5}, b{300, 2.0, 0.9}, none{0, 50, 1};
  std::vector<EvalMetrics> results = {a, none, b};
  EvalMetrics m = s->AggregateEvaluate(results);
  EXPECT_EQ(m.num_examples, 400);
  EXPECT_DOUBLE_EQ(m.loss, (100 * 1.0 + 300 * 2.0) / 400);      // 1.75.
  EXPECT_DOUBLE_EQ(m.accuracy, (100 * 0.5 + 300 * 0.9) / 400);  // 0.8.
  EvalMetrics empty = s->AggregateEvaluate({});
  EXPECT_EQ(empty.num_examples, 0);
  EXPECT_EQ(empty.loss, 0);
}

// ---------------------------------------------------------------------------
// Validation: every error names the field and its range.

struct BadOptions {
  std::string what;
  std::function<void(StrategyOptions&)> change;
  std::vector<std::string> message;  // Substrings of the error.
};

TEST(StrategyTest, ValidateStrategyOptions_NamesFieldAndRange) {
  const std::vector<BadOptions> cases = {
      {"unknown name",
       [](auto& o) { o.name = "fedsgd"; },
       {"strategy.name 'fedsgd' is unknown",
        "valid: fedavg, fedavgm, fedprox, fednova, fedadam, fedyogi, "
        "fedadagrad, scaffold, median, trimmed_mean, krum, multi_krum, "
        "norm_bounded"}},
      {"fraction",
       [](auto& o) { o.fraction = 0; },
       {"strategy.fraction must be in (0, 1], got 0"}},
      {"count",
       [](auto& o) { o.count = -1; },
       {"strategy.count must be >= 0, got -1"}},
      {"min_fit_agents",
       [](auto& o) { o.min_fit_agents = 0; },
       {"strategy.min_fit_agents must be >= 1"}},
      {"server_learning_rate",
       [](auto& o) { o.server_learning_rate = 0; },
       {"strategy.server_learning_rate must be > 0, got 0"}},
      {"server_momentum",
       [](auto& o) {
         o.name = "fedavgm";
         o.server_momentum = 1;
       },
       {"strategy.server_momentum must be in [0, 1), got 1"}},
      {"proximal_mu",
       [](auto& o) {
         o.name = "fedprox";
         o.proximal_mu = -0.5;
       },
       {"strategy.proximal_mu must be >= 0, got -0.5"}},
      {"beta1",
       [](auto& o) {
         o.name = "fedadam";
         o.beta1 = 1;
       },
       {"strategy.beta1 must be in [0, 1), got 1"}},
      {"beta2",
       [](auto& o) {
         o.name = "fedyogi";
         o.beta2 = -0.1;
       },
       {"strategy.beta2 must be in [0, 1), got -0.1"}},
      {"tau",
       [](auto& o) {
         o.name = "fedadagrad";
         o.tau = 0;
       },
       {"strategy.tau must be > 0, got 0"}},
      {"trim_beta",
       [](auto& o) {
         o.name = "trimmed_mean";
         o.trim_beta = 0.5;
       },
       {"strategy.trim_beta must be in [0, 0.5), got 0.5"}},
      {"krum_f vs min_fit_agents",
       [](auto& o) {
         o.name = "krum";
         o.krum_f = 1;
         o.min_fit_agents = 4;
       },
       {"strategy.krum_f = 1 needs at least 2f+3 = 5",
        "strategy.min_fit_agents = 4"}},
      {"krum_f vs count",
       [](auto& o) {
         o.name = "multi_krum";
         o.krum_f = 1;
         o.min_fit_agents = 5;
         o.count = 4;
       },
       {"strategy.krum_f = 1 is too large for strategy.count = 4"}},
      {"max_update_norm",
       [](auto& o) {
         o.name = "norm_bounded";
         o.max_update_norm = 0;
       },
       {"strategy.max_update_norm must be > 0, got 0"}},
      {"max_buffered_updates",
       [](auto& o) { o.max_buffered_updates = 0; },
       {"strategy.max_buffered_updates must be >= 1"}},
      {"fraction_evaluate",
       [](auto& o) { o.fraction_evaluate = 1.5; },
       {"strategy.fraction_evaluate must be in [0, 1]"}},
      {"local_time_budget_ms",
       [](auto& o) { o.local_time_budget_ms = -1; },
       {"strategy.local_time_budget_ms must be >= 0"}},
  };
  for (const BadOptions& c : cases) {
    StrategyOptions o;
    c.change(o);
    absl::Status st = ValidateStrategyOptions(o);
    EXPECT_EQ(st.code(), kInvalidArgument) << c.what;
    for (const std::string& m : c.message) {
      EXPECT_THAT(st.message(), HasSubstr(m)) << c.what;
    }
    absl::StatusOr<std::unique_ptr<Strategy>> s =
        CreateStrategy(o, Model(0, 0, 0));
    EXPECT_EQ(s.status().code(), kInvalidArgument) << c.what;
  }
}

TEST(StrategyTest, ValidateStrategyOptions_AcceptsEveryNameWithDefaults) {
  for (const std::string& name : StrategyNames()) {
    StrategyOptions o = Options(name);
    if (name == "krum" || name == "multi_krum") o.min_fit_agents = 5;
    EXPECT_EQ(ValidateStrategyOptions(o), absl::OkStatus()) << name;
  }
}

TEST(StrategyTest, ValidateStrategyConfig_NamesFieldAndRange) {
  struct Case {
    std::function<void(v1::StrategyConfig&)> change;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& c) { c.set_name("fedsgd"); },
       "valid: fedavg, fedavgm, fedprox"},
      {[](auto& c) { c.set_fraction(0); },
       "config field 'strategy.fraction' must be in (0, 1], got 0"},
      {[](auto& c) { c.set_server_learning_rate(0); },
       "config field 'strategy.server_learning_rate' must be in (0, 100]"},
      {[](auto& c) {
         c.set_name("fedprox");
         c.set_proximal_mu(-1);
       },
       "strategy.proximal_mu must be >= 0, got -1"},
      {[](auto& c) {
         c.set_name("trimmed_mean");
         c.set_trim_beta(0.6);
       },
       "strategy.trim_beta must be in [0, 0.5), got 0.6"},
      {[](auto& c) { c.set_name("krum"); },  // min_fit_agents 1 < 5.
       "strategy.krum_f = 1 needs at least 2f+3 = 5"},
      {[](auto& c) {
         c.set_name("krum");
         c.set_min_available_agents(5);
         c.set_min_fit_agents(5);
         c.set_count(4);
       },
       "too large for strategy.count = 4"},
      {[](auto& c) {
         c.set_name("fedadam");
         c.set_beta1(1.5);
       },
       "strategy.beta1 must be in [0, 1), got 1.5"},
      {[](auto& c) {
         c.set_name("fedyogi");
         c.set_beta2(1);
       },
       "strategy.beta2 must be in [0, 1), got 1"},
      {[](auto& c) {
         c.set_name("fedadam");
         c.set_tau(-1);
       },
       "strategy.tau must be > 0, got -1"},
      {[](auto& c) {
         c.set_name("norm_bounded");
         c.set_max_update_norm(-2);
       },
       "strategy.max_update_norm must be > 0, got -2"},
      {[](auto& c) { c.add_device_plans()->set_epochs(-1); },
       "strategy.device_plans[0].epochs' must be >= 0"},
      {[](auto& c) { c.set_update_encoding("zip"); },
       "strategy.update_encoding"},
      {[](auto& c) { c.set_topk_fraction(0); },
       "strategy.topk_fraction' must be in (0, 1], got 0"},
      {[](auto& c) { c.add_device_plans()->set_update_encoding("int4"); },
       "strategy.device_plans[0].update_encoding"},
  };
  for (const Case& c : cases) {
    v1::StrategyConfig config;
    c.change(config);
    absl::Status st = ValidateStrategyConfig(config, "strategy.");
    EXPECT_EQ(st.code(), kInvalidArgument) << config.ShortDebugString();
    EXPECT_THAT(st.message(), HasSubstr(c.message))
        << config.ShortDebugString();
  }
  EXPECT_EQ(ValidateStrategyConfig(v1::StrategyConfig(), "strategy."),
            absl::OkStatus());
}

TEST(StrategyTest, ToStrategyOptions_CarriesTheConfig) {
  v1::StrategyConfig c;
  c.set_name("fedprox");
  c.set_count(7);
  c.set_min_fit_agents(2);
  c.set_proximal_mu(0.3);
  c.set_local_time_budget_ms(1500);
  v1::DeviceClassPlanConfig* d = c.add_device_plans();
  d->set_device_class("slow");
  d->set_epochs(1);
  d->set_max_steps(20);
  v1::TrainPlanConfig train;
  train.set_epochs(4);
  train.set_learning_rate(0.02);
  StrategyOptions o = ToStrategyOptions(c, train, 99);
  EXPECT_EQ(o.name, "fedprox");
  EXPECT_EQ(o.count, 7);
  EXPECT_EQ(o.min_fit_agents, 2);
  EXPECT_EQ(o.seed, 99u);
  EXPECT_EQ(o.proximal_mu, 0.3);
  EXPECT_EQ(o.plan.epochs, 4);
  EXPECT_EQ(o.plan.learning_rate, 0.02);
  EXPECT_EQ(o.local_time_budget_ms, 1500);
  ASSERT_THAT(o.device_plans, SizeIs(1));
  EXPECT_EQ(o.device_plans[0].device_class, "slow");
  EXPECT_EQ(o.device_plans[0].max_steps, 20);
  // Unset server_learning_rate: the strategy's default (-1); set: itself.
  EXPECT_EQ(o.server_learning_rate, -1);
  c.set_server_learning_rate(0.5);
  EXPECT_EQ(ToStrategyOptions(c, train, 99).server_learning_rate, 0.5);
}

}  // namespace
}  // namespace fedge
