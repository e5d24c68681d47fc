// End-to-end lifecycle checks of the real fedge-coordinator and fedge-agent
// binaries on 127.0.0.1: shutdown with parked calls, a hung central
// evaluator, a full disk, versions that never go backward across a crash,
// wall-clock steps, slow devices that must stay live, and agents coming back
// after a restart. Bounded in time; every process is stopped by the test.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/net/credentials.h"
#include "common/net/grpc_deadline.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

bool LogHas(const Process& p, const std::string& text) {
  return p.Log().find(text) != std::string::npos;
}

void WriteFile(const std::string& path, const std::string& contents,
               bool executable = false) {
  std::ofstream(path) << contents;
  if (executable) chmod(path.c_str(), 0755);
}

// The coordinator's model version through Operator.GetStatus (-1 when it
// does not answer).
int64_t StatusVersion(int port, const std::string& ca,
                      const std::string& operator_token_path) {
  v1::TlsConfig tls;
  tls.set_ca_path(ca);
  auto creds = MakeChannelCredentials(tls);
  if (!creds.ok()) return -1;
  static std::map<int, std::shared_ptr<grpc::Channel>> channels;
  auto& channel = channels[port];
  if (channel == nullptr) {
    channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                        *creds, MakeChannelArguments(tls, 0));
  }
  auto stub = v1::Operator::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(MonotonicDeadline(absl::Seconds(2)));
  context.AddMetadata("authorization",
                      "Bearer " + std::string(absl::StripAsciiWhitespace(
                                      ReadFileOrEmpty(operator_token_path))));
  v1::GetStatusResponse response;
  if (!stub->GetStatus(&context, v1::GetStatusRequest(), &response).ok()) {
    return -1;
  }
  return response.model_version();
}

// A second coordinator on a running one's state_dir or port is refused,
// naming which (gRPC's default SO_REUSEPORT let it share the port), and
// the first one goes on serving.
TEST_F(FederationTest, SecondCoordinator_SameStateDirOrPort_Refused) {
  int port;
  auto first = StartCoordinator({"--rounds=100"}, &port);
  ASSERT_GT(port, 0) << first->Log();
  Process same_dir(CoordinatorArgv({}), dir_ + "/same_dir.log");
  EXPECT_EQ(same_dir.Wait(absl::Seconds(60)), 1) << same_dir.Log();
  EXPECT_THAT(same_dir.Log(),
              HasSubstr("/coordinator/LOCK is locked by another process "
                        "(another fedge-coordinator uses this state_dir: give "
                        "each coordinator its own --state_dir)"));
  const std::string address = absl::StrCat("127.0.0.1:", port);
  Process same_port(CoordinatorArgv({"--listen_address=" + address,
                                     "--state_dir=" + dir_ + "/other"}),
                    dir_ + "/same_port.log");
  EXPECT_EQ(same_port.Wait(absl::Seconds(60)), 1) << same_port.Log();
  EXPECT_THAT(same_port.Log(),
              HasSubstr("'" + address + "' is in use by another process"));
  // Refused before its state_dir was made (it used to write checkpoint 0
  // and an operator token there first).
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/other")) << same_port.Log();
  // The same for the HTTP listener's port.
  const std::string http = absl::StrCat("127.0.0.1:", WaitForHttpPort());
  Process same_http(
      CoordinatorArgv({"--listen_address=127.0.0.1:0", "--http_address=" + http,
                       "--state_dir=" + dir_ + "/other"}),
      dir_ + "/same_http.log");
  EXPECT_EQ(same_http.Wait(absl::Seconds(60)), 1) << same_http.Log();
  EXPECT_THAT(same_http.Log(),
              HasSubstr("set --http_address, or stop the other one): '" + http +
                        "' is in use"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/other")) << same_http.Log();
  EXPECT_TRUE(first->running());
  EXPECT_EQ(StatusVersion(port, CertDir() + "/ca.pem", OperatorTokenPath()), 0)
      << first->Log();
}

TEST_F(FederationTest, Sigterm_WithParkedCallsAndRoundInProgress_ExitsClean) {
  int port;
  // Rounds need all 3 agents; agent 3 trains for ever, so a round stays in
  // progress with 2 of 3 reported and the others parked in long polls.
  auto coordinator = StartCoordinator(
      {"--rounds=50", "--strategy.count=3", "--strategy.min_fit_agents=2",
       "--strategy.min_available_agents=3", "--poll_wait_ms=30000",
       "--agent_timeout_ms=60000"},
      &port);
  auto a1 = StartAgent(1, port);
  auto a2 = StartAgent(2, port);
  auto a3 = StartAgent(3, port, {"--profile.compute_slowdown=100000"});
  ASSERT_TRUE(WaitFor(
      [&] {
        return LogHas(*a1, "submitted") && LogHas(*a2, "submitted") &&
               LogHas(*coordinator, "round 1 started");
      },
      absl::Seconds(60)))
      << coordinator->Log();
  absl::SleepFor(absl::Milliseconds(500));  // Agents 1 and 2 park a poll.
  const absl::Time sent = absl::Now();
  coordinator->Signal(SIGTERM);
  // "Within a few seconds": a bound far from any machine's speed, and far
  // below the 30 s the parked polls would otherwise hold the server.
  const std::optional<int> code = coordinator->Wait(absl::Seconds(15));
  ASSERT_TRUE(code.has_value()) << "SIGTERM did not stop the coordinator\n"
                                << coordinator->Log();
  EXPECT_EQ(*code, 0) << coordinator->Log();
  EXPECT_LT(absl::Now() - sent, absl::Seconds(15));
  const std::string log = coordinator->Log();
  // The round in progress had its quorum: it was finished, not lost.
  EXPECT_THAT(log, HasSubstr("round 1: closed early"));
  EXPECT_THAT(log, HasSubstr("round 1 completed: 2 agents"));
  auto rows = History();
  ASSERT_EQ(rows.size(), 1u) << log;
  EXPECT_EQ(Number(rows[0], "num_agents"), 2);
  EXPECT_EQ(Number(rows[0], "num_failed"), 1);
  // Its checkpoint is on disk, verifies, and holds version 1.
  Process inspect({kBinaryDir + "/server/fedge", "inspect",
                   dir_ + "/coordinator/checkpoints/ckpt-00000001.fedge"},
                  dir_ + "/inspect.log");
  ASSERT_EQ(inspect.Wait(absl::Seconds(30)), 0) << inspect.Log();
  EXPECT_THAT(inspect.Log(),
              HasSubstr("checkpoint: model version 1, next round 2, 1 rounds "
                        "completed"));
  EXPECT_THAT(inspect.Log(), HasSubstr("fc1.weight float32[200,784]"));
}

TEST_F(FederationTest, HungEvaluator_KilledAndRestarted_FederationGoesOn) {
  // An evaluator that starts, reads everything and never answers (its
  // stdout stays open as fd 3).
  const std::string fake = dir_ + "/hung-evaluator.sh";
  WriteFile(fake,
            "#!/bin/sh\necho \"ready hung evaluator\"\n"
            "exec 3>&1\nexec cat >/dev/null\n",
            true);
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=3", "--evaluator_path=" + fake, "--eval_timeout_ms=1000"},
      &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_EQ(coordinator->Wait(absl::Seconds(120)), 0) << coordinator->Log();
  const std::string log = coordinator->Log();
  EXPECT_THAT(log, HasSubstr("evaluation failed, recorded without accuracy"));
  EXPECT_THAT(log, HasSubstr("did not answer within 1s (eval_timeout_ms)"));
  EXPECT_THAT(log, HasSubstr("restarting the evaluator"));
  auto rows = History();
  ASSERT_EQ(rows.size(), 3u) << log;
  for (const auto& row : rows) {
    EXPECT_EQ(row.at("test_accuracy"), "");  // Recorded without accuracy.
    EXPECT_EQ(Number(row, "num_agents"), 3);
  }
}

TEST_F(FederationTest, CrashingEvaluator_RoundsRecordedWithoutAccuracy) {
  // Starts, then dies as soon as it is asked anything.
  const std::string fake = dir_ + "/crashing-evaluator.sh";
  WriteFile(fake, "#!/bin/sh\necho \"ready crashing evaluator\"\nexit 3\n",
            true);
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=2", "--evaluator_path=" + fake, "--eval_timeout_ms=5000"},
      &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_EQ(coordinator->Wait(absl::Seconds(120)), 0) << coordinator->Log();
  EXPECT_THAT(coordinator->Log(), HasSubstr("the evaluator died"));
  auto rows = History();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].at("test_accuracy"), "");
}

TEST_F(FederationTest, FullDisk_ExitsNonZeroNamingThePath_NothingCorrupt) {
  // The checkpoints live on a 3 MB tmpfs of a private mount namespace: the
  // initial checkpoint and those of rounds 1 and 2 fit (0.8 MB each), the
  // temporary file of round 3 does not.
  const std::string state = dir_ + "/coordinator";
  const std::string ckpts = state + "/checkpoints";
  std::vector<std::string> argv = CoordinatorArgv(
      {"--rounds=10", "--keep_checkpoints=10", "--state_dir=" + state});
  std::vector<std::string> quoted;
  for (const std::string& a : argv) quoted.push_back("'" + a + "'");
  const std::string script =
      absl::StrCat("mkdir -p ", ckpts, " && mount -t tmpfs -o size=3m tmpfs ",
                   ckpts, " || exit 99\n", absl::StrJoin(quoted, " "), "\n",
                   "echo \"coordinator exit code $?\"\n", "for f in ", ckpts,
                   "/*; do echo \"file $f\"; ", kBinaryDir,
                   "/server/fedge inspect \"$f\" | head -1; done\n");
  int port;
  auto coordinator =
      StartCoordinatorProcess({"/usr/bin/unshare", "--user", "--map-root-user",
                               "--mount", "sh", "-c", script},
                              &port, "coordinator", state);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  // Promptly: the coordinator does not hang on its parked calls.
  ASSERT_TRUE(coordinator->Wait(absl::Seconds(90)).has_value())
      << coordinator->Log();
  const std::string log = coordinator->Log();
  ASSERT_THAT(log, Not(HasSubstr("exit 99"))) << "cannot mount a tmpfs";
  EXPECT_THAT(log, HasSubstr("coordinator exit code 1"));
  EXPECT_THAT(log, HasSubstr("cannot write the checkpoint"));
  EXPECT_THAT(log, HasSubstr(ckpts));
  EXPECT_THAT(log, HasSubstr("No space left on device"));
  // Every file left verifies; no temporary file is left behind.
  EXPECT_THAT(log, HasSubstr("checkpoint: model version 2"));
  EXPECT_THAT(log, Not(HasSubstr("file " + ckpts + "/ckpt-00000003")));
  EXPECT_THAT(log, Not(HasSubstr("fedge: ")));  // No inspect error.
  // Rounds in the history are exactly those checkpointed.
  EXPECT_EQ(History().size(), 2u) << log;
}

TEST_F(FederationTest, SigkillAfterNewVersion_ResumesAtOrAboveIt) {
  // A 40 MB model, so that writing a checkpoint takes a while: a version
  // seen by anyone must survive a SIGKILL at once after.
  const std::vector<std::string> flags = {"--rounds=3",
                                          "--model.architecture=mlp",
                                          "--model.hidden_units=2800",
                                          "--model.hidden_units=2800",
                                          "--train.epochs=1",
                                          "--strategy.count=2",
                                          "--strategy.min_available_agents=2",
                                          "--max_update_bytes=100000000"};
  const std::string ca = CertDir() + "/ca.pem";
  int port;
  auto coordinator = StartCoordinator(flags, &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 2; ++i) {
    agents.push_back(StartAgent(i, port, {"--data.max_train_examples=50"}));
  }
  int64_t seen = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        seen = std::max(seen, StatusVersion(port, ca, OperatorTokenPath()));
        return seen >= 1;
      },
      absl::Seconds(120)))
      << coordinator->Log();
  coordinator->Signal(SIGKILL);  // At once after version `seen` appeared.
  coordinator->Wait(absl::Seconds(10));
  int port2;
  auto restarted = StartCoordinator(flags, &port2, "coordinator-restarted");
  const std::string log = restarted->Log();
  const size_t at = log.find("resumed from checkpoint: model version ");
  ASSERT_NE(at, std::string::npos) << log;
  int64_t resumed = -1;
  absl::SimpleAtoi(log.substr(at + 39, log.find(' ', at + 39) - at - 39),
                   &resumed);
  EXPECT_GE(resumed, seen) << "announced version " << seen << " was lost:\n"
                           << log;
}

TEST_F(FederationTest, WallClockSteps_DoNotChangeWhenRoundsClose) {
  // The coordinator runs under libfaketime: its wall clock is moved by
  // rewriting a file, its monotonic clock is left alone.
  const std::string lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
  ASSERT_TRUE(std::ifstream(lib).good())
      << lib << " is missing: apt-get install faketime";
  const std::string offset = dir_ + "/faketime";
  WriteFile(offset, "+0\n");
  std::vector<std::string> argv = {
      "/usr/bin/env", "LD_PRELOAD=" + lib, "FAKETIME_TIMESTAMP_FILE=" + offset,
      "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"};
  for (const std::string& a : CoordinatorArgv(
           {"--rounds=2", "--strategy.count=2",
            "--strategy.min_available_agents=2", "--strategy.min_fit_agents=1",
            "--strategy.round_deadline_ms=4000",
            "--agent_timeout_ms=120000"})) {
    argv.push_back(a);
  }
  int port;
  auto coordinator = StartCoordinatorProcess(argv, &port, "coordinator");
  auto a1 = StartAgent(1, port);
  auto a2 = StartAgent(2, port);
  // Agent 2 freezes once it has joined (a frozen device, SIGSTOP), so each
  // round can only close at its 4 s deadline.
  ASSERT_TRUE(
      WaitFor([&] { return LogHas(*a2, "joined as"); }, absl::Seconds(60)));
  a2->Signal(SIGSTOP);
  ASSERT_TRUE(WaitFor([&] { return LogHas(*coordinator, "round 1 started"); },
                      absl::Seconds(60)))
      << coordinator->Log();
  WriteFile(offset, "+3600\n");  // An hour forward: must not close it early.
  ASSERT_TRUE(WaitFor([&] { return LogHas(*coordinator, "round 2 started"); },
                      absl::Seconds(60)))
      << coordinator->Log();
  WriteFile(offset, "-3600\n");  // An hour back: must not stall it.
  const std::optional<int> code = coordinator->Wait(absl::Seconds(60));
  a2->Signal(SIGCONT);
  ASSERT_EQ(code, 0) << coordinator->Log();
  auto rows = History();
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& row : rows) {
    EXPECT_EQ(Number(row, "num_agents"), 1);
    // Each lasted its deadline, measured on the monotonic clock.
    EXPECT_GE(Number(row, "round_seconds"), 3.9);
    EXPECT_LT(Number(row, "round_seconds"), 60);
  }
}

TEST_F(FederationTest, SlowLink_BusyAgentStaysLiveAndContributes) {
  // A 4.5 MB model over a 1 MB/s link: fetching and uploading each take
  // longer than agent_timeout_ms; heartbeats keep the agent in its round.
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--model.architecture=mlp", "--model.hidden_units=1400",
       "--agent_timeout_ms=2000", "--heartbeat_interval_ms=500",
       "--strategy.count=2", "--strategy.min_available_agents=2",
       "--strategy.min_fit_agents=2"},
      &port);
  auto fast = StartAgent(1, port, {"--data.max_train_examples=100"});
  auto slow = StartAgent(2, port,
                         {"--data.max_train_examples=100",
                          "--profile.bandwidth_bytes_per_second=1000000"});
  ASSERT_EQ(coordinator->Wait(absl::Seconds(120)), 0) << coordinator->Log();
  EXPECT_THAT(coordinator->Log(), Not(HasSubstr("timed out")));
  auto rows = History();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(Number(rows[0], "num_agents"), 2) << coordinator->Log();
  EXPECT_THAT(slow->Log(), HasSubstr("submitted"));
}

TEST_F(FederationTest, CoordinatorRestart_AgentsRejoinWithinTheirBackoff) {
  int port;
  auto coordinator = StartCoordinator({"--rounds=100"}, &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_TRUE(WaitForRounds(1, absl::Seconds(60))) << coordinator->Log();
  coordinator->Signal(SIGKILL);
  coordinator->Wait(absl::Seconds(10));
  absl::SleepFor(absl::Seconds(3));  // Agents retry meanwhile.
  int port2;
  const absl::Time restart = absl::Now();
  auto restarted = StartCoordinator(
      {"--rounds=100", absl::StrCat("--listen_address=127.0.0.1:", port)},
      &port2, "coordinator-restarted");
  ASSERT_EQ(port2, port);
  // Agents back off at most max_backoff_ms (500 ms in these tests); before
  // gRPC's own reconnect backoff was bounded they took ~20 s.
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string log = restarted->Log();
        return log.find("agent agent-1 joined") != std::string::npos &&
               log.find("agent agent-2 joined") != std::string::npos &&
               log.find("agent agent-3 joined") != std::string::npos;
      },
      absl::Seconds(60)))
      << restarted->Log();
  EXPECT_LT(absl::Now() - restart, absl::Seconds(10)) << restarted->Log();
}

// An agent stopped (SIGTERM) while its coordinator hangs (SIGSTOP: the
// connection stays up, nothing answers) leaves within its bound: Leave's
// deadline is leave_timeout (2 s), no longer call_timeout (30 s: it took
// 26 s to exit).
TEST_F(FederationTest, CoordinatorHung_AgentStopsWithinItsLeaveBound) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--strategy.min_available_agents=5"}, &port);
  auto agent = StartAgent(1, port);
  ASSERT_TRUE(
      WaitFor([&] { return LogHas(*agent, "joined as"); }, absl::Seconds(60)))
      << agent->Log();
  coordinator->Signal(SIGSTOP);
  agent->Signal(SIGTERM);
  const std::optional<int> code = agent->Wait(absl::Seconds(10));  // ~2 s.
  coordinator->Signal(SIGCONT);
  EXPECT_EQ(code, 0) << agent->Log();
  EXPECT_THAT(agent->Log(), HasSubstr("leave failed: DEADLINE_EXCEEDED"));
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(coordinator->Wait(absl::Seconds(30)), 0) << coordinator->Log();
}

// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), size) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

// Runs `agent` to its end (at most 60 s): how long it took, or nullopt if
// it did not end or exited 0.
std::optional<absl::Duration> FailsAfter(Process& agent,
                                         const absl::Time start) {
  const std::optional<int> code = agent.Wait(absl::Seconds(60));
  if (!code.has_value() || *code == 0) return std::nullopt;
  return absl::Now() - start;
}

// give_up_after_ms is honoured and the real cause named (each call used to
// wait for the channel until its 30 s deadline and report only that).
TEST_F(FederationTest, NothingListening_AgentGivesUpOnTimeNamingTheCause) {
  const int port = ClosedPort();
  ASSERT_GT(port, 0);
  const absl::Time start = absl::Now();
  auto agent = StartAgent(1, port, {"--give_up_after_ms=2000"});
  const std::optional<absl::Duration> took = FailsAfter(*agent, start);
  ASSERT_TRUE(took.has_value()) << agent->Log();
  EXPECT_LT(*took, absl::Seconds(15)) << agent->Log();  // Not 30 s.
  EXPECT_THAT(agent->Log(), HasSubstr("gave up")) << agent->Log();
  EXPECT_THAT(agent->Log(), HasSubstr("Connection refused")) << agent->Log();
}

// TLS mistakes fail the handshake: the agent says so at its first attempt
// and gives up on time, instead of waiting 30 s to say "Deadline Exceeded".
TEST_F(FederationTest, TlsMismatch_AgentGivesUpOnTimeNamingTheHandshake) {
  int port;
  auto coordinator = StartCoordinator({"--rounds=1"}, &port);
  const absl::Time start = absl::Now();
  auto plain =
      StartAgent(1, port, {"--give_up_after_ms=2000", "--tls.insecure=true"});
  auto wrong_ca =
      StartAgent(2, port,
                 {"--give_up_after_ms=2000",
                  "--tls.ca_path=" + CertDir() + "/foreign/ca.pem"});
  const std::optional<absl::Duration> plain_took = FailsAfter(*plain, start);
  const std::optional<absl::Duration> wrong_ca_took =
      FailsAfter(*wrong_ca, start);
  ASSERT_TRUE(plain_took.has_value()) << plain->Log();
  ASSERT_TRUE(wrong_ca_took.has_value()) << wrong_ca->Log();
  EXPECT_LT(*plain_took, absl::Seconds(15)) << plain->Log();
  EXPECT_LT(*wrong_ca_took, absl::Seconds(15)) << wrong_ca->Log();
  // The coordinator closes a plain-text connection without a word.
  EXPECT_THAT(plain->Log(), HasSubstr("Socket closed")) << plain->Log();
  EXPECT_THAT(plain->Log(), HasSubstr("does it expect TLS")) << plain->Log();
  EXPECT_THAT(wrong_ca->Log(), HasSubstr("Ssl handshake failed"))
      << wrong_ca->Log();
  EXPECT_THAT(wrong_ca->Log(), HasSubstr("certificate verify failed"))
      << wrong_ca->Log();
}

}  // namespace
}  // namespace fedge::testing
