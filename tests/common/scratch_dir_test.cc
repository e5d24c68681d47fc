// ScratchDir and RemoveAtExit watched from outside: scratch_dir_probe (a
// gtest program of its own, not registered with CTest) runs one passing or
// one deliberately failing test that writes into ScratchDir("probe") and a
// folder removed at exit, under a TEST_TMPDIR this test owns.
#include "tests/common/scratch_dir.h"

#include <filesystem>
#include <string>

#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

class ScratchDirTest : public ::testing::Test {
 protected:
  // Runs the probe test `name` with TEST_TMPDIR = root().
  ProcessResult RunProbe(const std::string& name) {
    ProcessOptions options;
    options.timeout = absl::Seconds(60);
    options.merge_stderr = true;
    absl::StatusOr<ProcessResult> r = RunProcess(
        {"/usr/bin/env", "TEST_TMPDIR=" + root_.path() + "/",
         std::string(FEDGE_BINARY_DIR) + "/tests/common/scratch_dir_probe",
         "--gtest_filter=ScratchDirProbe." + name},
        options);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{-1, ""};
  }
  const std::string& root() const { return root_.path(); }

 private:
  ScratchDir root_{ScratchDir::NameForCurrentTest("scratch_dir_test")};
};

TEST_F(ScratchDirTest, PassedTest_ItsFolderIsRemoved) {
  const ProcessResult r = RunProbe("Passes");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(std::filesystem::exists(root() + "/probe")) << r.output;
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("kept in")));
}

TEST_F(ScratchDirTest, FailedTest_ItsFolderIsKeptAndNamed) {
  const ProcessResult r = RunProbe("Fails");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(root() + "/probe/log.txt")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("the failed test's files are kept in"));
  EXPECT_THAT(r.output, HasSubstr(root() + "/probe"));
}

TEST_F(ScratchDirTest, FolderRemovedAtExit_GoesPassOrFail) {
  for (const char* name : {"Passes", "Fails"}) {
    RunProbe(name);
    EXPECT_FALSE(std::filesystem::exists(root() + "/shared")) << name;
  }
}

TEST_F(ScratchDirTest, NameForCurrentTest_IsOneFolderPerTest) {
  const std::string name = ScratchDir::NameForCurrentTest("prefix");
  EXPECT_EQ(name, "prefix_" + std::to_string(getpid()) +
                      "_NameForCurrentTest_IsOneFolderPerTest");
}

class ScratchDirParamTest : public ::testing::TestWithParam<int> {};

TEST_P(ScratchDirParamTest, NameForCurrentTest_HasNoSlash) {
  const std::string name = ScratchDir::NameForCurrentTest("p");
  EXPECT_EQ(name.find('/'), std::string::npos) << name;
  EXPECT_THAT(name, HasSubstr("NameForCurrentTest_HasNoSlash_0"));
}

INSTANTIATE_TEST_SUITE_P(One, ScratchDirParamTest, ::testing::Values(7));

}  // namespace
}  // namespace fedge::testing
