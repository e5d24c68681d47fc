// The coordinator's capacity settings on the real binary (TLS, 127.0.0.1):
// its check of RLIMIT_NOFILE against max_connections at start, the check of
// grpc_memory_quota_mb against max_connections, handshake_timeout_ms
// closing connections that never handshake, and
// max_concurrent_streams_per_connection making extra calls wait, and
// thousands of half-open connections and silent streams held within a
// memory bound derived from these caps while a real agent trains.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
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

// VmRSS of process `pid` in KiB (0 when unreadable).
int64_t RssKib(pid_t pid) {
  const std::string status =
      ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/status"));
  const size_t at = status.find("VmRSS:");
  if (at == std::string::npos) return 0;
  int64_t kib = 0;
  const size_t end = status.find("kB", at);
  absl::SimpleAtoi(
      absl::StripAsciiWhitespace(status.substr(at + 6, end - at - 6)), &kib);
  return kib;
}

// A TCP connection to 127.0.0.1:port that never says anything (no TLS
// ClientHello): -1 on failure.
int HalfOpenConnection(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Issue #9, resource limits: "A test opens thousands of idle connections
// and silent streams and checks that memory stays within a stated bound
// and a real agent still trains." 2,000 TCP connections that never start
// their TLS handshake and 20 TLS connections with 50 upload streams each
// that never send a byte (1,000 silent streams), against a coordinator
// sized for them (max_connections 2,100, grpc_memory_quota_mb 64,
// handshake_timeout_ms 120 s so that nothing is closed while measuring).
// The stated bound on the coordinator's VmRSS growth is derived from those
// caps: the gRPC memory quota (64 MiB: connection buffers and calls) plus
// 64 KiB for each connection opened (what the quota does not count: the
// endpoint, the TLS handshaker and OpenSSL's state of a connection that
// has not finished its handshake; the issue measured about 67 KB per
// half-open TLS connection before the quota and the handshake timeout):
// 64 MiB + 2,020 x 64 KiB = 190 MiB. A real agent must still train rounds
// meanwhile, and once the clients hang up at least half of what they took
// must come back (the coordinator hands freed heap back to the system
// every 10 s).
TEST_F(CapacityTest, IdleConnectionsAndSilentStreams_MemoryBounded_AgentTrains) {
  constexpr int kHalfOpen = 2000;
  constexpr int kTlsConnections = 20;
  constexpr int kStreamsPerConnection = 50;
  constexpr int64_t kQuotaMib = 64;
  constexpr int64_t kPerConnectionKib = 64;
  // The test's own descriptors: the half-open connections and the rest.
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur < static_cast<rlim_t>(kHalfOpen + 500)) {
    ASSERT_GE(limit.rlim_max, static_cast<rlim_t>(kHalfOpen + 500))
        << "the hard RLIMIT_NOFILE is too low for this test";
    limit.rlim_cur = limit.rlim_max;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  }
  int port = 0;
  auto c = StartCoordinator(
      {"--max_connections=2100", absl::StrCat("--grpc_memory_quota_mb=",
                                               kQuotaMib),
       "--handshake_timeout_ms=120000", "--rounds=1000",
       "--strategy.count=1", "--strategy.min_available_agents=1",
       "--strategy.min_fit_agents=1"},
      &port);
  ASSERT_NE(port, 0) << c->Log();
  auto agent = StartAgent(1, port);
  ASSERT_TRUE(WaitForRounds(2, absl::Seconds(60))) << c->Log();
  const int64_t base_kib = RssKib(c->pid());
  ASSERT_GT(base_kib, 0);

  std::vector<int> fds;
  for (int i = 0; i < kHalfOpen; ++i) {
    const int fd = HalfOpenConnection(port);
    ASSERT_GE(fd, 0) << "connection " << i << ": " << strerror(errno);
    fds.push_back(fd);
  }
  // Silent upload streams: started, then nothing (not even the metadata).
  grpc::CompletionQueue cq;
  struct Silent {
    grpc::ClientContext ctx;
    v1::SubmitUpdateResponse resp;
    std::unique_ptr<grpc::ClientAsyncWriter<v1::UpdateChunk>> writer;
  };
  std::vector<std::unique_ptr<v1::Federation::Stub>> stubs;
  std::vector<std::unique_ptr<Silent>> silent;
  for (int i = 0; i < kTlsConnections; ++i) {
    v1::TlsConfig tls;
    tls.set_ca_path(CertDir() + "/ca.pem");
    auto creds = MakeChannelCredentials(tls);
    ASSERT_TRUE(creds.ok());
    grpc::ChannelArguments args = MakeChannelArguments(tls, 0);
    args.SetInt("fedge.test.connection", i);  // A connection of its own.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(v1::Federation::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", port), *creds, args)));
    for (int j = 0; j < kStreamsPerConnection; ++j) {
      auto s = std::make_unique<Silent>();
      s->ctx.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(300));
      s->writer = stubs.back()->AsyncSubmitUpdate(&s->ctx, &s->resp, &cq,
                                                  s.get());
      silent.push_back(std::move(s));
    }
  }
  // Every stream started (its call reached the coordinator).
  int started = 0;
  const auto until = std::chrono::system_clock::now() + std::chrono::seconds(60);
  while (started < kTlsConnections * kStreamsPerConnection) {
    void* tag;
    bool ok;
    if (cq.AsyncNext(&tag, &ok, until) != grpc::CompletionQueue::GOT_EVENT) {
      break;
    }
    if (ok) ++started;
  }
  ASSERT_EQ(started, kTlsConnections * kStreamsPerConnection);

  // While they are all open, a real agent still trains.
  const size_t rounds = History().size();
  ASSERT_TRUE(WaitForRounds(rounds + 3, absl::Seconds(60))) << c->Log();
  const int64_t held_kib = RssKib(c->pid());
  const int64_t bound_kib =
      kQuotaMib * 1024 + (kHalfOpen + kTlsConnections) * kPerConnectionKib;
  std::printf("coordinator VmRSS: %lld KiB at rest, %lld KiB with %d "
              "half-open connections and %d silent streams (bound: +%lld "
              "KiB)\n",
              static_cast<long long>(base_kib),
              static_cast<long long>(held_kib), kHalfOpen,
              kTlsConnections * kStreamsPerConnection,
              static_cast<long long>(bound_kib));
  EXPECT_LE(held_kib - base_kib, bound_kib);

  // Hang up: the memory comes back: at least half of what they took (the
  // rest is what gRPC and the heap keep for the next connections, within
  // the quota).
  for (auto& s : silent) s->ctx.TryCancel();
  for (int fd : fds) close(fd);
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  silent.clear();
  stubs.clear();
  int64_t after_kib = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        after_kib = RssKib(c->pid());
        return after_kib - base_kib <= kQuotaMib * 1024 &&
               after_kib - base_kib <= (held_kib - base_kib) / 2;
      },
      absl::Seconds(30)))
      << "VmRSS " << after_kib << " KiB after closing, " << base_kib
      << " KiB before";
  std::printf("coordinator VmRSS after closing: %lld KiB\n",
              static_cast<long long>(after_kib));
  const size_t rounds_after = History().size();
  EXPECT_TRUE(WaitForRounds(rounds_after + 1, absl::Seconds(60))) << c->Log();
  agent->Signal(SIGTERM);
  agent->Wait(absl::Seconds(20));
}

}  // namespace
}  // namespace fedge::testing
