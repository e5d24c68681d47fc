// CrlChecker on certificates and CRLs made by deploy/make-certs.sh (the
// openssl command-line tool).
#include "server/crl_checker.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/scratch_dir.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

int Shell(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class CrlCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    scratch_.emplace(
        fedge::testing::ScratchDir::NameForCurrentTest("fedge_crl"));
    dir_ = scratch_->path();
    ASSERT_EQ(Shell(MakeCerts(dir_ + " --agents 2")), 0);
  }
  static std::string MakeCerts(const std::string& args) {
    return absl::StrCat(FEDGE_SOURCE_DIR, "/deploy/make-certs.sh ", args);
  }
  CrlChecker::Options Options() const {
    CrlChecker::Options o;
    o.crl_path = dir_ + "/crl.pem";
    o.ca_path = dir_ + "/ca.pem";
    o.reload_interval = absl::Milliseconds(10);
    return o;
  }
  std::optional<fedge::testing::ScratchDir> scratch_;
  std::string dir_;
};

TEST_F(CrlCheckerTest, EmptyCrl_AcceptsEveryCertificate) {
  auto checker = CrlChecker::Create(Options());
  ASSERT_TRUE(checker.ok()) << checker.status();
  EXPECT_EQ((*checker)->num_revoked(), 0u);
  EXPECT_TRUE((*checker)->Check(Read(dir_ + "/agent-1.pem")).ok());
  EXPECT_TRUE((*checker)->Check(Read(dir_ + "/agent-2.pem")).ok());
}

TEST_F(CrlCheckerTest, RevokedWhileRunning_RefusedAfterReload_OthersNot) {
  auto checker = CrlChecker::Create(Options());
  ASSERT_TRUE(checker.ok()) << checker.status();
  const std::string agent2 = Read(dir_ + "/agent-2.pem");
  ASSERT_TRUE((*checker)->Check(agent2).ok());
  ASSERT_EQ(Shell(MakeCerts(dir_ + " --revoke agent-2")), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  absl::Status s = (*checker)->Check(agent2);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(s.message()), HasSubstr("certificate serial "));
  EXPECT_THAT(std::string(s.message()), HasSubstr("(CN agent-2) is revoked"));
  EXPECT_TRUE((*checker)->Check(Read(dir_ + "/agent-1.pem")).ok());
  EXPECT_EQ((*checker)->num_revoked(), 1u);
  EXPECT_EQ((*checker)->loads(), 2);
}

TEST_F(CrlCheckerTest, BrokenOrForeignCrlAtStart_ErrorNamesTheField) {
  std::ofstream(dir_ + "/crl.pem") << "not a crl\n";
  auto broken = CrlChecker::Create(Options());
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(broken.status().message()),
              HasSubstr("'tls.crl_path'"));
  // A CRL of another CA does not verify.
  ASSERT_EQ(Shell(MakeCerts(dir_ + "/other --agents 1")), 0);
  CrlChecker::Options o = Options();
  o.crl_path = dir_ + "/other/crl.pem";
  auto foreign = CrlChecker::Create(o);
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(foreign.status().message()),
              HasSubstr("is not signed by a CA of tls.ca_path"));
}

TEST_F(CrlCheckerTest, BrokenCrlWhileRunning_KeepsThePreviousOne) {
  ASSERT_EQ(Shell(MakeCerts(dir_ + " --revoke agent-2")), 0);
  auto checker = CrlChecker::Create(Options());
  ASSERT_TRUE(checker.ok()) << checker.status();
  const std::string agent2 = Read(dir_ + "/agent-2.pem");
  ASSERT_FALSE((*checker)->Check(agent2).ok());
  std::ofstream(dir_ + "/crl.pem") << "garbage that is no CRL\n";
  EXPECT_FALSE((*checker)->ReloadIfChanged().ok());
  EXPECT_FALSE((*checker)->Check(agent2).ok());  // Still revoked.
  EXPECT_EQ((*checker)->num_revoked(), 1u);
  EXPECT_EQ((*checker)->loads(), 1);
}

TEST_F(CrlCheckerTest, UnparsableCertificate_Unauthenticated) {
  auto checker = CrlChecker::Create(Options());
  ASSERT_TRUE(checker.ok()) << checker.status();
  EXPECT_EQ((*checker)->Check("-----BEGIN CERTIFICATE-----\nxx\n").code(),
            absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace fedge
