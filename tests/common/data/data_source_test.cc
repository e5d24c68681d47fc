#include "common/data/data_source.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

v1::DataConfig Synthetic() {
  v1::DataConfig c;
  c.set_source("synthetic");
  c.set_synthetic_train_examples(500);
  c.set_synthetic_test_examples(100);
  return c;
}

TEST(DataSourceTest, Synthetic_LoadsBothSplits) {
  auto data = LoadData(Synthetic());
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train.num_examples(), 500);
  EXPECT_EQ(data->test.num_examples(), 100);
  EXPECT_FALSE(data->used_fallback);
}

TEST(DataSourceTest, TestOnly_SkipsTheTrainingSplit) {
  auto data = LoadData(Synthetic(), /*test_only=*/true);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->train.num_examples(), 0);
  EXPECT_EQ(data->test.num_examples(), 100);
}

TEST(DataSourceTest, MissingMnist_FallsBackAndSaysSo) {
  v1::DataConfig c = Synthetic();
  c.set_source("mnist");
  c.set_data_dir("/nonexistent/mnist");
  auto data = LoadData(c);
  ASSERT_TRUE(data.ok());
  EXPECT_TRUE(data->used_fallback);
  EXPECT_THAT(data->description, testing::HasSubstr("MNIST not found"));
  EXPECT_THAT(data->description,
              testing::HasSubstr("pass --data_dir DIR for real data"));
  // Another program's flag for the same field.
  data = LoadData(c, /*test_only=*/true, "--eval_data.data_dir");
  ASSERT_TRUE(data.ok());
  EXPECT_THAT(data->description,
              testing::HasSubstr("pass --eval_data.data_dir DIR for real "
                                 "data"));
  c.set_synthetic_fallback(false);
  EXPECT_EQ(LoadData(c).status().code(), absl::StatusCode::kNotFound);
}

TEST(DataSourceTest, MaxExamples_Truncates) {
  v1::DataConfig c = Synthetic();
  c.set_max_train_examples(50);
  auto data = LoadData(c);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->train.num_examples(), 50);
}

TEST(DataSourceTest, Standardize_GivesZeroMeanUnitVariance) {
  v1::DataConfig c = Synthetic();
  c.set_standardize(true);
  auto data = LoadData(c);
  ASSERT_TRUE(data.ok());
  double sum = 0, sum_sq = 0;
  for (float x : data->train.features) {
    sum += x;
    sum_sq += x * x;
  }
  const double n = data->train.features.size();
  EXPECT_NEAR(sum / n, 0.0, 1e-3);
  EXPECT_NEAR(sum_sq / n, 1.0, 1e-3);
  EXPECT_THAT(data->description, testing::HasSubstr("standardized"));
}

TEST(DataSourceTest, StandardizeWithoutTrainingSet_NeedsConfiguredValues) {
  v1::DataConfig c = Synthetic();
  c.set_standardize(true);
  EXPECT_EQ(LoadData(c, /*test_only=*/true).status().code(),
            absl::StatusCode::kInvalidArgument);
  c.set_feature_mean(0.5);
  c.set_feature_std(2.0);
  auto raw = LoadData(Synthetic(), true);
  auto data = LoadData(c, true);
  ASSERT_TRUE(raw.ok() && data.ok());
  EXPECT_FLOAT_EQ(data->test.features[7], (raw->test.features[7] - 0.5f) / 2);
}

}  // namespace
}  // namespace fedge
