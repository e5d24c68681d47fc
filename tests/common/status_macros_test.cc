#include "common/status_macros.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

// Calls RETURN_IF_ERROR on `s`, counting evaluations; reports whether it got
// past the macro through `*reached_end`.
absl::Status ReturnIfErrorOn(absl::Status s, int* evaluations,
                             bool* reached_end) {
  RETURN_IF_ERROR((++*evaluations, s));
  *reached_end = true;
  return absl::OkStatus();
}

absl::StatusOr<int> IntOr(absl::StatusOr<int> v, int* evaluations) {
  ++*evaluations;
  return v;
}

// ASSIGN_OR_RETURN into a new variable; returns value + 1.
absl::StatusOr<int> PlusOne(absl::StatusOr<int> v, int* evaluations) {
  ASSIGN_OR_RETURN(int x, IntOr(std::move(v), evaluations));
  return x + 1;
}

TEST(StatusMacrosTest, ReturnIfError_OkContinues) {
  int evaluations = 0;
  bool reached_end = false;
  EXPECT_TRUE(
      ReturnIfErrorOn(absl::OkStatus(), &evaluations, &reached_end).ok());
  EXPECT_TRUE(reached_end);
  EXPECT_EQ(evaluations, 1);
}

TEST(StatusMacrosTest, ReturnIfError_ErrorReturnedUnchanged) {
  int evaluations = 0;
  bool reached_end = false;
  absl::Status in = absl::NotFoundError("no such file");
  in.SetPayload("fedge.test/payload", absl::Cord("x"));
  absl::Status out = ReturnIfErrorOn(in, &evaluations, &reached_end);
  EXPECT_EQ(out, in);  // Code, message and payload.
  EXPECT_FALSE(reached_end);
  EXPECT_EQ(evaluations, 1);
}

TEST(StatusMacrosTest, ReturnIfError_AcceptsStatusOr) {
  auto run = [](absl::StatusOr<std::string> v, bool* reached) -> absl::Status {
    RETURN_IF_ERROR(v);
    *reached = true;
    return absl::OkStatus();
  };
  bool reached = false;
  EXPECT_TRUE(run(std::string("ok"), &reached).ok());
  EXPECT_TRUE(reached);
  reached = false;
  absl::Status s = run(absl::AbortedError("stale round"), &reached);
  EXPECT_EQ(s, absl::AbortedError("stale round"));
  EXPECT_FALSE(reached);
}

TEST(StatusMacrosTest, ReturnIfError_AcceptsTemporaryStatusOr) {
  int evaluations = 0;
  auto run = [&]() -> absl::Status {
    RETURN_IF_ERROR(IntOr(absl::UnavailableError("down"), &evaluations));
    return absl::OkStatus();
  };
  EXPECT_EQ(run(), absl::UnavailableError("down"));
  EXPECT_EQ(evaluations, 1);
}

TEST(StatusMacrosTest, ReturnIfError_WorksAsSingleStatementInIfElse) {
  auto run = [](bool check, absl::Status s) -> absl::Status {
    if (check)
      RETURN_IF_ERROR(s);
    else
      return absl::InternalError("else branch");
    return absl::OkStatus();
  };
  EXPECT_TRUE(run(true, absl::OkStatus()).ok());
  EXPECT_EQ(run(true, absl::DataLossError("bad")).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(run(false, absl::OkStatus()).code(), absl::StatusCode::kInternal);
}

TEST(StatusMacrosTest, AssignOrReturn_OkAssignsValue) {
  int evaluations = 0;
  absl::StatusOr<int> r = PlusOne(41, &evaluations);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(evaluations, 1);
}

TEST(StatusMacrosTest, AssignOrReturn_ErrorReturnedUnchanged) {
  int evaluations = 0;
  absl::StatusOr<int> r =
      PlusOne(absl::ResourceExhaustedError("too big"), &evaluations);
  EXPECT_EQ(r.status(), absl::ResourceExhaustedError("too big"));
  EXPECT_EQ(evaluations, 1);
}

TEST(StatusMacrosTest, AssignOrReturn_ExistingVariableAndMoveOnlyValue) {
  auto run = [](absl::StatusOr<std::unique_ptr<int>> in,
                std::unique_ptr<int>* out) -> absl::Status {
    std::unique_ptr<int> existing = std::make_unique<int>(-1);
    ASSIGN_OR_RETURN(existing, std::move(in));
    *out = std::move(existing);
    return absl::OkStatus();
  };
  std::unique_ptr<int> out;
  ASSERT_TRUE(run(std::make_unique<int>(7), &out).ok());
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(*out, 7);

  out.reset();
  EXPECT_EQ(run(absl::InvalidArgumentError("nope"), &out),
            absl::InvalidArgumentError("nope"));
  EXPECT_EQ(out, nullptr);
}

TEST(StatusMacrosTest, AssignOrReturn_TwiceInOneFunction) {
  auto run = [](absl::StatusOr<int> a,
                absl::StatusOr<std::string> b) -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(int x, std::move(a));
    ASSIGN_OR_RETURN(std::string y, std::move(b));
    return y + std::to_string(x);
  };
  EXPECT_EQ(run(3, std::string("n=")).value(), "n=3");
  EXPECT_EQ(run(absl::NotFoundError("a"), std::string("n=")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(run(3, absl::FailedPreconditionError("b")).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(StatusMacrosTest, AssignOrReturn_InFunctionReturningStatus) {
  auto run = [](absl::StatusOr<int> v, int* out) -> absl::Status {
    ASSIGN_OR_RETURN(*out, std::move(v));
    return absl::OkStatus();
  };
  int out = 0;
  EXPECT_TRUE(run(5, &out).ok());
  EXPECT_EQ(out, 5);
  EXPECT_EQ(run(absl::CancelledError("c"), &out).code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(out, 5);
}

TEST(AnnotateTest, ErrorGetsContextPrefixAndKeepsCode) {
  absl::Status s =
      Annotate(absl::InvalidArgumentError("bad value"), "config.textproto");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "config.textproto: bad value");
}

TEST(AnnotateTest, OkStaysOk) {
  EXPECT_TRUE(Annotate(absl::OkStatus(), "context").ok());
  EXPECT_EQ(Annotate(absl::OkStatus(), "context").message(), "");
}

TEST(AnnotateTest, NestsOutermostFirst) {
  absl::Status s = Annotate(
      Annotate(absl::NotFoundError("missing"), "tensor 'w'"), "agent a1");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "agent a1: tensor 'w': missing");
}

TEST(AnnotateTest, EmptyMessageAndStringContext) {
  std::string context = "file.bin";
  absl::Status s = Annotate(absl::DataLossError(""), context);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("file.bin"));
}

}  // namespace
}  // namespace fedge
