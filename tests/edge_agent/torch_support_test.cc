// What an agent keeps of its local data (edge_agent/torch_support.h).
#include "edge_agent/torch_support.h"

#include <cstring>

#include "common/data/data_source.h"
#include "common/partition.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

LoadedData Synthetic() {
  v1::DataConfig data;
  data.set_source("synthetic");
  data.set_synthetic_train_examples(1000);
  data.set_synthetic_test_examples(200);
  absl::StatusOr<LoadedData> loaded = LoadData(data);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? *std::move(loaded) : LoadedData();
}

// Example `i` of `set` is example `j` of `full`.
bool SameExample(const Dataset& set, int64_t i, const Dataset& full,
                 int64_t j) {
  const int64_t n = set.example_size();
  return set.labels[i] == full.labels[j] &&
         std::memcmp(&set.features[i * n], &full.features[j * n],
                     n * sizeof(float)) == 0;
}

TEST(TorchSupportTest, KeepOwnPartition_KeepsOnlyTheConfiguredPartition) {
  const LoadedData full = Synthetic();
  ASSERT_EQ(full.train.num_examples(), 1000);
  LoadedData data = Synthetic();
  v1::AgentConfig c;
  c.set_partition_index(1);
  c.set_num_partitions(4);
  absl::StatusOr<int64_t> before = NumLocalExamples(c, data);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(*before, 250);

  ASSERT_EQ(KeepOwnPartition(c, data), absl::OkStatus());
  EXPECT_TRUE(data.partitioned);
  EXPECT_EQ(data.train.num_examples(), 250);
  EXPECT_EQ(data.train.features.size(), 250u * data.train.example_size());
  EXPECT_EQ(data.test.num_examples(), 50);  // Its share of the test split.
  // The partition's examples, in its order; taken whole from now on.
  absl::StatusOr<Partition> parts = PartitionIid(1000, 4, c.partition().seed());
  ASSERT_TRUE(parts.ok());
  for (int64_t i = 0; i < 250; ++i) {
    ASSERT_TRUE(SameExample(data.train, i, full.train, (*parts)[1][i])) << i;
  }
  absl::StatusOr<int64_t> after = NumLocalExamples(c, data);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, 250);
  ASSERT_EQ(KeepOwnPartition(c, data), absl::OkStatus());  // Once only.
  EXPECT_EQ(data.train.num_examples(), 250);
}

TEST(TorchSupportTest, KeepOwnPartition_WithoutOneKeepsEverything) {
  LoadedData data = Synthetic();
  v1::AgentConfig c;  // The coordinator may hand out a partition at Join.
  ASSERT_EQ(KeepOwnPartition(c, data), absl::OkStatus());
  EXPECT_FALSE(data.partitioned);
  EXPECT_EQ(data.train.num_examples(), 1000);
  c.set_partition_index(0);
  c.set_num_partitions(2000);  // More partitions than examples.
  EXPECT_EQ(KeepOwnPartition(c, data).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(data.train.num_examples(), 1000);
}

}  // namespace
}  // namespace fedge
