// Differential privacy in rounds: the strategy's noised fixed-denominator
// mean, the coordinator-side clip among the update limits, the privacy
// ledger (accounting, budget, save/restore) and the history's columns, as
// the coordinator and fedge-sim share them through the round accumulator.
#include "server/round_privacy.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dp.h"
#include "common/history.h"
#include "common/privacy_accountant.h"
#include "common/strategy.h"
#include "common/tensor_buffer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/round_accumulator.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

ModelState Zeros(int64_t n) {
  ModelState m;
  m.Add(*TensorBuffer::FromFloats("w", {n}, std::vector<float>(n, 0.0f)));
  return m;
}

ModelState Vec(std::vector<float> v) {
  ModelState m;
  const int64_t n = static_cast<int64_t>(v.size());
  m.Add(*TensorBuffer::FromFloats("w", {n}, std::move(v)));
  return m;
}

std::vector<float> W(const ModelState& m) {
  return {m.tensor(0).floats().begin(), m.tensor(0).floats().end()};
}

StrategyOptions DpOptions(double clip, double z, int count, bool local = false,
                          uint64_t seed = 7) {
  StrategyOptions o;
  o.name = "fedavg";
  o.count = count;
  DpFedAvgOptions dp;
  dp.clip_norm = clip;
  dp.noise_multiplier = z;
  dp.local = local;
  dp.noise_seed = seed;
  o.dp = dp;
  return o;
}

std::unique_ptr<Strategy> Make(const StrategyOptions& o,
                               const ModelState& model) {
  absl::StatusOr<std::unique_ptr<Strategy>> s = CreateStrategy(o, model);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(s).value();
}

FitResult Result(const std::string& agent, ModelState* delta, double examples) {
  FitResult r;
  r.agent_id = agent;
  r.num_examples = examples;
  r.num_steps = 1;
  r.metrics.num_examples = static_cast<int64_t>(examples);
  r.delta = delta;
  return r;
}

RoundOutcome Completed(int64_t round, std::vector<std::string> reported) {
  RoundOutcome o;
  o.round = round;
  o.completed = true;
  o.reported = std::move(reported);
  return o;
}

double EpsilonAfter(double q, double sigma, int64_t rounds, double delta) {
  auto a = RdpAccountant::Create({});
  EXPECT_TRUE(a.ok());
  EXPECT_TRUE((*a)->Compose(q, sigma, rounds).ok());
  return (*a)->GetEpsilon(delta)->epsilon;
}

// ---------------------------------------------------------------------------
// The noised mean.

TEST(CentralDpTest, NoiseOnTheMean_HasStddevZSOverSampled) {
  // 4 of 10 agents per round, S = 2, z = 1.5: stddev z S / 4 = 0.75 per
  // coordinate of the mean, whatever the updates (here zero).
  constexpr int64_t kN = 200000;
  const ModelState global = Zeros(kN);
  std::unique_ptr<Strategy> s = Make(DpOptions(2.0, 1.5, 4), global);
  RoundAccumulator acc(s.get());
  ModelState d1 = Zeros(kN), d2 = Zeros(kN);
  ASSERT_TRUE(acc.Add(Result("a", &d1, 10), 0).ok());
  ASSERT_TRUE(acc.Add(Result("b", &d2, 10), 0).ok());
  RoundClose close = acc.Close(Completed(1, {"a", "b"}), global, 10);
  ASSERT_TRUE(close.next.has_value()) << close.aggregation_error;
  double sum = 0, sum2 = 0;
  for (float v : W(*close.next)) {
    sum += v;
    sum2 += static_cast<double>(v) * v;
  }
  const double mean = sum / kN;
  const double stddev = std::sqrt(sum2 / kN - mean * mean);
  EXPECT_NEAR(stddev, 0.75, 0.75 * 0.01);  // ~0.16% standard error.
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(MeanNoiseStddev({2.0, 1.5}, 4), 0.75, 1e-12);
}

TEST(CentralDpTest, SameSeedSameNoise_OtherSeedOrRoundOtherNoise) {
  const ModelState global = Zeros(1000);
  auto run = [&](uint64_t seed, int64_t round) {
    std::unique_ptr<Strategy> s =
        Make(DpOptions(1.0, 1.0, 2, false, seed), global);
    RoundAccumulator acc(s.get());
    ModelState d = Zeros(1000);
    EXPECT_TRUE(acc.Add(Result("a", &d, 1), 0).ok());
    RoundClose c = acc.Close(Completed(round, {"a"}), global, 2);
    EXPECT_TRUE(c.next.has_value());
    return W(*c.next);
  };
  EXPECT_EQ(run(7, 1), run(7, 1));
  EXPECT_NE(run(7, 1), run(8, 1));
  EXPECT_NE(run(7, 1), run(7, 2));
}

TEST(CentralDpTest, UniformWeights_FixedDenominator) {
  // Tiny noise: the mean is sum / sampled (4), not example-weighted and
  // not over the 2 that reported.
  const ModelState global = Zeros(2);
  std::unique_ptr<Strategy> s = Make(DpOptions(10.0, 1e-9, 4), global);
  RoundAccumulator acc(s.get());
  ModelState a = Vec({1, 0}), b = Vec({0, 1});
  ASSERT_TRUE(acc.Add(Result("a", &a, 1000), 0).ok());
  ASSERT_TRUE(acc.Add(Result("b", &b, 1), 0).ok());
  RoundClose close = acc.Close(Completed(1, {"a", "b"}), global, 8);
  ASSERT_TRUE(close.next.has_value());
  EXPECT_NEAR(W(*close.next)[0], 0.25, 1e-6);
  EXPECT_NEAR(W(*close.next)[1], 0.25, 1e-6);
}

TEST(CentralDpTest, ServerClipsEveryUpdate_WhateverTheAgentSent) {
  const ModelState global = Zeros(2);
  std::unique_ptr<Strategy> s = Make(DpOptions(1.0, 1e-9, 1), global);
  RoundAccumulator acc(s.get());
  EXPECT_DOUBLE_EQ(acc.limits().dp_clip_norm, 1.0);
  ModelState huge = Vec({300, 400});  // Norm 500, an agent that did not clip.
  absl::StatusOr<double> factor = acc.ApplyLimits(Result("a", &huge, 1));
  ASSERT_TRUE(factor.ok()) << factor.status();
  EXPECT_NEAR(*factor, 1.0 / 500, 1e-12);
  EXPECT_LE(L2Norm(huge), 1.0);
  EXPECT_NEAR(L2Norm(huge), 1.0, 1e-5);
  // Through Add, as fedge-sim calls it: the model moves by at most S / n.
  ModelState again = Vec({300, 400});
  ASSERT_TRUE(acc.Add(Result("a", &again, 1), 0).ok());
  RoundClose close = acc.Close(Completed(1, {"a"}), global, 1);
  ASSERT_TRUE(close.next.has_value());
  EXPECT_NEAR(W(*close.next)[0], 0.6, 1e-5);
  EXPECT_NEAR(W(*close.next)[1], 0.8, 1e-5);
}

TEST(CentralDpTest, ClipAlsoUnderTheNormBoundsClip) {
  // update_limits' own clip to a larger bound, then DP's to the smaller.
  const ModelState global = Zeros(2);
  std::unique_ptr<Strategy> s = Make(DpOptions(1.0, 1e-9, 1), global);
  UpdateLimits limits;
  limits.update_norm_bound = 50;
  limits.clip = true;
  RoundAccumulator acc(s.get(), limits);
  ModelState huge = Vec({300, 400});
  ASSERT_TRUE(acc.ApplyLimits(Result("a", &huge, 1)).ok());
  EXPECT_LE(L2Norm(huge), 1.0);
}

TEST(LocalDpTest, PlansCarryClipAndNoise_ServerDoesNotClip) {
  std::unique_ptr<Strategy> s =
      Make(DpOptions(2.0, 3.0, 1, /*local=*/true), Zeros(2));
  std::vector<AgentInfo> agents = {{"a", 10, "", 0}};
  std::vector<FitInstruction> fit = s->ConfigureFit(1, agents);
  ASSERT_EQ(fit.size(), 1u);
  EXPECT_DOUBLE_EQ(fit[0].plan.dp_clip_norm, 2.0);
  EXPECT_DOUBLE_EQ(fit[0].plan.dp_noise_stddev, 6.0);
  RoundAccumulator acc(s.get());
  EXPECT_EQ(acc.limits().dp_clip_norm, 0);  // Noised updates stay whole.
  // Central DP: the plan clips, the noise is the coordinator's.
  std::unique_ptr<Strategy> c = Make(DpOptions(2.0, 3.0, 1), Zeros(2));
  fit = c->ConfigureFit(1, agents);
  EXPECT_DOUBLE_EQ(fit[0].plan.dp_clip_norm, 2.0);
  EXPECT_EQ(fit[0].plan.dp_noise_stddev, 0);
}

TEST(DpStrategyTest, RobustAndStatefulStrategies_Refused) {
  for (const char* name : {"median", "krum", "fednova", "scaffold",
                           "trimmed_mean", "norm_bounded"}) {
    StrategyOptions o = DpOptions(1, 1, 0);
    o.name = name;
    o.min_fit_agents = 5;  // Krum's 2f+3.
    absl::Status s = ValidateStrategyOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(s.message(), HasSubstr("strategy.dp.mode")) << name;
  }
  for (const char* name : {"fedavg", "fedprox", "fedavgm", "fedadam"}) {
    StrategyOptions o = DpOptions(1, 1, 2);
    o.name = name;
    EXPECT_TRUE(ValidateStrategyOptions(o).ok()) << name;
  }
}

TEST(DpStrategyTest, FedAvgMAndFedAdam_StepOnTheNoisedMean) {
  // With tiny noise the server steps see sum / sampled.
  for (const char* name : {"fedavgm", "fedadam"}) {
    StrategyOptions o = DpOptions(10, 1e-9, 2);
    o.name = name;
    const ModelState global = Zeros(2);
    std::unique_ptr<Strategy> s = Make(o, global);
    RoundAccumulator acc(s.get());
    ModelState d = Vec({1, 1});
    ASSERT_TRUE(acc.Add(Result("a", &d, 100), 0).ok());
    RoundClose close = acc.Close(Completed(1, {"a"}), global, 2);
    ASSERT_TRUE(close.next.has_value()) << name;
    if (std::string(name) == "fedavgm") {
      EXPECT_NEAR(W(*close.next)[0], 0.5, 1e-6);  // lr 1, v = mean.
    } else {
      EXPECT_GT(W(*close.next)[0], 0) << name;  // Adam moves toward it.
    }
  }
}

// ---------------------------------------------------------------------------
// The ledger.

TEST(RoundPrivacyTest, CentralRound_IsSubsampledGaussianWithQSampledOverN) {
  auto ledger = RoundPrivacy::Create(DpOptions(1.0, 1.1, 10));
  ASSERT_TRUE(ledger.ok());
  EXPECT_DOUBLE_EQ((*ledger)->RoundMechanism(100).q, 0.1);
  EXPECT_DOUBLE_EQ((*ledger)->RoundMechanism(100).sigma, 1.1);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE((*ledger)->ComposeRound(100).ok());
  const PrivacySpent spent = (*ledger)->Spent();
  EXPECT_EQ(spent.rounds, 50);
  EXPECT_DOUBLE_EQ(spent.delta, 1e-5);
  EXPECT_DOUBLE_EQ(spent.epsilon, EpsilonAfter(0.1, 1.1, 50, 1e-5));
}

TEST(RoundPrivacyTest, LocalRound_IsGaussianAtHalfTheMultiplier) {
  auto ledger = RoundPrivacy::Create(DpOptions(1.0, 8.0, 10, /*local=*/true));
  ASSERT_TRUE(ledger.ok());
  EXPECT_DOUBLE_EQ((*ledger)->RoundMechanism(100).q, 1.0);
  EXPECT_DOUBLE_EQ((*ledger)->RoundMechanism(100).sigma, 4.0);
  ASSERT_TRUE((*ledger)->ComposeRound(100).ok());
  EXPECT_DOUBLE_EQ((*ledger)->Spent().epsilon, EpsilonAfter(1, 4, 1, 1e-5));
}

TEST(RoundPrivacyTest, SaveRestore_ContinuesTheSameEpsilon) {
  auto whole = RoundPrivacy::Create(DpOptions(1.0, 1.0, 5));
  auto first = RoundPrivacy::Create(DpOptions(1.0, 1.0, 5));
  auto second = RoundPrivacy::Create(DpOptions(1.0, 1.0, 5));
  ASSERT_TRUE(whole.ok() && first.ok() && second.ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*whole)->ComposeRound(50).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*first)->ComposeRound(50).ok());
  ASSERT_TRUE((*second)->RestoreState((*first)->SaveState()).ok());
  EXPECT_EQ((*second)->Spent().rounds, 3);
  EXPECT_EQ((*second)->Spent().epsilon, (*first)->Spent().epsilon);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE((*second)->ComposeRound(50).ok());
  EXPECT_EQ((*second)->Spent().rounds, 5);
  EXPECT_NEAR((*second)->Spent().epsilon, (*whole)->Spent().epsilon, 1e-12);
  // Garbage is refused and changes nothing.
  for (const char* bad :
       {"", "rounds x\n", "rounds 2\nnot an accountant", "rounds -1\n"}) {
    EXPECT_EQ((*second)->RestoreState(bad).code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ((*second)->Spent().rounds, 5);
}

TEST(RoundPrivacyTest, Budget_RefusesTheRoundThatWouldExceedIt) {
  StrategyOptions o = DpOptions(1.0, 1.0, 2);
  const double e2 = EpsilonAfter(1.0, 1.0, 2, 1e-5);
  const double e3 = EpsilonAfter(1.0, 1.0, 3, 1e-5);
  o.dp->max_epsilon = (e2 + e3) / 2;
  auto ledger = RoundPrivacy::Create(o);
  ASSERT_TRUE(ledger.ok());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE((*ledger)->CheckBudget(2).ok()) << i;
    ASSERT_TRUE((*ledger)->ComposeRound(2).ok());
  }
  absl::Status s = (*ledger)->CheckBudget(2);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("strategy.dp.max_epsilon"));
  EXPECT_THAT(s.message(), HasSubstr("after 2 rounds"));
  EXPECT_NEAR(*(*ledger)->EpsilonAfterNextRound(2), e3, 1e-12);
  // No budget: never refused.
  o.dp->max_epsilon = 0;
  auto free = RoundPrivacy::Create(o);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*free)->ComposeRound(2).ok());
  EXPECT_TRUE((*free)->CheckBudget(2).ok());
}

TEST(RoundPrivacyTest, Accumulator_ComposesReleasedRounds_RecordsEpsilon) {
  const ModelState global = Zeros(2);
  std::unique_ptr<Strategy> s = Make(DpOptions(1.0, 1.0, 2), global);
  RoundAccumulator acc(s.get());
  ASSERT_NE(acc.privacy(), nullptr);
  ModelState d = Vec({0.1f, 0.1f});
  ASSERT_TRUE(acc.Add(Result("a", &d, 1), 0).ok());
  RoundClose c1 = acc.Close(Completed(1, {"a"}), global, 4);
  ASSERT_TRUE(c1.next.has_value());
  ASSERT_TRUE(c1.record.epsilon.has_value());
  EXPECT_DOUBLE_EQ(*c1.record.epsilon, EpsilonAfter(0.5, 1.0, 1, 1e-5));
  EXPECT_DOUBLE_EQ(*c1.record.delta, 1e-5);
  // An abandoned round releases nothing under central DP.
  RoundOutcome abandoned;
  abandoned.round = 2;
  RoundClose c2 = acc.Close(abandoned, global, 4);
  EXPECT_FALSE(c2.next.has_value());
  EXPECT_DOUBLE_EQ(*c2.record.epsilon, *c1.record.epsilon);
  EXPECT_EQ(acc.privacy()->Spent().rounds, 1);
  // Without DP no ledger and no epsilon.
  StrategyOptions plain;
  std::unique_ptr<Strategy> p = Make(plain, global);
  RoundAccumulator plain_acc(p.get());
  EXPECT_EQ(plain_acc.privacy(), nullptr);
  ModelState e = Vec({0.1f, 0.1f});
  ASSERT_TRUE(plain_acc.Add(Result("a", &e, 1), 0).ok());
  EXPECT_FALSE(plain_acc.Close(Completed(1, {"a"}), global, 4)
                   .record.epsilon.has_value());
}

// ---------------------------------------------------------------------------
// The agents' side and the history.

TEST(PrivatizeUpdateTest, ClipsThenNoisesWithTheSeed) {
  ModelState a = Vec({30, 40});
  PrivatizeUpdate(a, 5.0, 0.0, 1);
  EXPECT_LE(L2Norm(a), 5.0);
  EXPECT_NEAR(W(a)[0], 3.0, 1e-4);
  ModelState x = Zeros(100000), y = Zeros(100000);
  PrivatizeUpdate(x, 1.0, 2.0, 42);
  PrivatizeUpdate(y, 1.0, 2.0, 42);
  EXPECT_EQ(W(x), W(y));
  double sum2 = 0;
  for (float v : W(x)) sum2 += static_cast<double>(v) * v;
  EXPECT_NEAR(std::sqrt(sum2 / 100000), 2.0, 0.03);
  EXPECT_NE(SecretSeed(), SecretSeed());
}

TEST(HistoryPrivacyTest, EpsilonColumns_WrittenAndReadBack_OldFilesStillRead) {
  const std::string dir = ::testing::TempDir();
  const std::string path = absl::StrCat(dir, "/dp_history_", getpid(), ".csv");
  std::filesystem::remove(path);
  {
    auto w = HistoryWriter::Open(path, true, false, /*with_privacy=*/true);
    ASSERT_TRUE(w.ok()) << w.status();
    RoundRecord r;
    r.round = 1;
    r.epsilon = 1.234567;
    r.delta = 1e-5;
    ASSERT_TRUE((*w)->Append(r).ok());
  }
  std::ifstream in(path);
  std::string header;
  std::getline(in, header);
  EXPECT_THAT(header, ::testing::EndsWith(",epsilon,delta"));
  auto back = HistoryWriter::Read(path);
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->size(), 1u);
  EXPECT_NEAR(*(*back)[0].epsilon, 1.234567, 1e-9);
  EXPECT_NEAR(*(*back)[0].delta, 1e-5, 1e-12);
  // A resumed private run refuses a history without the columns.
  EXPECT_EQ(HistoryWriter::Open(path, true).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::filesystem::remove(path);
  // A file written before the columns existed reads as before.
  {
    auto w = HistoryWriter::Open(path, true);
    RoundRecord r;
    r.round = 3;
    ASSERT_TRUE((*w)->Append(r).ok());
  }
  back = HistoryWriter::Read(path);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)[0].round, 3);
  EXPECT_FALSE((*back)[0].epsilon.has_value());
  std::filesystem::remove(path);
}

TEST(HistoryReadTest, TornLastLine_NotARecord_AndAppendStartsAFreshLine) {
  const std::string path = ::testing::TempDir() + "/history_torn.csv";
  std::filesystem::remove(path);
  {
    auto w = HistoryWriter::Open(path, true);
    ASSERT_TRUE(w.ok());
    RoundRecord r;
    r.round = 1;
    ASSERT_TRUE((*w)->Append(r).ok());
  }
  std::ofstream(path, std::ios::app) << "2,3,0,60";  // A crash mid-line.
  auto before = HistoryWriter::Read(path);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->size(), 1u);
  {
    auto w = HistoryWriter::Open(path, true);
    ASSERT_TRUE(w.ok()) << w.status();
    RoundRecord r;
    r.round = 2;
    ASSERT_TRUE((*w)->Append(r).ok());
  }
  auto after = HistoryWriter::Read(path);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->size(), 2u);
  EXPECT_EQ((*after)[1].round, 2);
  EXPECT_EQ((*after)[1].num_agents, 0);
  std::filesystem::remove(path);
}

TEST(HistoryReadTest, IntegerColumnsOutOfRange_RefusedNamingTheColumn) {
  const std::string path = ::testing::TempDir() + "/history_range.csv";
  for (const std::string row : {"1e99,1", "1,3e9", "2.5,1", "1,nan"}) {
    std::ofstream(path) << "round,num_agents\n" << row << "\n";
    auto back = HistoryWriter::Read(path);
    EXPECT_EQ(back.status().code(), absl::StatusCode::kInvalidArgument) << row;
    EXPECT_THAT(back.status().message(),
                ::testing::HasSubstr("not a whole number in range"))
        << row;
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace fedge
