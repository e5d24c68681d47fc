// The coordinator's capacity settings on the real binary (TLS, 127.0.0.1):
// its check of RLIMIT_NOFILE against max_connections at start, the check of
// grpc_memory_quota_mb against max_connections, handshake_timeout_ms
// closing connections that never handshake, and
// max_concurrent_streams_per_connection making extra calls wait.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/net/credentials.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/federation_fixture.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

class CapacityTest : public FederationTest {
 protected:
  // The coordinator's command line with `flags`, run by /bin/sh after
  // setting RLIMIT_NOFILE to `soft` (hard limit `hard`).
  std::vector<std::string> WithDescriptorLimit(
      int soft, int hard, const std::vector<std::string>& flags) const {
    std::vector<std::string> argv = {
        "/bin/sh", "-c",
        absl::StrCat("ulimit -Sn ", soft, " && ulimit -Hn ", hard,
                     " && exec \"$@\""),
        "sh"};
    for (const std::string& a : CoordinatorArgv(flags)) argv.push_back(a);
    return argv;
  }

  // A TLS channel of its own to the coordinator on `port`.
  std::unique_ptr<v1::Federation::Stub> Connect(int port) const {
    v1::TlsConfig tls;
    tls.set_ca_path(CertDir() + "/ca.pem");
    auto creds = MakeChannelCredentials(tls);
    EXPECT_TRUE(creds.ok()) << creds.status();
    return v1::Federation::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), *creds,
                                  MakeChannelArguments(tls, 0)));
  }
};

TEST_F(CapacityTest, HardDescriptorLimitTooLow_RefusesToStartNamingBoth) {
  Process p(WithDescriptorLimit(300, 300, {"--max_connections=1000"}),
            dir_ + "/coordinator.log");
  ASSERT_EQ(p.Wait(absl::Seconds(60)), 1) << p.Log();
  EXPECT_THAT(p.Log(), HasSubstr("RLIMIT_NOFILE is 300 (hard limit 300) but "
                                 "max_connections is 1000"));
  EXPECT_THAT(p.Log(), HasSubstr("ulimit -n 1256"));
}

TEST_F(CapacityTest, SoftDescriptorLimitTooLow_RaisedToHardLimit) {
  int port = 0;
  auto c = StartCoordinatorProcess(
      WithDescriptorLimit(300, 2000, {"--max_connections=1000"}), &port,
      "coordinator");
  ASSERT_NE(port, 0) << c->Log();
  EXPECT_THAT(c->Log(), HasSubstr("raised RLIMIT_NOFILE from 300 to 2000"));
  EXPECT_THAT(ReadFileOrEmpty(absl::StrCat("/proc/", c->pid(), "/limits")),
              ::testing::ContainsRegex("Max open files +2000 +2000"));
}

TEST_F(CapacityTest, QuotaTooSmallForMaxConnections_NamesBothFields) {
  Process p(CoordinatorArgv(
                {"--max_connections=20000", "--grpc_memory_quota_mb=100"}),
            dir_ + "/coordinator.log");
  ASSERT_EQ(p.Wait(absl::Seconds(60)), 2) << p.Log();
  EXPECT_THAT(p.Log(), HasSubstr("'grpc_memory_quota_mb' must be >= 329"));
  EXPECT_THAT(p.Log(), HasSubstr("max_connections=20000"));
}

TEST_F(CapacityTest, SilentConnection_ClosedAfterHandshakeTimeout) {
  int port = 0;
  auto c = StartCoordinator({"--handshake_timeout_ms=300"}, &port);
  ASSERT_NE(port, 0) << c->Log();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  // Says nothing (no TLS ClientHello): closed by the coordinator, long
  // before the default 20 s.
  pollfd readable{fd, POLLIN, 0};
  ASSERT_EQ(poll(&readable, 1, /*timeout_ms=*/10000), 1);
  char byte;
  EXPECT_LE(read(fd, &byte, 1), 0);  // EOF or reset.
  close(fd);
}

TEST_F(CapacityTest, StreamsPerConnection_ExtraCallWaitsForASlot) {
  int port = 0;
  auto c = StartCoordinator(
      {"--max_concurrent_streams_per_connection=4", "--poll_wait_ms=5000",
       "--strategy.min_available_agents=10"},
      &port);
  ASSERT_NE(port, 0) << c->Log();
  auto stub = Connect(port);
  v1::JoinRequest join;
  join.set_agent_id("streams");
  v1::JoinResponse joined;
  grpc::ClientContext join_ctx;
  join_ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
  ASSERT_TRUE(stub->Join(&join_ctx, join, &joined).ok());
  // Four long polls park (no round starts below 10 agents): every stream
  // of the connection is in use.
  std::vector<std::thread> parked;
  for (int i = 0; i < 4; ++i) {
    parked.emplace_back([&stub, &joined] {
      v1::PollRequest req;
      req.set_session_token(joined.session_token());
      v1::PollResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(20));
      stub->Poll(&ctx, req, &resp);
    });
  }
  // Once they hold the connection's streams, another call on it waits.
  v1::PollRequest quick;
  quick.set_session_token(joined.session_token());
  quick.set_no_wait(true);
  v1::PollResponse resp;
  EXPECT_TRUE(WaitFor(
      [&] {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(300));
        return stub->Poll(&ctx, quick, &resp).error_code() ==
               grpc::StatusCode::DEADLINE_EXCEEDED;
      },
      absl::Seconds(4)));
  // A call on another connection does not.
  grpc::ClientContext on_other;
  on_other.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
  EXPECT_TRUE(Connect(port)->Poll(&on_other, quick, &resp).ok());
  for (std::thread& t : parked) t.join();
}

}  // namespace
}  // namespace fedge::testing
