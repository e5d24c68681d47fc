#include "common/ml/prune.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/ml/model_cost.h"
#include "common/ml/model_files.h"
#include "common/ml/model_init.h"
#include "common/model_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ModelSpec Spec(const std::string& arch) {
  ModelSpec spec;
  spec.architecture = arch;
  return spec;
}

ModelState Initial(const ModelSpec& spec) {
  auto state = InitialModelState(spec);
  EXPECT_TRUE(state.ok()) << state.status();
  return *std::move(state);
}

int64_t Zeros(const TensorBuffer& t) {
  return std::count(t.floats().begin(), t.floats().end(), 0.0f);
}

// Zeros of channel c of a [out, ...] weight.
bool RowIsZero(const TensorBuffer& t, int64_t c) {
  const int64_t row = t.num_elements() / t.shape()[0];
  for (int64_t i = c * row; i < (c + 1) * row; ++i) {
    if (t.floats()[i] != 0) return false;
  }
  return true;
}

// A torchscript-like state: a prunable weight, its bias, a batch norm.
ModelState Tiny() {
  ModelState s;
  s.Add(*TensorBuffer::FromFloats("fc.weight", {2, 3},
                                  {0.5f, -0.1f, 0.3f, -0.2f, 0.05f, 0.9f}));
  s.Add(*TensorBuffer::FromFloats("fc.bias", {2}, {0.01f, -0.02f}));
  s.Add(*TensorBuffer::FromFloats("bn.weight", {2}, {0.001f, 1}));
  return s;
}

TEST(PruneTest, UnstructuredZeroesTheSmallestMagnitudesOnly) {
  ModelSpec spec = Spec("torchscript");
  auto r = Prune(spec, Tiny(), {0.5, false});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->state.tensor(0).floats(),
              ElementsAre(0.5f, 0, 0.3f, 0, 0, 0.9f));
  EXPECT_THAT(r->state.tensor(1).floats(), ElementsAre(0.01f, -0.02f));
  EXPECT_THAT(r->state.tensor(2).floats(), ElementsAre(0.001f, 1));
}

TEST(PruneTest, UnstructuredIsGlobalAndExact) {
  const ModelSpec spec = Spec("2nn");
  const ModelState state = Initial(spec);
  auto r = Prune(spec, state, {0.8, false});
  ASSERT_TRUE(r.ok()) << r.status();
  auto stats = MeasureSparsity(spec, r->state);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->prunable, 784 * 200 + 200 * 200 + 200 * 10);
  EXPECT_EQ(stats->prunable_zeros, std::llround(0.8 * stats->prunable));
  // One global threshold: every kept weight is at least every pruned one.
  float largest_pruned = 0, smallest_kept = 1e9;
  for (size_t i = 0; i < state.size(); ++i) {
    if (!IsPrunableWeight(state.tensor(i))) {
      EXPECT_EQ(Zeros(r->state.tensor(i)), 0) << state.tensor(i).name();
      continue;
    }
    for (int64_t j = 0; j < state.tensor(i).num_elements(); ++j) {
      const float m = std::abs(state.tensor(i).floats()[j]);
      if (r->state.tensor(i).floats()[j] == 0) {
        largest_pruned = std::max(largest_pruned, m);
      } else {
        smallest_kept = std::min(smallest_kept, m);
      }
    }
  }
  EXPECT_LE(largest_pruned, smallest_kept);
  // Pruning again at the same sparsity changes nothing.
  auto again = Prune(spec, r->state, {0.8, false});
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(Zeros(again->state.tensor(i)), Zeros(r->state.tensor(i)));
  }
}

TEST(PruneTest, RefusesBadSparsityAndModelsWithoutWeights) {
  EXPECT_EQ(
      Prune(Spec("2nn"), Initial(Spec("2nn")), {1.0, false}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Prune(Spec("2nn"), Initial(Spec("2nn")), {-0.1, false}).status().code(),
      absl::StatusCode::kInvalidArgument);
  ModelState biases;
  biases.Add(*TensorBuffer::FromFloats("fc.bias", {2}, {1, 2}));
  auto r = Prune(Spec("torchscript"), biases, {0.5, false});
  EXPECT_THAT(r.status().message(), HasSubstr("no prunable weights"));
}

TEST(PruneTest, RefusesAStateThatIsNotItsSpecsNetwork) {
  auto r = Prune(Spec("cnn"), Initial(Spec("2nn")), {0.5, false});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("conv1.weight"));
}

TEST(PruneTest, StructuredNarrowsTheMlpToItsStrongestNeurons) {
  const ModelSpec spec = Spec("2nn");
  const ModelState state = Initial(spec);
  auto r = Prune(spec, state, {0.75, true});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->spec.architecture, "mlp");
  EXPECT_THAT(r->spec.hidden_units, ElementsAre(50, 50));
  EXPECT_TRUE(CheckModelSpec(r->spec).ok());
  EXPECT_EQ(r->channels_pruned, 300);
  EXPECT_EQ(r->channels_total, 400);
  // The pruned state is exactly the narrower network's schema.
  auto narrow = InitialModelState(r->spec);
  ASSERT_TRUE(narrow.ok());
  EXPECT_TRUE(CheckSameSchema(*narrow, r->state).ok());
  // fc1's kept rows are its 50 rows of largest L1 norm, in order.
  const TensorBuffer& fc1 = *state.Find("fc1.weight");
  std::vector<std::pair<double, int>> norms;
  for (int c = 0; c < 200; ++c) {
    double n = 0;
    for (int i = 0; i < 784; ++i) n += std::abs(fc1.floats()[c * 784 + i]);
    norms.push_back({-n, c});
  }
  std::sort(norms.begin(), norms.end());
  std::vector<int> kept;
  for (int i = 0; i < 50; ++i) kept.push_back(norms[i].second);
  std::sort(kept.begin(), kept.end());
  const TensorBuffer& got = *r->state.Find("fc1.weight");
  for (int k = 0; k < 50; ++k) {
    EXPECT_EQ(got.floats()[k * 784 + 3], fc1.floats()[kept[k] * 784 + 3]);
  }
  EXPECT_EQ(r->state.Find("fc2.weight")->shape(),
            (std::vector<int64_t>{50, 50}));
  EXPECT_EQ(r->state.Find("fc3.weight")->shape(),
            (std::vector<int64_t>{10, 50}));
}

TEST(PruneTest, StructuredZeroesCnnChannelsAndWhatReadsThem) {
  const ModelSpec spec = Spec("cnn");
  auto r = Prune(spec, Initial(spec), {0.75, true});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->spec.architecture, "cnn");
  EXPECT_THAT(r->note, HasSubstr("zeroed, not removed"));
  const TensorBuffer& conv1 = *r->state.Find("conv1.weight");
  const TensorBuffer& conv2 = *r->state.Find("conv2.weight");
  const TensorBuffer& fc1 = *r->state.Find("fc1.weight");
  int zero_filters = 0;
  for (int c = 0; c < 32; ++c) {
    if (!RowIsZero(conv1, c)) continue;
    ++zero_filters;
    EXPECT_EQ(r->state.Find("conv1.bias")->floats()[c], 0);
    for (int o = 0; o < 64; ++o) {  // conv2's input channel c.
      for (int k = 0; k < 25; ++k) {
        ASSERT_EQ(conv2.floats()[(o * 32 + c) * 25 + k], 0);
      }
    }
  }
  EXPECT_EQ(zero_filters, 24);
  for (int c = 0; c < 64; ++c) {
    if (!RowIsZero(conv2, c)) continue;
    for (int j = 0; j < 49; ++j) ASSERT_EQ(fc1.floats()[c * 49 + j], 0);
  }
  // The zeros make it the network with a quarter of the channels.
  auto stats = MeasureSparsity(spec, r->state);
  ASSERT_TRUE(stats.ok());
  const int64_t narrow = (8 * 25 + 8) + (16 * 8 * 25 + 16) +
                         (16 * 49 * 128 + 128) + (128 * 10 + 10);
  EXPECT_EQ(stats->nonzero_parameters, narrow);
}

TEST(PruneTest, ZeroChannelsOfAStructuredCnnAreRemovedForExport) {
  const ModelSpec spec = Spec("cnn");
  auto r = Prune(spec, Initial(spec), {0.75, true});
  ASSERT_TRUE(r.ok());
  int64_t removed = -1;
  auto narrow = RemoveZeroChannels(spec, r->state, &removed);
  ASSERT_TRUE(narrow.ok()) << narrow.status();
  EXPECT_EQ(removed, 24 + 48 + 384);
  EXPECT_EQ(narrow->Find("conv1.weight")->shape(),
            (std::vector<int64_t>{8, 1, 5, 5}));
  EXPECT_EQ(narrow->Find("conv2.weight")->shape(),
            (std::vector<int64_t>{16, 8, 5, 5}));
  EXPECT_EQ(narrow->Find("fc1.weight")->shape(),
            (std::vector<int64_t>{128, 16 * 49}));
  EXPECT_EQ(narrow->Find("fc2.weight")->shape(),
            (std::vector<int64_t>{10, 128}));
  // What is left is what was not zero, and it costs what the zeros saved.
  auto before = MeasureSparsity(spec, r->state);
  auto after = MeasureSparsity(spec, *narrow);
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_EQ(after->parameters, before->nonzero_parameters);
  EXPECT_EQ(after->macs, before->nonzero_macs);
}

TEST(PruneTest, OnlyChannelsWithZeroWeightAndBiasAreRemoved) {
  ModelSpec spec = Spec("cnn");
  ModelState state = Initial(spec);
  // conv1's filter 3 is zero but its bias is not: it outputs relu(bias).
  TensorBuffer& w = state.mutable_tensor(0);
  ASSERT_EQ(w.name(), "conv1.weight");
  for (int i = 3 * 25; i < 4 * 25; ++i) w.mutable_floats()[i] = 0;
  int64_t removed = -1;
  auto same = RemoveZeroChannels(spec, state, &removed);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(removed, 0);
  EXPECT_TRUE(CheckSameSchema(state, *same).ok());
  // Other architectures are left as they are.
  auto mlp = RemoveZeroChannels(Spec("2nn"), Initial(Spec("2nn")), &removed);
  ASSERT_TRUE(mlp.ok());
  EXPECT_EQ(removed, 0);
}

TEST(PruneTest, StructuredMaskKeepsAWholeMobileCnnChannelAtZero) {
  const ModelSpec spec = Spec("mobile_cnn");
  auto r = Prune(spec, Initial(spec), {0.5, true});
  ASSERT_TRUE(r.ok()) << r.status();
  auto mask = PruningMask(spec, r->state);
  ASSERT_TRUE(mask.ok()) << mask.status();
  int pruned = 0;
  for (int c = 0; c < 32; ++c) {
    if (!RowIsZero(*r->state.Find("pw1.weight"), c)) continue;
    ++pruned;
    EXPECT_EQ(mask->Find("pw1_bn.weight")->floats()[c], 0);
    EXPECT_EQ(mask->Find("pw1_bn.bias")->floats()[c], 0);
    EXPECT_EQ(mask->Find("dw2.weight")->floats()[c * 9], 0);
    EXPECT_EQ(mask->Find("pw2.weight")->floats()[c], 0);  // [64, 32, 1, 1]
  }
  EXPECT_EQ(pruned, 16);
}

TEST(PruneTest, MaskLeavesZerosOutsidePrunedWeightsTrainable) {
  // An untrained mobile_cnn: its batch norm shifts are all exactly 0.
  const ModelSpec spec = Spec("mobile_cnn");
  auto r = Prune(spec, Initial(spec), {0.5, false});
  ASSERT_TRUE(r.ok());
  auto mask = PruningMask(spec, r->state);
  ASSERT_TRUE(mask.ok());
  ASSERT_EQ(mask->size(), r->state.size());
  for (size_t i = 0; i < mask->size(); ++i) {
    const TensorBuffer& t = r->state.tensor(i);
    const TensorBuffer& m = mask->tensor(i);
    EXPECT_EQ(m.name(), t.name());
    for (int64_t j = 0; j < m.num_elements(); ++j) {
      const bool pruned = IsPrunableWeight(t) && t.floats()[j] == 0;
      ASSERT_EQ(m.floats()[j], pruned ? 0 : 1) << t.name() << "[" << j << "]";
    }
  }
}

TEST(PruneTest, StructuredRefusesNetworksWithoutChannelGroups) {
  ModelSpec spec = Spec("shufflenet_v2");
  auto r = Prune(spec, Initial(spec), {0.5, true});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("2nn, mlp"));
  EXPECT_THAT(r.status().message(), HasSubstr("without --structured"));
}

TEST(PruneTest, MeasureCountsParametersAndNonZeroMacs) {
  const ModelSpec spec = Spec("cnn");
  auto cost = ComputeModelCost(spec);
  ASSERT_TRUE(cost.ok());
  auto dense = MeasureSparsity(spec, Initial(spec));
  ASSERT_TRUE(dense.ok());
  EXPECT_EQ(dense->parameters, cost->parameters);
  EXPECT_EQ(dense->macs, cost->macs);
  EXPECT_EQ(dense->nonzero_macs, cost->macs);
  auto r = Prune(spec, Initial(spec), {0.9, false});
  ASSERT_TRUE(r.ok());
  auto sparse = MeasureSparsity(spec, r->state);
  ASSERT_TRUE(sparse.ok());
  EXPECT_EQ(sparse->macs, cost->macs);
  EXPECT_LT(sparse->nonzero_macs, cost->macs);
  EXPECT_NEAR(sparse->weight_sparsity(), 0.9, 1e-6);
}

class SparseFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/fedge_prune.", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(SparseFileTest, StoresNonZerosAndReadsBackDense) {
  const ModelSpec spec = Spec("2nn");
  auto r = Prune(spec, Initial(spec), {0.8, false});
  ASSERT_TRUE(r.ok());
  const std::string path = dir_ + "/sparse.fedge";
  ASSERT_TRUE(WriteSparseModelFile(path, r->state).ok());
  auto back = ReadModelFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(CheckSameSchema(r->state, *back).ok());
  for (size_t i = 0; i < back->size(); ++i) {
    EXPECT_TRUE(std::equal(back->tensor(i).data(),
                           back->tensor(i).data() + back->tensor(i).num_bytes(),
                           r->state.tensor(i).data()));
  }
  // 8 bytes per kept weight instead of 4 per weight: about 40% of raw.
  EXPECT_LT(std::filesystem::file_size(path), 0.45 * EncodedSize(r->state));
}

TEST_F(SparseFileTest, DenseModelIsWrittenRaw) {
  const ModelState state = Initial(Spec("2nn"));
  const std::string path = dir_ + "/dense.fedge";
  ASSERT_TRUE(WriteSparseModelFile(path, state).ok());
  auto bytes = ReadSmallFile(path, 1 << 24);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, EncodeModel(state));
}

}  // namespace
}  // namespace fedge::ml
