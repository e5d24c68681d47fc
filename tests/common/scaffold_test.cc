#include "common/scaffold.h"

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_codec.h"
#include "common/strategy.h"
#include "common/tensor_buffer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/test_tensors.h"

namespace fedge {
namespace {

using testing::Floats;
using testing::Model;

using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::FloatNear;
using ::testing::NotNull;

constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;

// A control variate (prefix "scaffold.c/") or its delta ("scaffold.dc/").
ModelState Control(const std::string& prefix, float w0, float w1, float b) {
  ModelState m;
  m.Add(Floats(prefix + "w", {w0, w1}));
  m.Add(Floats(prefix + "b", {b}));
  return m;
}
ModelState C(float w0, float w1, float b) {
  return Control(kScaffoldControlPrefix, w0, w1, b);
}

std::vector<float> Values(const ModelState& m, const std::string& name) {
  const TensorBuffer* t = m.Find(name);
  EXPECT_THAT(t, NotNull()) << name;
  if (t == nullptr) return {};
  return std::vector<float>(t->floats().begin(), t->floats().end());
}

ScaffoldClient MakeClient(ModelState control = ModelState()) {
  absl::StatusOr<ScaffoldClient> c =
      ScaffoldClient::Create(SchemaOf(Model(0, 0, 0)), std::move(control));
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(c).value();
}

TEST(ScaffoldTest, Schema_OneFloatTensorPerFloatModelTensor) {
  ModelSchema s = ScaffoldSchema(SchemaOf(Model(0, 0, 0)), "p/");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name, "p/w");
  EXPECT_EQ(s[0].dtype, DType::kFloat32);
  EXPECT_THAT(s[0].shape, ElementsAre(2));
  EXPECT_EQ(s[1].name, "p/b");
  ModelState z = ScaffoldZeros(SchemaOf(Model(0, 0, 0)), kScaffoldDeltaPrefix);
  EXPECT_EQ(CheckSchema(SchemaOf(Control("scaffold.dc/", 0, 0, 0)), z),
            absl::OkStatus());
  EXPECT_THAT(Values(z, "scaffold.dc/w"), ElementsAre(0, 0));
}

TEST(ScaffoldTest, Client_StartsAtZero_CorrectionIsServerMinusClient) {
  ScaffoldClient client = MakeClient();
  EXPECT_THAT(Values(client.control(), "scaffold.c/w"), ElementsAre(0, 0));
  absl::StatusOr<ModelState> corr = client.Correction(C(1, 0.5f, 1));
  ASSERT_TRUE(corr.ok()) << corr.status();
  // The model's schema, zeros for the int64 counter.
  EXPECT_EQ(CheckSchema(SchemaOf(Model(0, 0, 0)), *corr), absl::OkStatus());
  EXPECT_THAT(Values(*corr, "w"), ElementsAre(1, 0.5f));
  EXPECT_THAT(Values(*corr, "b"), ElementsAre(1));
  EXPECT_EQ(corr->Find("count")->int64s()[0], 0);
}

TEST(ScaffoldTest, Client_Finish_ByHand) {
  ScaffoldClient client = MakeClient();
  const ModelState c = C(1, 0.5f, 1);
  // K = 2 steps at lr 0.1: 1 / (K lr) = 5. delta = y - x.
  // dc = c_i+ - c_i = -c + (x - y) / (K lr) = -c - 5 delta:
  //   w: [-1 + 1, -0.5 - 2] = [0, -2.5]; b: -1 - 0.5 = -1.5.
  absl::StatusOr<ModelState> dc =
      client.Finish(Model(-0.2f, 0.4f, 0.1f, 7), c, 2, 0.1);
  ASSERT_TRUE(dc.ok()) << dc.status();
  EXPECT_EQ(CheckSchema(SchemaOf(Control("scaffold.dc/", 0, 0, 0)), *dc),
            absl::OkStatus());
  EXPECT_THAT(Values(*dc, "scaffold.dc/w"),
              ElementsAre(FloatNear(0, 1e-6), FloatNear(-2.5f, 1e-6)));
  EXPECT_THAT(Values(*dc, "scaffold.dc/b"),
              ElementsAre(FloatNear(-1.5f, 1e-6)));
  // c_i is now c_i + dc, and the next correction c - c_i = [1, 3 | 2.5].
  EXPECT_THAT(Values(client.control(), "scaffold.c/w"),
              ElementsAre(FloatNear(0, 1e-6), FloatNear(-2.5f, 1e-6)));
  absl::StatusOr<ModelState> corr = client.Correction(c);
  ASSERT_TRUE(corr.ok()) << corr.status();
  EXPECT_THAT(Values(*corr, "w"),
              ElementsAre(FloatNear(1, 1e-6), FloatNear(3, 1e-6)));
  EXPECT_THAT(Values(*corr, "b"), ElementsAre(FloatNear(2.5f, 1e-6)));
}

TEST(ScaffoldTest, Client_RestoredControl) {
  ScaffoldClient client = MakeClient(C(0.25f, -1, 2));
  absl::StatusOr<ModelState> corr = client.Correction(C(1, 1, 1));
  ASSERT_TRUE(corr.ok()) << corr.status();
  EXPECT_THAT(Values(*corr, "w"), ElementsAre(0.75f, 2));
  EXPECT_THAT(Values(*corr, "b"), ElementsAre(-1));
}

TEST(ScaffoldTest, Client_Finish_BadArguments_ChangeNothing) {
  ScaffoldClient client = MakeClient(C(0.5f, 0.5f, 0.5f));
  const std::string before = EncodeModel(client.control());
  const ModelState c = C(1, 1, 1);
  EXPECT_EQ(client.Finish(Model(1, 1, 1), c, 0, 0.1).status().code(),
            kInvalidArgument);
  EXPECT_EQ(client.Finish(Model(1, 1, 1), c, 5, 0).status().code(),
            kInvalidArgument);
  EXPECT_EQ(client.Finish(Model(1, 1, 1), c, 5, -1).status().code(),
            kInvalidArgument);
  ModelState short_delta;
  short_delta.Add(Floats("w", {1, 1}));
  EXPECT_EQ(client.Finish(short_delta, c, 5, 0.1).status().code(),
            kInvalidArgument);
  EXPECT_EQ(client.Finish(Model(1, 1, 1), Control("x/", 1, 1, 1), 5, 0.1)
                .status()
                .code(),
            kInvalidArgument);
  // dc would overflow: refused before c_i changes.
  EXPECT_EQ(client.Finish(Model(3e38f, 0, 0), c, 1, 1e-3).status().code(),
            kInvalidArgument);
  EXPECT_EQ(EncodeModel(client.control()), before);
  EXPECT_EQ(client.Correction(Control("x/", 1, 1, 1)).status().code(),
            kInvalidArgument);
}

TEST(ScaffoldTest, Client_Create_RefusesControlThatDoesNotFit) {
  const ModelSchema model = SchemaOf(Model(0, 0, 0));
  EXPECT_EQ(ScaffoldClient::Create(model, Control("scaffold.dc/", 0, 0, 0))
                .status()
                .code(),
            kInvalidArgument);
  ModelState one;
  one.Add(Floats("scaffold.c/w", {0, 0}));
  EXPECT_EQ(ScaffoldClient::Create(model, std::move(one)).status().code(),
            kInvalidArgument);
  EXPECT_EQ(ScaffoldClient::Create(
                model, C(std::numeric_limits<float>::quiet_NaN(), 0, 0))
                .status()
                .code(),
            kInvalidArgument);
}

ModelState Download(const ModelState& model, const ModelState& control) {
  ModelState d = model.Clone();
  for (const TensorBuffer& t : control.tensors()) d.Add(t.Clone());
  return d;
}

TEST(ScaffoldTest, SplitDownload_ModelThenControl) {
  ModelState model, control;
  ASSERT_EQ(SplitScaffoldDownload(Download(Model(1, 2, 3, 4), C(5, 6, 7)),
                                  &model, &control),
            absl::OkStatus());
  EXPECT_EQ(EncodeModel(model), EncodeModel(Model(1, 2, 3, 4)));
  EXPECT_EQ(EncodeModel(control), EncodeModel(C(5, 6, 7)));
}

TEST(ScaffoldTest, SplitDownload_RefusesWhatDoesNotFit) {
  ModelState model = Model(9, 9, 9), control = C(9, 9, 9);
  const std::string model_before = EncodeModel(model);
  // A model tensor after the control tensors.
  ModelState d = Download(C(1, 1, 1), Model(1, 2, 3));
  EXPECT_EQ(SplitScaffoldDownload(std::move(d), &model, &control).code(),
            kInvalidArgument);
  // No control at all.
  EXPECT_EQ(SplitScaffoldDownload(Model(1, 2, 3), &model, &control).code(),
            kInvalidArgument);
  // A control tensor missing.
  ModelState partial = Model(1, 2, 3);
  partial.Add(Floats("scaffold.c/w", {1, 1}));
  EXPECT_EQ(SplitScaffoldDownload(std::move(partial), &model, &control).code(),
            kInvalidArgument);
  // A control tensor of the wrong shape.
  ModelState shape = Model(1, 2, 3);
  shape.Add(Floats("scaffold.c/w", {1, 1, 1}));
  shape.Add(Floats("scaffold.c/b", {1}));
  EXPECT_EQ(SplitScaffoldDownload(std::move(shape), &model, &control).code(),
            kInvalidArgument);
  EXPECT_EQ(EncodeModel(model), model_before);
}

// The agent side and the server side together: two agents start from
// c = c_i = 0 and run Finish; the server's c is then |S| / N mean(dc).
TEST(ScaffoldTest, ClientsAndServer_ControlVariatesAgree) {
  StrategyOptions o;
  o.name = "scaffold";
  absl::StatusOr<std::unique_ptr<Strategy>> server =
      CreateStrategy(o, Model(0, 0, 0));
  ASSERT_TRUE(server.ok()) << server.status();
  const ModelState c = (*server)->BroadcastExtras()->Clone();
  ScaffoldClient a = MakeClient(), b = MakeClient();
  ModelState delta_a = Model(-1, 0, 0.5f), delta_b = Model(0, -2, 0.5f);
  absl::StatusOr<ModelState> dc_a = a.Finish(delta_a, c, 10, 0.1);
  absl::StatusOr<ModelState> dc_b = b.Finish(delta_b, c, 10, 0.1);
  ASSERT_TRUE(dc_a.ok() && dc_b.ok());
  for (auto [delta, dc] : {std::pair{&delta_a, &*dc_a}, {&delta_b, &*dc_b}}) {
    FitResult r;
    r.num_examples = 1;
    r.num_steps = 10;
    r.delta = delta;
    r.extras = dc;
    ASSERT_EQ((*server)->AddUpdate(r), absl::OkStatus());
  }
  absl::StatusOr<ModelState> next =
      (*server)->AggregateFit({1, 2, {}}, Model(0, 0, 0));
  ASSERT_TRUE(next.ok()) << next.status();
  // dc_a = -delta_a = [1, 0 | -0.5], dc_b = [0, 2 | -0.5]; N = |S| = 2:
  // c = mean = [0.5, 1 | -0.5] (with full participation, c is the mean of
  // the agents' c_i).
  const ModelState& c1 = *(*server)->BroadcastExtras();
  EXPECT_THAT(Values(c1, "scaffold.c/w"),
              ElementsAre(FloatEq(0.5f), FloatEq(1)));
  EXPECT_THAT(Values(c1, "scaffold.c/b"), ElementsAre(FloatEq(-0.5f)));
  for (const std::string name : {"w", "b"}) {
    std::vector<float> ca = Values(a.control(), "scaffold.c/" + name);
    std::vector<float> cb = Values(b.control(), "scaffold.c/" + name);
    std::vector<float> cs = Values(c1, "scaffold.c/" + name);
    for (size_t j = 0; j < cs.size(); ++j) {
      EXPECT_FLOAT_EQ(cs[j], (ca[j] + cb[j]) / 2) << name << j;
    }
  }
}

}  // namespace
}  // namespace fedge
