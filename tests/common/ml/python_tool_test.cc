// The child-process runner, with /bin/sh standing in for Python.
#include "common/ml/python_tool.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

using ::testing::HasSubstr;

class PythonToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.scripts_dir =
        absl::StrCat(::testing::TempDir(), "/fedge_python_tool.", getpid());
    std::filesystem::create_directories(options_.scripts_dir);
    options_.python = "/bin/sh";
  }
  void TearDown() override {
    std::filesystem::remove_all(options_.scripts_dir);
  }
  void Script(const std::string& name, const std::string& body) {
    std::ofstream(options_.scripts_dir + "/" + name) << body;
  }
  PythonOptions options_;
};

TEST_F(PythonToolTest, ReturnsWhatTheScriptPrintedOnBothStreams) {
  Script("ok.sh", "echo out \"$1\"; echo err >&2");
  auto out = RunPythonScript(options_, "ok.sh", {"arg"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("out arg"));
  EXPECT_THAT(*out, HasSubstr("err"));
}

TEST_F(PythonToolTest, FailureCarriesTheExitCodeAndLastLines) {
  Script("fail.sh", "echo one; echo two; echo 'error: it broke' >&2; exit 3");
  auto out = RunPythonScript(options_, "fail.sh", {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(out.status().message(), HasSubstr("fail.sh failed (exit 3)"));
  EXPECT_THAT(out.status().message(), HasSubstr("error: it broke"));
}

TEST_F(PythonToolTest, ScriptThatOutrunsTheDeadlineIsKilled) {
  Script("slow.sh", "exec sleep 30");
  options_.timeout = absl::Milliseconds(200);
  auto out = RunPythonScript(options_, "slow.sh", {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(out.status().message(), HasSubstr("killed"));
}

TEST_F(PythonToolTest, ScriptThatClosesItsOutputAndHangsIsKilled) {
  Script("quiet.sh", "exec >/dev/null 2>&1; exec sleep 30");
  options_.timeout = absl::Milliseconds(200);
  auto out = RunPythonScript(options_, "quiet.sh", {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(PythonToolTest, MissingScriptOrInterpreterSaysWhatToDo) {
  auto no_script = RunPythonScript(options_, "none.py", {});
  EXPECT_EQ(no_script.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(no_script.status().message(), HasSubstr("--scripts_dir"));

  Script("ok.sh", "true");
  options_.python = "/nonexistent/python3";
  auto no_python = RunPythonScript(options_, "ok.sh", {});
  EXPECT_EQ(no_python.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(no_python.status().message(), HasSubstr("install-deps.sh"));
}

}  // namespace
}  // namespace fedge::ml
