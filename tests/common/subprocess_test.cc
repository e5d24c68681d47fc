#include "common/subprocess.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

ProcessOptions Within(absl::Duration timeout) {
  ProcessOptions o;
  o.timeout = timeout;
  return o;
}

TEST(RunProcessTest, CapturesStdoutAndTheExitCode) {
  absl::StatusOr<ProcessResult> r =
      RunProcess({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"},
                 Within(absl::Seconds(30)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->output, "out\n");  // stderr inherited, not captured.
}

TEST(RunProcessTest, MergeStderr_CapturesBoth) {
  ProcessOptions o = Within(absl::Seconds(30));
  o.merge_stderr = true;
  absl::StatusOr<ProcessResult> r =
      RunProcess({"/bin/sh", "-c", "echo out; echo err >&2"}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->output, HasSubstr("out"));
  EXPECT_THAT(r->output, HasSubstr("err"));
}

TEST(RunProcessTest, OutputIsBounded) {
  ProcessOptions o = Within(absl::Seconds(30));
  o.max_output_bytes = 10;
  absl::StatusOr<ProcessResult> r =
      RunProcess({"/bin/sh", "-c", "head -c 100000 /dev/zero"}, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output.size(), 10u);
}

TEST(RunProcessTest, OutrunningTheDeadline_Killed) {
  absl::StatusOr<ProcessResult> r = RunProcess(
      {"/bin/sh", "-c", "exec sleep 30"}, Within(absl::Milliseconds(200)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(r.status().message(), HasSubstr("killed"));
}

// The deadline covers the exit, not only the output.
TEST(RunProcessTest, ClosingItsOutputAndHanging_Killed) {
  absl::StatusOr<ProcessResult> r =
      RunProcess({"/bin/sh", "-c", "exec >/dev/null; exec sleep 30"},
                 Within(absl::Milliseconds(200)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(RunProcessTest, MissingProgram_Exit127SayingWhy) {
  absl::StatusOr<ProcessResult> r =
      RunProcess({"/nonexistent/tool"}, Within(absl::Seconds(30)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 127);
  EXPECT_THAT(r->output,
              HasSubstr("error cannot run /nonexistent/tool: No such file"));
  EXPECT_EQ(RunProcess({}, Within(absl::Seconds(1))).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedge
