#include "common/server_optimizer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_codec.h"
#include "common/tensor_buffer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_tensors.h"

namespace fedge {
namespace {

using testing::Floats;
using testing::Int64s;

using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using Kind = AdaptiveServerOptimizer::Kind;
using Options = AdaptiveServerOptimizer::Options;

// A model with a float32 "w" holding `w`, an int64 "count" and a float32
// "b" holding `b`.
ModelState Model(std::vector<float> w, int64_t count, std::vector<float> b) {
  ModelState m;
  m.Add(Floats("w", std::move(w)));
  m.Add(Int64s("count", {count}));
  m.Add(Floats("b", std::move(b)));
  return m;
}

std::unique_ptr<AdaptiveServerOptimizer> MakeOptimizer(const Options& o) {
  absl::StatusOr<std::unique_ptr<AdaptiveServerOptimizer>> opt =
      AdaptiveServerOptimizer::Create(o);
  EXPECT_TRUE(opt.ok()) << opt.status();
  return std::move(opt).value();
}

Options MakeOptions(Kind kind, double learning_rate, double beta1, double beta2,
                    double tau) {
  Options o;
  o.kind = kind;
  o.learning_rate = learning_rate;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.tau = tau;
  return o;
}

std::vector<float> FloatsOf(const ModelState& m, size_t index) {
  absl::Span<const float> v = m.tensor(index).floats();
  return std::vector<float>(v.begin(), v.end());
}

// The moments (m, v) inside SaveState()'s bytes, read per the documented
// layout: a 21-byte header, then two length-prefixed model encodings.
std::pair<ModelState, ModelState> SavedMoments(const std::string& state) {
  absl::string_view rest(state);
  rest.remove_prefix(21);
  std::vector<ModelState> models;
  for (int i = 0; i < 2; ++i) {
    uint64_t len = 0;
    for (int b = 7; b >= 0; --b) len = (len << 8) | uint8_t(rest[b]);
    rest.remove_prefix(8);
    absl::StatusOr<ModelState> m = DecodeModel(rest.substr(0, len));
    EXPECT_TRUE(m.ok()) << m.status();
    models.push_back(std::move(m).value());
    rest.remove_prefix(len);
  }
  EXPECT_TRUE(rest.empty());
  return {std::move(models[0]), std::move(models[1])};
}

void AppendLE(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(char((value >> (8 * i))));
}

// A saved state assembled by hand, per the documented layout.
std::string StateBytes(uint8_t kind, int64_t step_count, const ModelState& m,
                       const ModelState& v) {
  std::string out = "FEDGEAOS";
  AppendLE(&out, 1, 4);
  AppendLE(&out, kind, 1);
  AppendLE(&out, static_cast<uint64_t>(step_count), 8);
  for (const ModelState* model : {&m, &v}) {
    const std::string bytes = EncodeModel(*model);
    AppendLE(&out, bytes.size(), 8);
    out += bytes;
  }
  return out;
}

// The float32 part of Model(): what m and v look like.
ModelState Moments(std::vector<float> w, std::vector<float> b) {
  ModelState m;
  m.Add(Floats("w", std::move(w)));
  m.Add(Floats("b", std::move(b)));
  return m;
}

TEST(AdaptiveServerOptimizerTest, Validate_NamesTheBadField) {
  EXPECT_TRUE(AdaptiveServerOptimizer::Validate(Options()).ok());
  struct Case {
    Options options;
    const char* message;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<Case> cases = {
      {MakeOptions(Kind::kAdam, 0, 0.9, 0.99, 1e-3), "learning_rate"},
      {MakeOptions(Kind::kAdam, -1, 0.9, 0.99, 1e-3), "learning_rate"},
      {MakeOptions(Kind::kAdam, inf, 0.9, 0.99, 1e-3), "learning_rate"},
      {MakeOptions(Kind::kAdam, 0.1, 1, 0.99, 1e-3), "beta1 must be in [0, 1)"},
      {MakeOptions(Kind::kAdam, 0.1, -0.1, 0.99, 1e-3), "beta1"},
      {MakeOptions(Kind::kAdam, 0.1, nan, 0.99, 1e-3), "beta1"},
      {MakeOptions(Kind::kYogi, 0.1, 0.9, 1, 1e-3), "beta2 must be in [0, 1)"},
      {MakeOptions(Kind::kYogi, 0.1, 0.9, -1, 1e-3), "beta2"},
      {MakeOptions(Kind::kAdagrad, 0.1, 0.9, 0.99, 0), "tau must be"},
      {MakeOptions(Kind::kAdagrad, 0.1, 0.9, 0.99, nan), "tau"},
      {MakeOptions(static_cast<Kind>(7), 0.1, 0.9, 0.99, 1e-3), "kind"},
  };
  for (const Case& c : cases) {
    absl::Status status = AdaptiveServerOptimizer::Validate(c.options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
    EXPECT_EQ(AdaptiveServerOptimizer::Create(c.options).status(), status);
  }
}

TEST(AdaptiveServerOptimizerTest, Adagrad_OneStepByHand) {
  // tau = 0.3: v starts at 0.09. beta1 = 0.9, eta = 1.
  //   delta  0.4: m = 0.04,  v = 0.09 + 0.16 = 0.25, x += 0.04 / 0.8 = 0.05
  //   delta -0.4: m = -0.04, v = 0.25,               x -= 0.05
  //   delta  0:   m = 0,     v = 0.09,               x unchanged
  auto opt = MakeOptimizer(MakeOptions(Kind::kAdagrad, 1.0, 0.9, 0.5, 0.3));
  ModelState global = Model({1, 1, 1}, 7, {2});
  ASSERT_TRUE(opt->Step(Model({0.4f, -0.4f, 0}, 99, {0}), global).ok());
  EXPECT_THAT(FloatsOf(global, 0),
              ElementsAre(FloatNear(1.05f, 1e-6), FloatNear(0.95f, 1e-6), 1));
  EXPECT_THAT(FloatsOf(global, 2), ElementsAre(2.0f));
  EXPECT_THAT(global.tensor(1).int64s(), ElementsAre(7));  // Untouched.
  EXPECT_EQ(opt->step_count(), 1);

  auto [m, v] = SavedMoments(opt->SaveState());
  EXPECT_THAT(FloatsOf(m, 0),
              ElementsAre(FloatNear(0.04f, 1e-7), FloatNear(-0.04f, 1e-7), 0));
  EXPECT_THAT(FloatsOf(v, 0), ElementsAre(FloatNear(0.25f, 1e-7),
                                          FloatNear(0.25f, 1e-7), 0.09f));
  EXPECT_THAT(FloatsOf(v, 1), ElementsAre(0.09f));

  // Second step, delta 0.4 again on w[0]: m = 0.036 + 0.04 = 0.076,
  // v = 0.25 + 0.16 = 0.41, x += 0.076 / (sqrt(0.41) + 0.3).
  ASSERT_TRUE(opt->Step(Model({0.4f, 0, 0}, 0, {0}), global).ok());
  EXPECT_NEAR(global.tensor(0).floats()[0],
              1.05 + 0.076 / (std::sqrt(0.41) + 0.3), 1e-6);
}

TEST(AdaptiveServerOptimizerTest, Adam_OneStepByHand) {
  // beta1 = beta2 = 0.5, tau = 0.1 (v starts at 0.01), eta = 0.6.
  //   delta  0.7: m = 0.35, v = 0.005 + 0.245 = 0.25, x += 0.6*0.35/0.6
  //   delta -0.7: m = -0.35, v = 0.25, x -= 0.35
  //   delta  0:   m = 0, v = 0.005, x unchanged
  auto opt = MakeOptimizer(MakeOptions(Kind::kAdam, 0.6, 0.5, 0.5, 0.1));
  ModelState global = Model({0, 0, 3}, 1, {0});
  ASSERT_TRUE(opt->Step(Model({0.7f, -0.7f, 0}, 5, {0.7f}), global).ok());
  EXPECT_THAT(FloatsOf(global, 0),
              ElementsAre(FloatNear(0.35f, 1e-6), FloatNear(-0.35f, 1e-6), 3));
  EXPECT_THAT(FloatsOf(global, 2), ElementsAre(FloatNear(0.35f, 1e-6)));
  EXPECT_THAT(global.tensor(1).int64s(), ElementsAre(1));
  auto [m, v] = SavedMoments(opt->SaveState());
  EXPECT_THAT(FloatsOf(m, 0),
              ElementsAre(FloatNear(0.35f, 1e-7), FloatNear(-0.35f, 1e-7), 0));
  EXPECT_THAT(FloatsOf(v, 0),
              ElementsAre(FloatNear(0.25f, 1e-7), FloatNear(0.25f, 1e-7),
                          FloatNear(0.005f, 1e-9)));
}

TEST(AdaptiveServerOptimizerTest, Yogi_OneStepByHand_AllThreeSigns) {
  // tau = 0.5 (v starts at 0.25), beta1 = 0.5, beta2 = 0.75, eta = 1.
  //   delta  0.5:  delta^2 = v: sign 0, v = 0.25; m = 0.25;
  //                x += 0.25 / (0.5 + 0.5) = 0.25
  //   delta  0.75: delta^2 > v: v = 0.25 + 0.25 * 0.5625 = 0.390625;
  //                m = 0.375; x += 0.375 / (0.625 + 0.5) = 1/3
  //   delta -0.28: delta^2 < v: v = 0.25 - 0.25 * 0.0784 = 0.2304;
  //                m = -0.14; x += -0.14 / (0.48 + 0.5) = -1/7
  auto opt = MakeOptimizer(MakeOptions(Kind::kYogi, 1.0, 0.5, 0.75, 0.5));
  ModelState global = Model({0, 0, 0}, 4, {1});
  ASSERT_TRUE(opt->Step(Model({0.5f, 0.75f, -0.28f}, 9, {0}), global).ok());
  EXPECT_THAT(FloatsOf(global, 0), ElementsAre(0.25f, FloatNear(1.0f / 3, 1e-6),
                                               FloatNear(-1.0f / 7, 1e-6)));
  EXPECT_THAT(FloatsOf(global, 2), ElementsAre(1.0f));
  EXPECT_THAT(global.tensor(1).int64s(), ElementsAre(4));
  auto [m, v] = SavedMoments(opt->SaveState());
  EXPECT_THAT(FloatsOf(m, 0),
              ElementsAre(0.25f, 0.375f, FloatNear(-0.14f, 1e-7)));
  EXPECT_THAT(FloatsOf(v, 0),
              ElementsAre(0.25f, 0.390625f, FloatNear(0.2304f, 1e-7)));
  EXPECT_THAT(FloatsOf(v, 1), ElementsAre(0.25f));
}

TEST(AdaptiveServerOptimizerTest, Adam_ManySteps_MatchesDoubleReference) {
  const Options options = MakeOptions(Kind::kAdam, 0.05, 0.9, 0.99, 1e-3);
  auto opt = MakeOptimizer(options);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  const size_t size = 1000;
  std::vector<float> w0(size);
  for (float& x : w0) x = normal(rng);
  ModelState global = Model(w0, 0, {0.5f});

  // Reference: the paper's Algorithm 2 in double precision.
  std::vector<double> x(w0.begin(), w0.end());
  std::vector<double> m(size, 0.0);
  std::vector<double> v(size, options.tau * options.tau);
  for (int step = 0; step < 20; ++step) {
    std::vector<float> delta(size);
    for (float& d : delta) d = normal(rng) + 0.05f;  // Consistent drift.
    for (size_t j = 0; j < size; ++j) {
      const double d = delta[j];
      m[j] = options.beta1 * m[j] + (1 - options.beta1) * d;
      v[j] = options.beta2 * v[j] + (1 - options.beta2) * d * d;
      x[j] += options.learning_rate * m[j] / (std::sqrt(v[j]) + options.tau);
    }
    ASSERT_TRUE(opt->Step(Model(delta, 0, {0}), global).ok());
  }
  absl::Span<const float> got = global.tensor(0).floats();
  for (size_t j = 0; j < size; ++j) {
    ASSERT_NEAR(got[j], x[j], 1e-5 * (1 + std::abs(x[j]))) << j;
  }
  EXPECT_EQ(opt->step_count(), 20);
}

class SaveRestoreTest : public ::testing::TestWithParam<Kind> {};

TEST_P(SaveRestoreTest, RestoredOptimizer_ContinuesBitIdentically) {
  const Options options = MakeOptions(GetParam(), 0.1, 0.9, 0.99, 1e-2);
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  std::vector<ModelState> deltas;
  for (int k = 0; k < 5; ++k) {
    std::vector<float> w(300), b(7);
    for (float& x : w) x = normal(rng);
    for (float& x : b) x = normal(rng);
    deltas.push_back(Model(w, k, b));
  }
  const ModelState start =
      Model(std::vector<float>(300, 0.5f), 3, std::vector<float>(7, -1.0f));

  auto uninterrupted = MakeOptimizer(options);
  ModelState a = start.Clone();
  for (const ModelState& d : deltas) {
    ASSERT_TRUE(uninterrupted->Step(d, a).ok());
  }

  auto before = MakeOptimizer(options);
  ModelState b = start.Clone();
  for (int k = 0; k < 3; ++k) ASSERT_TRUE(before->Step(deltas[k], b).ok());
  const std::string saved = before->SaveState();
  before.reset();

  auto after = MakeOptimizer(options);
  ASSERT_TRUE(after->RestoreState(saved, SchemaOf(start)).ok());
  EXPECT_EQ(after->step_count(), 3);
  EXPECT_EQ(after->SaveState(), saved);
  for (int k = 3; k < 5; ++k) ASSERT_TRUE(after->Step(deltas[k], b).ok());

  EXPECT_EQ(EncodeModel(a), EncodeModel(b));
  EXPECT_EQ(after->SaveState(), uninterrupted->SaveState());
  EXPECT_EQ(after->step_count(), 5);
}

INSTANTIATE_TEST_SUITE_P(AllKinds, SaveRestoreTest,
                         ::testing::Values(Kind::kAdagrad, Kind::kAdam,
                                           Kind::kYogi));

TEST(AdaptiveServerOptimizerTest, SaveBeforeFirstStep_RestoresFreshState) {
  auto fresh = MakeOptimizer(Options());
  const std::string saved = fresh->SaveState();
  auto opt = MakeOptimizer(Options());
  ModelState global = Model({1, 2}, 0, {3});
  ASSERT_TRUE(opt->Step(Model({1, 1}, 0, {1}), global).ok());
  ASSERT_TRUE(opt->RestoreState(saved, SchemaOf(global)).ok());
  EXPECT_EQ(opt->step_count(), 0);
  EXPECT_EQ(opt->SaveState(), saved);
  // A fresh state accepts any model.
  ModelState other;
  other.Add(Floats("z", {1, 2, 3}));
  EXPECT_TRUE(opt->Step(other.Clone(), other).ok());
}

TEST(AdaptiveServerOptimizerTest, CorruptState_RejectedAndNothingChanges) {
  const Options options = MakeOptions(Kind::kYogi, 0.1, 0.9, 0.99, 1e-3);
  const ModelSchema schema = SchemaOf(Model({0, 0}, 0, {0}));
  // A valid state to corrupt: after two steps.
  auto source = MakeOptimizer(options);
  ModelState g = Model({0, 0}, 0, {0});
  ASSERT_TRUE(source->Step(Model({1, -2}, 0, {3}), g).ok());
  ASSERT_TRUE(source->Step(Model({0.5f, 2}, 0, {-1}), g).ok());
  const std::string valid = source->SaveState();

  // The optimizer under test holds a different state (one step).
  auto opt = MakeOptimizer(options);
  ModelState g2 = Model({0, 0}, 0, {0});
  ASSERT_TRUE(opt->Step(Model({4, 4}, 0, {4}), g2).ok());
  const std::string mine = opt->SaveState();

  auto expect_rejected = [&](const std::string& bytes, absl::StatusCode code,
                             const std::string& what) {
    absl::Status status = opt->RestoreState(bytes, schema);
    EXPECT_EQ(status.code(), code) << what << ": " << status;
    EXPECT_EQ(opt->SaveState(), mine) << what;
    EXPECT_EQ(opt->step_count(), 1) << what;
  };

  for (size_t len = 0; len < valid.size(); ++len) {
    expect_rejected(valid.substr(0, len), absl::StatusCode::kDataLoss,
                    "truncated to " + std::to_string(len));
  }
  expect_rejected(valid + "x", absl::StatusCode::kDataLoss, "trailing byte");
  std::string bad = valid;
  bad[0] = 'X';
  expect_rejected(bad, absl::StatusCode::kDataLoss, "magic");
  bad = valid;
  bad[8] = 2;
  expect_rejected(bad, absl::StatusCode::kDataLoss, "version");
  bad = valid;
  bad[12] = 9;
  expect_rejected(bad, absl::StatusCode::kDataLoss, "unknown kind");
  bad = valid;
  bad[12] = static_cast<char>(Kind::kAdam);
  expect_rejected(bad, absl::StatusCode::kInvalidArgument, "other kind");
  bad = valid;
  bad[20] = '\x80';  // Step count's top byte: negative.
  expect_rejected(bad, absl::StatusCode::kDataLoss, "negative step count");
  bad = valid;
  bad[21 + 8] = 'X';  // m's own magic.
  expect_rejected(bad, absl::StatusCode::kDataLoss, "m's encoding");

  const uint8_t yogi = static_cast<uint8_t>(Kind::kYogi);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const ModelState ok_m = Moments({0.1f, 0.2f}, {0.3f});
  const ModelState ok_v = Moments({0.1f, 0.2f}, {0.3f});
  ASSERT_TRUE(opt->RestoreState(StateBytes(yogi, 2, ok_m, ok_v), schema).ok());
  ASSERT_TRUE(opt->RestoreState(mine, schema).ok());

  expect_rejected(StateBytes(yogi, 2, Moments({0, nan}, {0}), ok_v),
                  absl::StatusCode::kDataLoss, "NaN in m");
  expect_rejected(StateBytes(yogi, 2, ok_m, Moments({0, -1e-3f}, {0})),
                  absl::StatusCode::kDataLoss, "negative v");
  expect_rejected(StateBytes(yogi, 0, ok_m, ok_v), absl::StatusCode::kDataLoss,
                  "moments at step 0");
  expect_rejected(StateBytes(yogi, 2, Moments({0, 0, 0}, {0}), ok_v),
                  absl::StatusCode::kInvalidArgument, "m of another shape");
  expect_rejected(StateBytes(yogi, 2, ok_m, ModelState()),
                  absl::StatusCode::kInvalidArgument, "v missing");
  // The right bytes for another model.
  absl::Status status =
      opt->RestoreState(valid, SchemaOf(Model({0, 0, 0}, 0, {0})));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(opt->SaveState(), mine);
}

TEST(AdaptiveServerOptimizerTest, InvalidStep_ChangesNothing) {
  auto opt = MakeOptimizer(Options());
  ModelState global = Model({1, 2}, 0, {3});
  ASSERT_TRUE(opt->Step(Model({1, 1}, 0, {1}), global).ok());
  const std::string state = opt->SaveState();
  const std::string model = EncodeModel(global);

  // mean_delta shaped differently from global.
  absl::Status status = opt->Step(Model({1, 1, 1}, 0, {1}), global);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("mean_delta"));
  // A non-finite delta.
  status = opt->Step(Model({1, std::numeric_limits<float>::infinity()}, 0, {1}),
                     global);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("finite"));
  EXPECT_EQ(EncodeModel(global), model);

  // A consistent pair, but not the model the state belongs to.
  ModelState other = Model({1, 2, 3}, 0, {3});
  const std::string other_bytes = EncodeModel(other);
  status = opt->Step(Model({1, 1, 1}, 0, {1}), other);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("another model"));
  EXPECT_EQ(EncodeModel(other), other_bytes);

  EXPECT_EQ(opt->SaveState(), state);
  EXPECT_EQ(opt->step_count(), 1);
}

TEST(AdaptiveServerOptimizerTest, KindNames) {
  EXPECT_STREQ(ServerOptimizerKindName(Kind::kAdagrad), "adagrad");
  EXPECT_STREQ(ServerOptimizerKindName(Kind::kAdam), "adam");
  EXPECT_STREQ(ServerOptimizerKindName(Kind::kYogi), "yogi");
}

}  // namespace
}  // namespace fedge
