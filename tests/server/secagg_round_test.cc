// Secure aggregation wired into a round: SecAggRound (the server's half, as
// fedge-sim and the coordinator run it) with real SecAggClients, folded into
// the strategy through RoundAccumulator::AddSum, against the same updates
// folded one by one in a plain round.
#include "server/secagg_round.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/secagg/client.h"
#include "common/secagg/messages.h"
#include "common/secagg/quantization.h"
#include "common/secagg_update.h"
#include "common/strategy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/round_accumulator.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

ModelState Zeros(int64_t d) {
  ModelState m;
  m.Add(*TensorBuffer::Zeros("w", DType::kFloat32, {d}));
  m.Add(*TensorBuffer::Zeros("b", DType::kFloat32, {3}));
  return m;
}

struct Update {
  std::string agent;
  ModelState delta;
  double examples = 0;
  int64_t steps = 0;
  double loss = 0;
  double accuracy = 0;
};

std::vector<Update> RandomUpdates(int n, int64_t d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::uniform_int_distribution<int> examples(50, 600);
  std::uniform_int_distribution<int> steps(5, 60);
  std::vector<Update> out;
  for (int i = 0; i < n; ++i) {
    Update u;
    u.agent = absl::StrCat("agent-", i);
    u.delta = Zeros(d);
    for (TensorBuffer& t : u.delta.mutable_tensors()) {
      for (float& v : t.mutable_floats()) v = normal(rng);
    }
    u.examples = examples(rng);
    u.steps = steps(rng);
    u.loss = 0.5 + 0.01 * i;
    u.accuracy = 0.8 + 0.001 * i;
    out.push_back(std::move(u));
  }
  return out;
}

FitResult ResultOf(Update& u, ModelState* delta) {
  FitResult r;
  r.agent_id = u.agent;
  r.num_examples = u.examples;
  r.declared_examples = static_cast<int64_t>(u.examples);
  r.num_steps = u.steps;
  r.metrics.num_examples = static_cast<int64_t>(u.examples);
  r.metrics.num_steps = u.steps;
  r.metrics.loss = u.loss;
  r.metrics.accuracy = u.accuracy;
  r.delta = delta;
  return r;
}

RoundOutcome Completed(const std::vector<Update>& updates) {
  RoundOutcome o;
  o.round = 1;
  o.completed = true;
  for (const Update& u : updates) o.reported.push_back(u.agent);
  return o;
}

StrategyOptions Named(const std::string& name) {
  StrategyOptions o;
  o.name = name;
  return o;
}

// The plain round: each update folded one by one.
RoundClose PlainRound(const StrategyOptions& so, std::vector<Update> updates,
                      const ModelState& global) {
  std::unique_ptr<Strategy> strategy = *CreateStrategy(so, global);
  RoundAccumulator acc(strategy.get());
  for (Update& u : updates) {
    EXPECT_TRUE(acc.Add(ResultOf(u, &u.delta), 0).ok());
  }
  return acc.Close(Completed(updates), global, 100);
}

// A secure round driven as fedge-sim and the coordinator drive it.
struct SecureRun {
  // Agents that stop after sharing their keys (no masked input), and
  // agents that send their masked input but do not answer the unmasking
  // request.
  std::set<std::string> drop_after_shares;
  std::set<std::string> drop_at_unmasking;
  // What the server received as each agent's masked input.
  std::map<std::string, std::string> masked_inputs;
  // Each agent's input before masking (its weighted, scaled delta).
  std::map<std::string, std::vector<float>> inputs;
  std::unique_ptr<SecAggRound> session;

  absl::StatusOr<SecAggSum> Run(const SecureAggregationOptions& options,
                                const StrategyOptions& so,
                                std::vector<Update>& updates,
                                const ModelState& global) {
    std::vector<std::string> ids;
    for (const Update& u : updates) ids.push_back(u.agent);
    absl::StatusOr<std::unique_ptr<SecAggRound>> created =
        SecAggRound::Create(options, "test/round-1", ids, SchemaOf(global));
    if (!created.ok()) return created.status();
    session = *std::move(created);
    std::vector<std::unique_ptr<secagg::SecAggClient>> clients;
    for (size_t i = 0; i < ids.size(); ++i) {
      secagg::SecAggClient::Options o;
      o.config = session->config();
      o.client_id = *session->ClientId(ids[i]);
      clients.push_back(*secagg::SecAggClient::Create(o));
      std::string m = *clients[i]->AdvertiseKeys();
      EXPECT_TRUE(session->ReceiveAdvertiseKeys(ids[i], m).ok());
    }
    if (absl::Status s = session->CloseAdvertiseKeys(); !s.ok()) return s;
    for (size_t i = 0; i < ids.size(); ++i) {
      std::string m = *clients[i]->ShareKeys(*session->KeyDirectoryFor(ids[i]));
      EXPECT_TRUE(session->ReceiveShareKeys(ids[i], m).ok());
    }
    if (absl::Status s = session->CloseShareKeys(); !s.ok()) return s;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (drop_after_shares.count(ids[i])) continue;
      FitResult r = ResultOf(updates[i], &updates[i].delta);
      absl::StatusOr<SecAggInput> in = SecAggInput::Prepare(options, so, r);
      EXPECT_TRUE(in.ok()) << in.status();
      std::vector<float>& flat = inputs[ids[i]];
      for (absl::Span<const float> p : in->pieces()) {
        flat.insert(flat.end(), p.begin(), p.end());
      }
      std::string m = *clients[i]->MaskInputPieces(
          *session->EncryptedSharesFor(ids[i]), in->pieces());
      EXPECT_TRUE(session->ReceiveMaskedInput(ids[i], m).ok());
      masked_inputs[ids[i]] = std::move(m);
    }
    if (absl::Status s = session->CloseMaskedInputs(); !s.ok()) return s;
    for (const std::string& id : session->InputsReceived()) {
      if (drop_at_unmasking.count(id)) continue;
      const int i = *session->ClientId(id) - 1;
      std::string m = *clients[i]->Unmask(*session->UnmaskingRequestFor(id));
      EXPECT_TRUE(session->ReceiveUnmaskingResponse(id, m).ok());
    }
    return session->Finish(global);
  }
};

// The bound on |secure - plain| per element of the next model: the ring
// sum of k inputs is off by k / (2 scale) per element (quantization.h), in
// units of weight / U, so the mean is off by that times U / W; plus float
// rounding of the weighted sums.
double MeanBound(const SecureAggregationOptions& options, int n, int k,
                 double total_weight) {
  secagg::Quantizer q = *secagg::Quantizer::Create({n, options.clip_range});
  return 2 * q.MaxSumError(k) * options.weight_unit / total_weight + 1e-6;
}

double MaxAbsDiff(const ModelState& a, const ModelState& b) {
  double worst = 0;
  for (size_t t = 0; t < a.size(); ++t) {
    for (size_t j = 0; j < a.tensor(t).floats().size(); ++j) {
      worst = std::max<double>(
          worst, std::fabs(a.tensor(t).floats()[j] - b.tensor(t).floats()[j]));
    }
  }
  return worst;
}

class SumEqualsPlainTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SumEqualsPlainTest, NextModelEqualsPlainWithinFixedPointPrecision) {
  const StrategyOptions so = Named(GetParam());
  const int n = 8;
  const ModelState global = Zeros(3000);
  std::vector<Update> updates = RandomUpdates(n, 3000, 7);
  double total_weight = 0;
  for (const Update& u : updates) {
    total_weight += UpdateSumWeights(so, u.examples, u.steps).weight;
  }
  RoundClose plain = PlainRound(so, RandomUpdates(n, 3000, 7), global);
  ASSERT_TRUE(plain.next.has_value()) << plain.aggregation_error;

  SecureAggregationOptions options;
  options.enabled = true;
  SecureRun run;
  absl::StatusOr<SecAggSum> sum = run.Run(options, so, updates, global);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->num_updates, n);
  std::unique_ptr<Strategy> strategy = *CreateStrategy(so, global);
  RoundAccumulator acc(strategy.get());
  ASSERT_TRUE(acc.AddSum(*sum, 0).ok());
  RoundClose secure = acc.Close(Completed(updates), global, 100);
  ASSERT_TRUE(secure.next.has_value()) << secure.aggregation_error;

  // The adaptive strategies step by lr * m / (sqrt(v) + tau): an error e in
  // the mean moves their step by at most e * lr / tau (lr 0.01, tau 1e-3).
  const bool adaptive = GetParam() == "fedadam" || GetParam() == "fedyogi" ||
                        GetParam() == "fedadagrad";
  const double mean_bound = MeanBound(options, n, n, total_weight);
  EXPECT_LE(MaxAbsDiff(*secure.next, *plain.next),
            mean_bound * (adaptive ? 0.01 / 1e-3 : 1.0));
  // Not vacuous: the round moved the model far more than that.
  EXPECT_GT(MaxAbsDiff(*plain.next, global), 100 * mean_bound);
  // The round's statistics come from the sums.
  EXPECT_EQ(secure.record.num_examples, plain.record.num_examples);
  EXPECT_NEAR(secure.record.train_loss, plain.record.train_loss, 1e-4);
  EXPECT_NEAR(secure.record.train_accuracy, plain.record.train_accuracy, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(SumOnlyStrategies, SumEqualsPlainTest,
                         ::testing::Values("fedavg", "fedavgm", "fedprox",
                                           "fednova", "fedadam", "fedyogi",
                                           "fedadagrad"));

TEST(SecAggRoundTest, SecAggPlusGraph_SumEqualsPlain) {
  const StrategyOptions so = Named("fedavg");
  const int n = 14;
  const ModelState global = Zeros(500);
  std::vector<Update> updates = RandomUpdates(n, 500, 11);
  double total_weight = 0;
  for (const Update& u : updates) total_weight += u.examples;
  RoundClose plain = PlainRound(so, RandomUpdates(n, 500, 11), global);
  SecureAggregationOptions options;
  options.enabled = true;
  options.neighbors = 6;
  SecureRun run;
  absl::StatusOr<SecAggSum> sum = run.Run(options, so, updates, global);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(run.session->config().neighbors, 6);
  EXPECT_EQ(run.session->config().threshold, 4);  // floor(7 / 2) + 1.
  std::unique_ptr<Strategy> strategy = *CreateStrategy(so, global);
  RoundAccumulator acc(strategy.get());
  ASSERT_TRUE(acc.AddSum(*sum, 0).ok());
  RoundClose secure = acc.Close(Completed(updates), global, 100);
  ASSERT_TRUE(secure.next.has_value());
  EXPECT_LE(MaxAbsDiff(*secure.next, *plain.next),
            MeanBound(options, n, n, total_weight));
}

// Pearson correlation of two equally long vectors.
double Correlation(const std::vector<double>& x, const std::vector<double>& y) {
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= x.size();
  my /= y.size();
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

TEST(SecAggRoundTest, ServersViewOfAMaskedInput_IsUncorrelatedWithTheUpdate) {
  const StrategyOptions so = Named("fedavg");
  const int n = 5;
  const int64_t d = 20000;
  const ModelState global = Zeros(d);
  std::vector<Update> updates = RandomUpdates(n, d, 3);
  // Agent 0's update has structure (a ramp plus noise), so that anything of
  // it left in the masked input would show.
  {
    absl::Span<float> w = updates[0].delta.mutable_tensor(0).mutable_floats();
    for (int64_t j = 0; j < d; ++j) w[j] += 0.1f * (j % 100) / 100.0f;
  }
  SecureAggregationOptions options;
  options.enabled = true;
  SecureRun run;
  absl::StatusOr<SecAggSum> sum = run.Run(options, so, updates, global);
  ASSERT_TRUE(sum.ok()) << sum.status();

  // What the coordinator holds of agent 0: its masked input, decoded and
  // dequantized element by element as if it were an input.
  const secagg::SecAggConfig& config = run.session->config();
  secagg::MessageContext ctx;
  ctx.config_digest = secagg::ConfigDigest(config);
  ctx.num_clients = config.num_clients;
  ctx.vector_length = config.vector_length;
  absl::StatusOr<secagg::MaskedInputView> view =
      secagg::DecodeMaskedInput(ctx, run.masked_inputs.at("agent-0"));
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->words.size(), 4 * static_cast<size_t>(config.vector_length));
  secagg::Quantizer q =
      *secagg::Quantizer::Create({config.num_clients, config.max_abs_value});
  std::vector<uint32_t> words(config.vector_length);
  std::memcpy(words.data(), view->words.data(), view->words.size());
  std::vector<float> seen(words.size());
  q.Dequantize(words, absl::MakeSpan(seen));
  const std::vector<float>& input = run.inputs.at("agent-0");
  ASSERT_EQ(input.size(), seen.size());
  std::vector<double> x(input.begin(), input.end());
  std::vector<double> y(seen.begin(), seen.end());
  // With 20005 elements, independent vectors give |r| ~ 0.007.
  EXPECT_LT(std::fabs(Correlation(x, y)), 0.05);
  // The same test on the quantized input without masks sees it at once.
  std::vector<uint32_t> plain(input.size());
  ASSERT_TRUE(q.Quantize(input, absl::MakeSpan(plain)).ok());
  std::vector<float> unmasked(plain.size());
  q.Dequantize(plain, absl::MakeSpan(unmasked));
  EXPECT_GT(
      Correlation(x, std::vector<double>(unmasked.begin(), unmasked.end())),
      0.999);
  // And the masked words spread over the whole ring: no element is near
  // its input (the step of the ring is ~2e-8 here, the inputs ~0.03).
  int close = 0;
  for (size_t j = 0; j < x.size(); ++j) close += std::fabs(x[j] - y[j]) < 1e-3;
  EXPECT_LT(close, 50);  // Uniform over +-C = 10: ~ 20005 * 1e-4.
}

TEST(SecAggRoundTest, DropoutsAfterSharingKeys_RecoveredUpToTheThreshold) {
  const StrategyOptions so = Named("fedavg");
  const int n = 9;  // Threshold floor(9 / 2) + 1 = 5: 4 may drop.
  const ModelState global = Zeros(400);
  std::vector<Update> updates = RandomUpdates(n, 400, 5);
  SecureAggregationOptions options;
  options.enabled = true;
  SecureRun run;
  run.drop_after_shares = {"agent-1", "agent-4", "agent-7"};
  run.drop_at_unmasking = {"agent-2"};  // Its input counts, it goes silent.
  absl::StatusOr<SecAggSum> sum = run.Run(options, so, updates, global);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(run.session->config().threshold, 5);
  EXPECT_EQ(sum->num_updates, 6);

  // Equal to the plain round of the 6 agents whose inputs arrived.
  std::vector<Update> survivors;
  double total_weight = 0;
  for (Update& u : RandomUpdates(n, 400, 5)) {
    if (run.drop_after_shares.count(u.agent)) continue;
    total_weight += u.examples;
    survivors.push_back(std::move(u));
  }
  RoundClose plain = PlainRound(so, std::move(survivors), global);
  std::unique_ptr<Strategy> strategy = *CreateStrategy(so, global);
  RoundAccumulator acc(strategy.get());
  ASSERT_TRUE(acc.AddSum(*sum, 0).ok());
  RoundClose secure = acc.Close(Completed(updates), global, 100);
  ASSERT_TRUE(secure.next.has_value());
  EXPECT_LE(MaxAbsDiff(*secure.next, *plain.next),
            MeanBound(options, n, 6, total_weight));
  EXPECT_EQ(secure.record.num_examples, plain.record.num_examples);
}

TEST(SecAggRoundTest, DropoutsBeyondTheThreshold_AbandonTheRoundModelKept) {
  const StrategyOptions so = Named("fedavg");
  const int n = 9;
  const ModelState global = Zeros(400);
  std::vector<Update> updates = RandomUpdates(n, 400, 5);
  SecureAggregationOptions options;
  options.enabled = true;
  SecureRun run;
  // 5 of 9 drop after sharing keys: 4 inputs < threshold 5.
  run.drop_after_shares = {"agent-0", "agent-2", "agent-4", "agent-6",
                           "agent-8"};
  absl::StatusOr<SecAggSum> sum = run.Run(options, so, updates, global);
  ASSERT_FALSE(sum.ok());
  EXPECT_EQ(sum.status().code(), absl::StatusCode::kAborted) << sum.status();

  // The driver then abandons the round: nothing was folded, no model.
  std::unique_ptr<Strategy> strategy = *CreateStrategy(so, global);
  RoundAccumulator acc(strategy.get());
  RoundOutcome abandoned = Completed(updates);
  abandoned.completed = false;
  RoundClose close = acc.Close(abandoned, global, 100);
  EXPECT_FALSE(close.next.has_value());
  EXPECT_EQ(acc.num_updates(), 0);
}

TEST(SecAggRoundTest, TooFewUnmaskingAnswers_AbortNotAWrongSum) {
  const StrategyOptions so = Named("fedavg");
  const int n = 7;  // Threshold 4.
  const ModelState global = Zeros(100);
  std::vector<Update> updates = RandomUpdates(n, 100, 9);
  SecureAggregationOptions options;
  options.enabled = true;
  SecureRun run;
  run.drop_at_unmasking = {"agent-0", "agent-1", "agent-2", "agent-3"};
  absl::StatusOr<SecAggSum> sum = run.Run(options, so, updates, global);
  ASSERT_FALSE(sum.ok());
  EXPECT_EQ(sum.status().code(), absl::StatusCode::kAborted) << sum.status();
}

TEST(SecAggRoundTest, RoundOfOneAgent_RefusedNamingTheField) {
  absl::StatusOr<std::unique_ptr<SecAggRound>> r = SecAggRound::Create(
      SecureAggregationOptions{true}, "s", {"a"}, SchemaOf(Zeros(4)));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("strategy.secure_aggregation.enabled"));
}

TEST(SecAggRoundTest, ThresholdAboveTheRound_RefusedNamingTheField) {
  SecureAggregationOptions options;
  options.enabled = true;
  options.threshold = 5;
  absl::StatusOr<std::unique_ptr<SecAggRound>> r =
      SecAggRound::Create(options, "s", {"a", "b", "c"}, SchemaOf(Zeros(4)));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("strategy.secure_aggregation.threshold"));
}

TEST(SecAggRoundTest, StrategyThatNeedsEachUpdate_RefusesASum) {
  const ModelState global = Zeros(10);
  std::unique_ptr<Strategy> median = *CreateStrategy(Named("median"), global);
  SecAggSum sum;
  sum.weighted_delta_sum = global.Clone();
  sum.total_weight = sum.examples = 1;
  sum.num_updates = 1;
  absl::Status s = median->AddSum(sum.fit());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("median"));
}

TEST(SecAggRoundTest, AgentOutsideTheRound_IsNotFound) {
  std::unique_ptr<SecAggRound> r = *SecAggRound::Create(
      SecureAggregationOptions{true}, "s", {"a", "b"}, SchemaOf(Zeros(4)));
  EXPECT_EQ(r->ReceiveAdvertiseKeys("c", "x").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(r->ReceiveAdvertiseKeys("a", "garbage").code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedge
