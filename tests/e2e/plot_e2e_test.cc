// End-to-end: the real `fedge plot` on the sample history in tests/testdata,
// for both output formats and for its usage and runtime errors.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/process.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

const std::string kFedge = std::string(FEDGE_BINARY_DIR) + "/server/fedge";
const std::string kSample =
    std::string(FEDGE_SOURCE_DIR) + "/tests/testdata/history_50_rounds.csv";

class PlotE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/fedge_plot_e2e.", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs `fedge plot ARGS...`; its exit code, output in *log.
  int Plot(const std::vector<std::string>& args, std::string* log) {
    std::vector<std::string> argv = {kFedge, "plot"};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, dir_ + "/log" + std::to_string(runs_++));
    const std::optional<int> rc = p.Wait(absl::Seconds(60));
    *log = p.Log();
    return rc.value_or(-1);
  }

  std::string dir_;
  int runs_ = 0;
};

TEST_F(PlotE2eTest, WritesPngAndSvg_PrintsPath) {
  std::string log;
  const std::string png = dir_ + "/history.png";
  ASSERT_EQ(Plot({kSample, "-o", png}, &log), 0) << log;
  EXPECT_EQ(log, png + "\n");
  const std::string png_bytes = ReadFileOrEmpty(png);
  EXPECT_TRUE(absl::StartsWith(png_bytes, "\x89PNG\r\n\x1a\n"));
  EXPECT_GT(png_bytes.size(), 10000u);

  const std::string svg = dir_ + "/history.svg";
  ASSERT_EQ(Plot({"--output=" + svg, kSample}, &log), 0) << log;
  EXPECT_EQ(log, svg + "\n");
  const std::string svg_text = ReadFileOrEmpty(svg);
  EXPECT_THAT(svg_text, HasSubstr("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(svg_text, HasSubstr("history_50_rounds.csv: 50 rounds, best "
                                  "test accuracy"));
  EXPECT_TRUE(absl::EndsWith(svg_text, "</svg>\n"));
}

TEST_F(PlotE2eTest, BadUsage_ExitTwoNamingTheProblem) {
  std::string log;
  EXPECT_EQ(Plot({kSample, "-o", dir_ + "/out.jpg"}, &log), 2);
  EXPECT_THAT(log, HasSubstr("plot -o: "));
  EXPECT_THAT(log, HasSubstr(".png or FILE.svg"));
  EXPECT_EQ(Plot({kSample}, &log), 2);
  EXPECT_THAT(log, HasSubstr("missing -o"));
  EXPECT_EQ(Plot({kSample, "-o"}, &log), 2);
  EXPECT_EQ(Plot({"-o", dir_ + "/a.png"}, &log), 2);
  EXPECT_THAT(log, HasSubstr("no HISTORY.csv"));
  EXPECT_EQ(Plot({kSample, "--width=3", "-o", dir_ + "/a.png"}, &log), 2);
  EXPECT_THAT(log, HasSubstr("unknown flag --width=3"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/a.png"));
  EXPECT_EQ(Plot({"--help"}, &log), 0);
  EXPECT_THAT(log, HasSubstr("usage: fedge plot HISTORY.csv -o"));
}

TEST_F(PlotE2eTest, UnreadableHistory_ExitOne) {
  std::string log;
  EXPECT_EQ(Plot({dir_ + "/missing.csv", "-o", dir_ + "/a.svg"}, &log), 1);
  EXPECT_THAT(log, HasSubstr("missing.csv"));
  const std::string bad = dir_ + "/bad.csv";
  {
    std::FILE* f = std::fopen(bad.c_str(), "w");
    std::fputs("round,test_accuracy\n1,0.5\n2,x\n", f);
    std::fclose(f);
  }
  EXPECT_EQ(Plot({bad, "-o", dir_ + "/a.svg"}, &log), 1);
  EXPECT_THAT(log, HasSubstr("bad.csv:3: column 2 (test_accuracy)"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/a.svg"));
}

}  // namespace
}  // namespace fedge::testing
