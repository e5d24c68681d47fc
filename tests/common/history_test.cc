#include "common/history.h"

#include <string>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

std::vector<std::string> Cells(const RoundRecord& r) {
  return absl::StrSplit(HistoryWriter::Line(r, /*with_bytes=*/false,
                                            /*with_simulated_time=*/false,
                                            /*with_privacy=*/false),
                        ',');
}

TEST(HistoryTest, Line_CompletedRound_HasItsTrainingMetrics) {
  RoundRecord r;
  r.round = 3;
  r.num_agents = 2;
  r.num_examples = 40;
  r.train_loss = 0.25;
  r.train_accuracy = 0.875;
  const std::vector<std::string> cells = Cells(r);
  ASSERT_GE(cells.size(), 6u);
  EXPECT_EQ(cells[4], "0.250000");
  EXPECT_EQ(cells[5], "0.875000");
}

// An abandoned round aggregated no update: its training loss and accuracy
// are unknown, not 0 (a plot would draw a loss of 0 for it).
TEST(HistoryTest, Line_AbandonedRound_LeavesTrainingMetricsEmpty) {
  RoundRecord r;
  r.round = 4;
  r.num_agents = 0;
  r.num_failed = 3;
  const std::vector<std::string> cells = Cells(r);
  ASSERT_GE(cells.size(), 6u);
  EXPECT_EQ(cells[0], "4");
  EXPECT_EQ(cells[1], "0");
  EXPECT_EQ(cells[2], "3");
  EXPECT_EQ(cells[4], "");
  EXPECT_EQ(cells[5], "");
}

}  // namespace
}  // namespace fedge
