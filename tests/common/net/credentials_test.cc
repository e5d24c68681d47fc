// End-to-end checks of the TLS settings: certificates made by
// deploy/make-certs.sh, a real gRPC server on 127.0.0.1 (ephemeral port) and
// real channels. Every RPC has a 5 s deadline so a failure cannot hang.
#include "common/net/credentials.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/net/grpc_status.h"
#include "common/status_macros.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kRpcTimeout = std::chrono::seconds(5);
constexpr int64_t kKeepaliveMs = 20000;

// Operator service whose GetStatus answers with the caller's identity.
class IdentityOperator final : public v1::Operator::Service {
 public:
  grpc::Status GetStatus(grpc::ServerContext* context,
                         const v1::GetStatusRequest*,
                         v1::GetStatusResponse* response) override {
    response->set_state(PeerIdentity(*context));
    return grpc::Status::OK;
  }
};

// A server on 127.0.0.1 with an ephemeral port; shut down when destroyed.
class TestServer {
 public:
  // Returns the server, or the credentials' error, or INTERNAL when the
  // server does not start.
  static absl::StatusOr<std::unique_ptr<TestServer>> Start(
      const v1::TlsConfig& tls) {
    ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(tls));
    auto server = std::unique_ptr<TestServer>(new TestServer);
    grpc::ServerBuilder builder;
    ConfigureServerBuilder(builder);
    builder.AddListeningPort("127.0.0.1:0", credentials, &server->port_);
    builder.RegisterService(&server->service_);
    server->server_ = builder.BuildAndStart();
    if (server->server_ == nullptr || server->port_ == 0) {
      return absl::InternalError("server did not start");
    }
    return server;
  }

  ~TestServer() {
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
  }

  int port() const { return port_; }

 private:
  TestServer() = default;

  IdentityOperator service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// Calls Operator.GetStatus on host:port with `tls`; returns the `state`
// field (the identity the server saw) or the call's status.
absl::StatusOr<std::string> CallGetStatus(const std::string& host, int port,
                                          const v1::TlsConfig& tls) {
  ASSIGN_OR_RETURN(auto credentials, MakeChannelCredentials(tls));
  auto channel =
      grpc::CreateCustomChannel(absl::StrCat(host, ":", port), credentials,
                                MakeChannelArguments(tls, kKeepaliveMs));
  auto stub = v1::Operator::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
  v1::GetStatusResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub->GetStatus(&context, {}, &response)));
  return response.state();
}

class CredentialsTest : public testing::Test {
 protected:
  // Makes one deployment's certificates and an unrelated ("foreign") CA
  // with its own agent-1, once for all tests of this process.
  static void SetUpTestSuite() {
    root_ = new std::string(
        absl::StrCat(testing::TempDir(), "fedge_net_test_", getpid()));
    certs_ok_ = MakeCerts(Certs()) && MakeCerts(Foreign());
  }

  static void TearDownTestSuite() {
    std::filesystem::remove_all(*root_);
    delete root_;
    root_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(certs_ok_) << "deploy/make-certs.sh failed; see " << *root_;
  }

  static std::string Certs() { return *root_ + "/certs"; }
  static std::string Foreign() { return *root_ + "/foreign"; }

  // Coordinator settings; mutual TLS when `require_client_cert`.
  static v1::TlsConfig ServerTls(bool require_client_cert) {
    v1::TlsConfig tls;
    tls.set_cert_path(Certs() + "/coordinator.pem");
    tls.set_key_path(Certs() + "/coordinator.key");
    tls.set_ca_path(Certs() + "/ca.pem");
    tls.set_require_client_cert(require_client_cert);
    return tls;
  }

  // Agent settings trusting the CA in `ca_dir`, presenting `agent_dir`'s
  // agent-1 certificate unless `agent_dir` is empty.
  static v1::TlsConfig ClientTls(const std::string& ca_dir,
                                 const std::string& agent_dir = "") {
    v1::TlsConfig tls;
    tls.set_ca_path(ca_dir + "/ca.pem");
    if (!agent_dir.empty()) {
      tls.set_cert_path(agent_dir + "/agent-1.pem");
      tls.set_key_path(agent_dir + "/agent-1.key");
    }
    return tls;
  }

  static std::unique_ptr<TestServer> StartServer(const v1::TlsConfig& tls) {
    auto server = TestServer::Start(tls);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(server).value() : nullptr;
  }

 private:
  static bool MakeCerts(const std::string& dir) {
    const std::string command =
        absl::StrCat("bash '", FEDGE_SOURCE_DIR, "/deploy/make-certs.sh' '",
                     dir, "' --agents 1 > '", dir, ".log' 2>&1");
    std::filesystem::create_directories(*root_);
    return std::system(command.c_str()) == 0;
  }

  static std::string* root_;
  static bool certs_ok_;
};

std::string* CredentialsTest::root_ = nullptr;
bool CredentialsTest::certs_ok_ = false;

TEST_F(CredentialsTest, Tls_ClientTrustingTheCa_Connects) {
  auto server = StartServer(ServerTls(false));
  ASSERT_NE(server, nullptr);
  for (const char* host : {"localhost", "127.0.0.1"}) {
    auto state = CallGetStatus(host, server->port(), ClientTls(Certs()));
    ASSERT_TRUE(state.ok()) << host << ": " << state.status();
    EXPECT_EQ(*state, "") << "no client certificate, so no identity";
  }
}

TEST_F(CredentialsTest, Tls_ClientTrustingAnotherCa_IsRefused) {
  auto server = StartServer(ServerTls(false));
  ASSERT_NE(server, nullptr);
  auto state = CallGetStatus("localhost", server->port(), ClientTls(Foreign()));
  EXPECT_EQ(state.status().code(), absl::StatusCode::kUnavailable)
      << state.status();
}

TEST_F(CredentialsTest, Tls_ServerName_IsCheckedInsteadOfDialledHost) {
  auto server = StartServer(ServerTls(false));
  ASSERT_NE(server, nullptr);
  v1::TlsConfig tls = ClientTls(Certs());
  tls.set_server_name("fedge-coordinator");
  auto state = CallGetStatus("127.0.0.1", server->port(), tls);
  EXPECT_TRUE(state.ok()) << state.status();

  tls.set_server_name("elsewhere.example");
  state = CallGetStatus("127.0.0.1", server->port(), tls);
  EXPECT_EQ(state.status().code(), absl::StatusCode::kUnavailable)
      << state.status();
}

TEST_F(CredentialsTest, Tls_PlainTextClient_IsRefused) {
  auto server = StartServer(ServerTls(false));
  ASSERT_NE(server, nullptr);
  v1::TlsConfig insecure;
  insecure.set_insecure(true);
  auto state = CallGetStatus("localhost", server->port(), insecure);
  EXPECT_FALSE(state.ok());
}

TEST_F(CredentialsTest, MutualTls_ClientWithoutCertificate_IsRefused) {
  auto server = StartServer(ServerTls(true));
  ASSERT_NE(server, nullptr);
  auto state = CallGetStatus("localhost", server->port(), ClientTls(Certs()));
  EXPECT_EQ(state.status().code(), absl::StatusCode::kUnavailable)
      << state.status();
}

TEST_F(CredentialsTest, MutualTls_AgentCertificate_ServerSeesCommonName) {
  auto server = StartServer(ServerTls(true));
  ASSERT_NE(server, nullptr);
  auto state =
      CallGetStatus("localhost", server->port(), ClientTls(Certs(), Certs()));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(*state, "agent-1");
}

TEST_F(CredentialsTest, MutualTls_CertificateFromForeignCa_IsRefused) {
  auto server = StartServer(ServerTls(true));
  ASSERT_NE(server, nullptr);
  auto state =
      CallGetStatus("localhost", server->port(), ClientTls(Certs(), Foreign()));
  EXPECT_EQ(state.status().code(), absl::StatusCode::kUnavailable)
      << state.status();
}

TEST_F(CredentialsTest, Tls_ClientCertificateNotRequested_NoIdentity) {
  auto server = StartServer(ServerTls(false));
  ASSERT_NE(server, nullptr);
  auto state =
      CallGetStatus("localhost", server->port(), ClientTls(Certs(), Certs()));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(*state, "");
}

TEST_F(CredentialsTest, Insecure_ServerAndClient_Connect) {
  v1::TlsConfig insecure;
  insecure.set_insecure(true);
  auto server = StartServer(insecure);
  ASSERT_NE(server, nullptr);
  auto state = CallGetStatus("127.0.0.1", server->port(), insecure);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(*state, "");
}

TEST_F(CredentialsTest, Server_MissingCertPath_InvalidArgumentWithFix) {
  const auto credentials = MakeServerCredentials(v1::TlsConfig());
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(credentials.status().message(), HasSubstr("tls.cert_path"));
  EXPECT_THAT(credentials.status().message(), HasSubstr("make-certs.sh"));
  EXPECT_THAT(credentials.status().message(), HasSubstr("tls.insecure=true"));
}

TEST_F(CredentialsTest, Server_MissingKeyPath_InvalidArgument) {
  v1::TlsConfig tls = ServerTls(false);
  tls.clear_key_path();
  const auto credentials = MakeServerCredentials(tls);
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(credentials.status().message(), HasSubstr("tls.key_path"));
}

TEST_F(CredentialsTest, Server_RequireClientCertWithoutCa_InvalidArgument) {
  v1::TlsConfig tls = ServerTls(true);
  tls.clear_ca_path();
  const auto credentials = MakeServerCredentials(tls);
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(credentials.status().message(), HasSubstr("tls.ca_path"));
}

TEST_F(CredentialsTest, Server_MissingFile_NotFoundNamingPath) {
  v1::TlsConfig tls = ServerTls(false);
  const std::string missing = Certs() + "/no-such.pem";
  tls.set_cert_path(missing);
  const auto credentials = MakeServerCredentials(tls);
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(credentials.status().message(), HasSubstr(missing));
  EXPECT_THAT(credentials.status().message(), HasSubstr("tls.cert_path"));
}

TEST_F(CredentialsTest, Server_FileWithoutPem_InvalidArgument) {
  const std::string junk = Certs() + "/junk.pem";
  std::ofstream(junk) << "not a certificate\n";
  v1::TlsConfig tls = ServerTls(false);
  tls.set_key_path(junk);
  const auto credentials = MakeServerCredentials(tls);
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(credentials.status().message(), HasSubstr(junk));
}

// A key that is not the certificate's (gRPC would only log "Invalid
// private key" and fail to listen), a certificate file holding a key, and
// the same mix-up on an agent's mutual-TLS pair.
TEST_F(CredentialsTest, KeyOfAnotherCertificate_InvalidArgumentNamingBoth) {
  v1::TlsConfig tls = ServerTls(false);
  tls.set_key_path(Certs() + "/agent-1.key");
  absl::Status s = MakeServerCredentials(tls).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tls.key_path '" + Certs() +
                                     "/agent-1.key' is not the private key of "
                                     "tls.cert_path '" +
                                     Certs() + "/coordinator.pem'"));

  tls = ServerTls(false);
  tls.set_cert_path(Certs() + "/coordinator.key");
  s = MakeServerCredentials(tls).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tls.cert_path '" + Certs() +
                                     "/coordinator.key' holds no PEM "
                                     "certificate"));

  v1::TlsConfig agent = ClientTls(Certs(), Certs());
  agent.set_key_path(Certs() + "/coordinator.key");
  s = MakeChannelCredentials(agent).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("is not the private key of "
                                     "tls.cert_path '" +
                                     Certs() + "/agent-1.pem'"));
}

TEST_F(CredentialsTest, Channel_MissingCaPath_InvalidArgumentWithFix) {
  const auto credentials = MakeChannelCredentials(v1::TlsConfig());
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(credentials.status().message(), HasSubstr("tls.ca_path"));
  EXPECT_THAT(credentials.status().message(), HasSubstr("tls.insecure=true"));
}

TEST_F(CredentialsTest, Channel_CertWithoutKey_InvalidArgument) {
  v1::TlsConfig tls = ClientTls(Certs(), Certs());
  tls.clear_key_path();
  const auto credentials = MakeChannelCredentials(tls);
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(credentials.status().message(), HasSubstr("tls.key_path"));
}

// The fix names the file beside the given one, whoever's it is (the fedge
// tool presents an operator's certificate, not an agent's).
TEST_F(CredentialsTest, Channel_HalfAPair_FixNamesTheOtherHalf) {
  v1::TlsConfig tls = ClientTls(Certs());
  tls.set_cert_path("certs/operator-1.pem");
  auto credentials = MakeChannelCredentials(tls);
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(credentials.status().message(),
              HasSubstr("tls.key_path is required for mutual TLS"));
  EXPECT_THAT(credentials.status().message(),
              HasSubstr("--tls.key_path=certs/operator-1.key"));
  EXPECT_THAT(credentials.status().message(), Not(HasSubstr("agent")));

  tls.clear_cert_path();
  tls.set_key_path("certs/operator-1.key");
  credentials = MakeChannelCredentials(tls);
  EXPECT_THAT(credentials.status().message(),
              HasSubstr("tls.cert_path is required for mutual TLS"));
  EXPECT_THAT(credentials.status().message(),
              HasSubstr("--tls.cert_path=certs/operator-1.pem"));
}

TEST_F(CredentialsTest, Channel_MissingCaFile_NotFoundNamingPath) {
  const std::string missing_dir = Certs() + "/nope";
  const auto credentials = MakeChannelCredentials(ClientTls(missing_dir));
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(credentials.status().message(),
              HasSubstr(missing_dir + "/ca.pem"));
}

// Value of the integer channel argument `key` in `args`, or -1.
int IntArg(const grpc::ChannelArguments& args, const std::string& key) {
  const grpc_channel_args c_args = args.c_channel_args();
  for (size_t i = 0; i < c_args.num_args; ++i) {
    if (key == c_args.args[i].key && c_args.args[i].type == GRPC_ARG_INTEGER) {
      return c_args.args[i].value.integer;
    }
  }
  return -1;
}

// String value of the channel argument `key` in `args`, or "".
std::string StringArg(const grpc::ChannelArguments& args,
                      const std::string& key) {
  const grpc_channel_args c_args = args.c_channel_args();
  for (size_t i = 0; i < c_args.num_args; ++i) {
    if (key == c_args.args[i].key && c_args.args[i].type == GRPC_ARG_STRING) {
      return c_args.args[i].value.string;
    }
  }
  return "";
}

TEST(ChannelArgumentsTest, SetsServerNameKeepaliveAndBackoff) {
  v1::TlsConfig tls;
  tls.set_server_name("fedge-coordinator");
  const grpc::ChannelArguments args = MakeChannelArguments(tls, 30000);
  EXPECT_EQ(StringArg(args, GRPC_SSL_TARGET_NAME_OVERRIDE_ARG),
            "fedge-coordinator");
  EXPECT_EQ(IntArg(args, GRPC_ARG_KEEPALIVE_TIME_MS), 30000);
  EXPECT_EQ(IntArg(args, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS), 1);
  EXPECT_EQ(IntArg(args, GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA), 0);
  EXPECT_EQ(IntArg(args, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS), 100);
  EXPECT_EQ(IntArg(args, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS), 2000);
}

TEST(ChannelArgumentsTest, ShortKeepalive_IsClampedAndNoServerName) {
  const grpc::ChannelArguments args = MakeChannelArguments(v1::TlsConfig(), 1);
  EXPECT_EQ(IntArg(args, GRPC_ARG_KEEPALIVE_TIME_MS), kMinKeepaliveTimeMs);
  EXPECT_EQ(StringArg(args, GRPC_SSL_TARGET_NAME_OVERRIDE_ARG), "");
}

// The hints fedge-agent and fedge add to gRPC's terse connection errors,
// from what this side's TLS settings are.
TEST(ConnectionFailureHintTest, NamesTheLikelyMismatch) {
  v1::TlsConfig plain;
  plain.set_insecure(true);
  v1::TlsConfig server_auth;
  server_auth.set_ca_path("ca.pem");
  v1::TlsConfig mutual = server_auth;
  mutual.set_cert_path("operator-1.pem");
  mutual.set_key_path("operator-1.key");
  const std::string closed = "failed to connect: Socket closed";
  EXPECT_THAT(ConnectionFailureHint(plain, closed),
              HasSubstr("does it expect TLS?"));
  EXPECT_THAT(ConnectionFailureHint(server_auth, closed),
              HasSubstr("does it require a client certificate?"));
  EXPECT_THAT(ConnectionFailureHint(mutual, closed),
              HasSubstr("does it accept the client certificate"));
  const std::string tls_to_plain =
      "Ssl handshake failed: SSL_ERROR_SSL: error:0A00010B:SSL "
      "routines::wrong version number";
  EXPECT_THAT(ConnectionFailureHint(server_auth, tls_to_plain),
              HasSubstr("does the coordinator speak plain text?"));
  EXPECT_EQ(ConnectionFailureHint(plain, tls_to_plain), "");
  EXPECT_EQ(ConnectionFailureHint(server_auth, "Connection refused"), "");
}

}  // namespace
}  // namespace fedge
