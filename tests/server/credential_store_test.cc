#include "server/credential_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/audit_log.h"

namespace fedge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

class CredentialStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(::testing::TempDir()) /
            (std::string("cred_") + info->name() + "_" +
             std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    path_ = (root_ / "credentials").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<CredentialStore> Open() {
    auto store = CredentialStore::Open(path_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  std::string ReadJournal() const {
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  fs::path root_;
  std::string path_;
};

TEST_F(CredentialStoreTest, FleetTokenEnrollsThenTheAgentKeyJoins) {
  auto store = Open();
  auto created = store->CreateToken("", absl::Hours(1), "lab fleet", kNow);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(ParseJoinToken(created->token).ok());

  auto grant = store->Authenticate("agent-1", "", created->token, kNow);
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->token_id, created->record.id);
  EXPECT_THAT(grant->agent_key, ::testing::StartsWith("ak-"));

  // Later joins with the key alone, even after the token expired.
  auto again = store->Authenticate("agent-1", grant->agent_key, "",
                                   kNow + absl::Hours(5));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->agent_key.empty());
  EXPECT_EQ(store->Tokens()[0].enrollments, 1);
}

TEST_F(CredentialStoreTest, OnlyHashesAreStored) {
  auto store = Open();
  auto created = store->CreateToken("agent-2", absl::Hours(1), "", kNow);
  ASSERT_TRUE(created.ok());
  auto grant = store->Authenticate("agent-2", "", created->token, kNow);
  ASSERT_TRUE(grant.ok());
  const std::string journal = ReadJournal();
  const std::string secret = created->token.substr(created->token.find('.') + 1);
  EXPECT_EQ(journal.find(secret), std::string::npos);
  EXPECT_EQ(journal.find(grant->agent_key), std::string::npos);
  EXPECT_NE(journal.find(ToHex(Sha256Of(secret))), std::string::npos);
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u);
}

TEST_F(CredentialStoreTest, RefusesMissingWrongExpiredRevokedAndForeignTokens) {
  auto store = Open();
  auto fleet = store->CreateToken("", absl::Minutes(10), "", kNow);
  auto personal = store->CreateToken("agent-3", absl::Minutes(10), "", kNow);
  ASSERT_TRUE(fleet.ok() && personal.ok());

  auto none = store->Authenticate("agent-1", "", "", kNow);
  EXPECT_TRUE(absl::IsUnauthenticated(none.status()));
  EXPECT_THAT(none.status().message(), HasSubstr("join_token_path"));

  std::string wrong = fleet->token;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  auto bad = store->Authenticate("agent-1", "", wrong, kNow);
  EXPECT_TRUE(absl::IsUnauthenticated(bad.status()));
  EXPECT_THAT(bad.status().message(), HasSubstr("is not valid"));

  auto garbage = store->Authenticate("agent-1", "", "hello", kNow);
  EXPECT_TRUE(absl::IsUnauthenticated(garbage.status()));

  auto expired =
      store->Authenticate("agent-1", "", fleet->token, kNow + absl::Minutes(10));
  EXPECT_TRUE(absl::IsUnauthenticated(expired.status()));
  EXPECT_THAT(expired.status().message(), HasSubstr("expired"));

  auto foreign = store->Authenticate("agent-4", "", personal->token, kNow);
  EXPECT_TRUE(absl::IsPermissionDenied(foreign.status()));
  EXPECT_THAT(foreign.status().message(), HasSubstr("is for agent agent-3"));

  ASSERT_TRUE(store->RevokeToken(fleet->record.id).ok());
  auto revoked = store->Authenticate("agent-1", "", fleet->token, kNow);
  EXPECT_TRUE(absl::IsUnauthenticated(revoked.status()));
  EXPECT_THAT(revoked.status().message(), HasSubstr("revoked"));
  // Messages never carry a secret.
  EXPECT_EQ(std::string(bad.status().message()).find(wrong.substr(20)),
            std::string::npos);
}

TEST_F(CredentialStoreTest, FleetTokenCannotTakeOverAnEnrolledId) {
  auto store = Open();
  auto fleet = store->CreateToken("", absl::Hours(1), "", kNow);
  ASSERT_TRUE(fleet.ok());
  auto first = store->Authenticate("agent-1", "", fleet->token, kNow);
  ASSERT_TRUE(first.ok());
  auto thief = store->Authenticate("agent-1", "", fleet->token, kNow);
  EXPECT_TRUE(absl::IsPermissionDenied(thief.status()));
  EXPECT_THAT(thief.status().message(), HasSubstr("already enrolled"));
  auto wrong_key = store->Authenticate("agent-1", "ak-00", "", kNow);
  EXPECT_TRUE(absl::IsUnauthenticated(wrong_key.status()));
  // A token made for the id re-enrolls it (a replacement device); the
  // old key stops working.
  auto personal = store->CreateToken("agent-1", absl::Hours(1), "", kNow);
  auto second = store->Authenticate("agent-1", "", personal->token, kNow);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(store->Authenticate("agent-1", first->agent_key, "", kNow).ok());
  EXPECT_TRUE(store->Authenticate("agent-1", second->agent_key, "", kNow).ok());
}

TEST_F(CredentialStoreTest, RevokingATokenRevokesItsEnrollments) {
  auto store = Open();
  auto fleet = store->CreateToken("", absl::Hours(1), "", kNow);
  auto a = store->Authenticate("agent-1", "", fleet->token, kNow);
  auto b = store->Authenticate("agent-2", "", fleet->token, kNow);
  ASSERT_TRUE(a.ok() && b.ok());
  auto agents = store->RevokeToken(fleet->record.id);
  ASSERT_TRUE(agents.ok());
  EXPECT_EQ(*agents, (std::vector<std::string>{"agent-1", "agent-2"}));
  EXPECT_TRUE(absl::IsUnauthenticated(
      store->Authenticate("agent-1", a->agent_key, "", kNow).status()));
  EXPECT_TRUE(absl::IsNotFound(store->RevokeToken("jt-0000000000000000").status()));
}

TEST_F(CredentialStoreTest, ReopenReplaysTheJournal) {
  std::string key, token_id, fleet_token;
  {
    auto store = Open();
    auto fleet = store->CreateToken("", absl::Hours(1), "first batch", kNow);
    auto other = store->CreateToken("", absl::Hours(1), "", kNow);
    fleet_token = other->token;
    auto grant = store->Authenticate("agent-1", "", fleet->token, kNow);
    key = grant->agent_key;
    token_id = fleet->record.id;
    ASSERT_TRUE(store->RevokeToken(other->record.id).ok());
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->Authenticate("agent-1", key, "", kNow).ok());
  EXPECT_TRUE(absl::IsUnauthenticated(
      store->Authenticate("agent-9", "", fleet_token, kNow).status()));
  auto tokens = store->Tokens();
  ASSERT_THAT(tokens, SizeIs(2));
  const auto& first = tokens[0].id == token_id ? tokens[0] : tokens[1];
  EXPECT_EQ(first.label, "first batch");
  EXPECT_EQ(first.enrollments, 1);
}

TEST_F(CredentialStoreTest, TornLastLineIsDroppedOnOpen) {
  {
    auto store = Open();
    ASSERT_TRUE(store->CreateToken("", absl::Hours(1), "", kNow).ok());
  }
  {
    std::ofstream out(path_, std::ios::app);
    out << "E agent-1 abc";  // A crash mid-append.
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->Tokens(), SizeIs(1));
  ASSERT_TRUE(store->CreateToken("", absl::Hours(1), "", kNow).ok());
  EXPECT_TRUE(CredentialStore::Open(path_).ok());
}

TEST_F(CredentialStoreTest, ReplayRefusesMalformedLinesNamingThem) {
  CredentialState state;
  CredentialLimits limits;
  const std::string hash(64, 'a');
  EXPECT_TRUE(ReplayCredentialJournal(
                  absl::StrCat("T jt-0123456789abcdef ", hash,
                               " * 1 2 -\nE agent-1 ", hash,
                               " jt-0123456789abcdef\n"),
                  limits, state)
                  .ok());
  for (const std::string& bad :
       {std::string("X\n"), absl::StrCat("T jt-01 ", hash, " * 1 2 -\n"),
        absl::StrCat("T jt-0123456789abcdef ", hash, " * 1 2\n"),
        absl::StrCat("E agent-2 ", hash, " jt-ffffffffffffffff\n"),
        absl::StrCat("E bad/id ", hash, " jt-0123456789abcdef\n"),
        std::string("R jt-ffffffffffffffff\n"),
        absl::StrCat("T jt-1123456789abcdef ", hash, " * x 2 -\n"),
        absl::StrCat("T jt-2123456789abcdef ", hash, " * 1 2 abc\n")}) {
    CredentialState copy = state;
    absl::Status s = ReplayCredentialJournal(bad, limits, copy);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(s.message(), HasSubstr("line 1")) << bad;
  }
  limits.max_tokens = 1;
  CredentialState full = state;
  EXPECT_TRUE(absl::IsResourceExhausted(ReplayCredentialJournal(
      absl::StrCat("T jt-3123456789abcdef ", hash, " * 1 2 -\n"), limits,
      full)));
}

TEST_F(CredentialStoreTest, BadTokenRequestsAreRefused) {
  auto store = Open();
  EXPECT_TRUE(absl::IsInvalidArgument(
      store->CreateToken("a b", absl::Hours(1), "", kNow).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      store->CreateToken("", absl::ZeroDuration(), "", kNow).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      store->CreateToken("", absl::Hours(1), std::string(201, 'x'), kNow)
          .status()));
}

TEST_F(CredentialStoreTest, OperatorTokenIsCreatedPrivateAndReadBack) {
  const std::string path = (root_ / "operator_token").string();
  auto first = LoadOrCreateOperatorToken(path);
  ASSERT_TRUE(first.ok()) << first.status();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(path);
  std::string token;
  in >> token;
  EXPECT_TRUE(DigestsEqual(*first, Sha256Of(token)));
  auto again = LoadOrCreateOperatorToken(path);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(DigestsEqual(*first, *again));
  chmod(path.c_str(), 0644);
  auto readable = LoadOrCreateOperatorToken(path);
  EXPECT_TRUE(absl::IsFailedPrecondition(readable.status()));
  EXPECT_THAT(readable.status().message(), HasSubstr("chmod 600"));
}

TEST_F(CredentialStoreTest, OperatorToken_TrailingNewlineIsTrimmed) {
  const std::string path = (root_ / "operator_token").string();
  std::ofstream(path) << "  ot-0123456789abcdef\n\n";
  auto token = ReadOperatorToken(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "ot-0123456789abcdef");
}

TEST_F(CredentialStoreTest,
       OperatorToken_NotATokenIsRefusedWithoutItsContents) {
  const std::string path = (root_ / "operator-1.key").string();
  const std::string pem =
      "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0w\n"
      "-----END PRIVATE KEY-----\n";
  std::ofstream(path) << pem;
  chmod(path.c_str(), 0600);
  for (const auto& status : {ReadOperatorToken(path).status(),
                             LoadOrCreateOperatorToken(path).status()}) {
    EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
    EXPECT_THAT(status.message(), HasSubstr(path));
    EXPECT_THAT(status.message(), HasSubstr("3 lines"));
    EXPECT_THAT(status.message(), HasSubstr("STATE_DIR/operator_token"));
    EXPECT_THAT(status.message(), Not(HasSubstr("PRIVATE")));
    EXPECT_THAT(status.message(), Not(HasSubstr("MIGH")));
  }
  std::ofstream(path) << "ot-0123456789\tabcdef\n";
  auto tab = ReadOperatorToken(path);
  EXPECT_TRUE(absl::IsFailedPrecondition(tab.status()));
  EXPECT_THAT(tab.status().message(), HasSubstr("control"));
  EXPECT_THAT(tab.status().message(), Not(HasSubstr("abcdef")));
  std::ofstream(path) << std::string(5000, 'x');
  EXPECT_TRUE(absl::IsFailedPrecondition(ReadOperatorToken(path).status()));
  std::ofstream(path) << "short\n";
  EXPECT_TRUE(absl::IsFailedPrecondition(ReadOperatorToken(path).status()));
  EXPECT_TRUE(absl::IsNotFound(
      ReadOperatorToken((root_ / "missing").string()).status()));
}

TEST_F(CredentialStoreTest, AuditLogLinesAreJsonAndCannotBeForged) {
  const std::string path = (root_ / "audit.log").string();
  {
    auto log = AuditLog::Open(path);
    ASSERT_TRUE(log.ok());
    (*log)->Record(kNow, "join", {{"agent", "agent-1"}, {"peer", "ipv4:1.2.3.4"}});
    (*log)->Record(kNow, "refused",
                   {{"reason", "x\"}\n{\"event\":\"forged\""}, {"bin", "\x01\xff"}});
  }
  {
    auto log = AuditLog::Open(path);  // Appends; never rewrites.
    ASSERT_TRUE(log.ok());
    (*log)->Record(kNow, "stop", {});
  }
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_THAT(lines, SizeIs(3));
  EXPECT_EQ(lines[0],
            "{\"time\":\"2027-01-15T08:00:00.000Z\",\"event\":\"join\","
            "\"agent\":\"agent-1\",\"peer\":\"ipv4:1.2.3.4\"}");
  EXPECT_EQ(lines[1],
            "{\"time\":\"2027-01-15T08:00:00.000Z\",\"event\":\"refused\","
            "\"reason\":\"x\\\"}\\n{\\\"event\\\":\\\"forged\\\"\","
            "\"bin\":\"\\u0001\\u00ff\"}");
  EXPECT_THAT(lines[2], HasSubstr("\"event\":\"stop\"}"));
}

}  // namespace
}  // namespace fedge
