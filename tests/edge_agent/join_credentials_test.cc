#include "edge_agent/join_credentials.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class JoinCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(::testing::TempDir()) /
            (std::string("joincred_") + info->name() + "_" +
             std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string Path(const std::string& name) const {
    return (root_ / name).string();
  }
  fs::path root_;
};

TEST_F(JoinCredentialsTest, TokenUntilEnrolled_ThenTheKeptKey) {
  std::ofstream(Path("token")) << "  jt-0123456789abcdef.secret\n";
  auto c = JoinCredentials::Load(Path("token"), Path("agent_key"),
                                 "join_token_path");
  ASSERT_TRUE(c.ok()) << c.status();
  v1::JoinRequest request;
  c->Apply(request);
  EXPECT_EQ(request.join_token(), "jt-0123456789abcdef.secret");
  EXPECT_EQ(request.agent_key(), "");

  // A response without a key (not an enrollment) changes nothing.
  ASSERT_TRUE(c->Remember(v1::JoinResponse()).ok());
  EXPECT_FALSE(fs::exists(Path("agent_key")));
  // An enrollment: the key is kept, private, and sent from then on.
  v1::JoinResponse enrolled;
  enrolled.set_agent_key("ak-42");
  ASSERT_TRUE(c->Remember(enrolled).ok());
  struct stat st;
  ASSERT_EQ(stat(Path("agent_key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  c->Apply(request);
  EXPECT_EQ(request.agent_key(), "ak-42");

  // After a restart the key is read back.
  auto again = JoinCredentials::Load("", Path("agent_key"), "join_token_path");
  ASSERT_TRUE(again.ok()) << again.status();
  v1::JoinRequest later;
  again->Apply(later);
  EXPECT_EQ(later.agent_key(), "ak-42");
  EXPECT_EQ(later.join_token(), "");
}

TEST_F(JoinCredentialsTest, MissingOrEmptyTokenFile_NamesTheField) {
  auto missing = JoinCredentials::Load(Path("nope"), Path("agent_key"),
                                       "upstream.join_token_path");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("'upstream.join_token_path'"));
  std::ofstream(Path("empty")) << "\n";
  auto empty = JoinCredentials::Load(Path("empty"), Path("agent_key"),
                                     "join_token_path");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("fedge token create"));
}

TEST_F(JoinCredentialsTest, NoCredentials_JoinsCarryNone) {
  JoinCredentials none;
  v1::JoinRequest request;
  none.Apply(request);
  EXPECT_TRUE(request.join_token().empty());
  EXPECT_TRUE(request.agent_key().empty());
  v1::JoinResponse r;
  r.set_agent_key("ak-1");
  EXPECT_TRUE(none.Remember(r).ok());  // Nowhere to keep it: memory only.
  none.Apply(request);
  EXPECT_EQ(request.agent_key(), "ak-1");
}

}  // namespace
}  // namespace fedge
