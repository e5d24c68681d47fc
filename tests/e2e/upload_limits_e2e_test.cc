// The upload limits and certificate revocation of issue #9 on the real
// fedge-coordinator (TLS, 127.0.0.1), with hand-driven hostile clients
// speaking the real protocol next to real fedge-agents:
//   - silent uploads cannot keep an honest agent's update out of its round
//     (upload_idle_timeout_ms, max_uploads_per_agent), and the honest agent
//     stays live while it waits for a slot;
//   - an upload frozen mid-stream holds its slot no longer than its round;
//   - a certificate revoked while the coordinator runs (tls.crl_path,
//     deploy/make-certs.sh --revoke) is refused at its next call, on its
//     existing connection, while the others keep training.
#include <grpcpp/grpcpp.h>

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/checksum.h"
#include "common/model_codec.h"
#include "common/net/credentials.h"
#include "common/net/grpc_status.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"
#include "tests/e2e/raw_client.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

std::chrono::system_clock::time_point In(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

// A client of its own (one connection) that joins and can keep its session
// alive from a thread, as a hostile device can.
class RawAgent : public RawClient {
 public:
  RawAgent(int port, const v1::TlsConfig& tls) : RawClient(port, tls) {}
  ~RawAgent() {
    stop_heartbeats_ = true;
    if (heartbeats_.joinable()) heartbeats_.join();
  }

  void StartHeartbeats() {
    heartbeats_ = std::thread([this] {
      while (!stop_heartbeats_) {
        v1::HeartbeatRequest req;
        req.set_session_token(token_);
        v1::HeartbeatResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(In(absl::Seconds(2)));
        stub_->Heartbeat(&ctx, req, &resp);
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
      }
    });
  }

  // An upload for `task` that sends its metadata and the first `send_bytes`
  // of `bytes`, then nothing more (it neither finishes nor hangs up) until
  // the coordinator ends it: that status. Bounded by `limit`.
  absl::Status StalledUpload(const v1::TrainTask& task, const std::string& id,
                             const std::string& bytes, size_t send_bytes,
                             absl::Duration limit,
                             absl::Notification* sent = nullptr) {
    v1::UpdateMetadata m;
    m.set_session_token(token_);
    m.set_round(task.round());
    m.set_base_version(task.model_version());
    m.set_upload_id(id);
    m.set_num_examples(100);
    m.set_num_steps(10);
    m.set_total_size_bytes(bytes.size());
    m.set_xxh3_128(ToHex(Xxh3_128Of(bytes)));
    grpc::ClientContext ctx;
    ctx.set_deadline(In(limit));
    v1::SubmitUpdateResponse resp;
    auto writer = stub_->SubmitUpdate(&ctx, &resp);
    v1::UpdateChunk first;
    *first.mutable_metadata() = m;
    writer->Write(first);
    if (send_bytes > 0) {
      v1::UpdateChunk c;
      c.set_data(bytes.substr(0, send_bytes));
      writer->Write(c);
    }
    if (sent != nullptr) sent->Notify();
    // Silent from here: Finish waits for the coordinator's answer.
    return FromGrpcStatus(writer->Finish());
  }

 private:
  std::thread heartbeats_;
  std::atomic<bool> stop_heartbeats_{false};
};


// A zero delta shaped like `model`, encoded.
std::string ZeroUpdate(const ModelState& model) {
  return EncodeModel(Filled(model, 0.0f));
}

// Position of the first `needle` in `log` at or after `from` (npos: none).
size_t Find(const std::string& log, const std::string& needle,
            size_t from = 0) {
  return log.find(needle, from);
}

class UploadLimitsTest : public FederationTest {
 protected:
  // The coordinator's /metrics (HTTPS, its certificate checked against the
  // CA), by curl; "" on failure.
  std::string Metrics() const {
    const int port = WaitForHttpPort();
    std::string out;
    FILE* p = popen(absl::StrCat("curl -sS --max-time 10 --cacert ", CertDir(),
                                 "/ca.pem https://localhost:", port,
                                 "/metrics 2>&1")
                        .c_str(),
                    "r");
    if (p == nullptr) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
    return out;
  }
  static v1::TlsConfig ServerOnlyTls() {
    v1::TlsConfig tls;
    tls.set_ca_path(CertDir() + "/ca.pem");
    return tls;
  }
};

// Issue #9: "one agent opening many uploads that never send: with 2 upload
// slots ... rounds were abandoned with 0 reported". Two hostile agents hold
// both slots with silent uploads (and open more as soon as theirs end); the
// honest agent's update still makes the round, after waiting for a slot
// longer than agent_timeout_ms without being dropped.
TEST_F(UploadLimitsTest, SilentUploads_HonestUpdateStillAccepted) {
  int port = 0;
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--strategy.count=3",
       "--strategy.min_available_agents=3", "--strategy.min_fit_agents=1",
       "--strategy.round_deadline_ms=20000", "--max_concurrent_uploads=2",
       "--upload_idle_timeout_ms=5000", "--max_uploads_per_agent=1"},
      &port);
  ASSERT_NE(port, 0) << coordinator->Log();
  RawAgent h1(port, ServerOnlyTls()), h2(port, ServerOnlyTls());
  ASSERT_TRUE(h1.Join("hostile-1").ok());
  ASSERT_TRUE(h2.Join("hostile-2").ok());
  h1.StartHeartbeats();
  h2.StartHeartbeats();
  // The honest agent, slowed down so that the hostile uploads come first.
  auto honest =
      StartAgent(1, port, {"--profile.compute_slowdown=3"});
  auto task1 = h1.WaitForTask();
  auto task2 = h2.WaitForTask();
  ASSERT_TRUE(task1.has_value() && task2.has_value()) << coordinator->Log();
  auto model = h1.Fetch(task1->model_version());
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string bytes = ZeroUpdate(*model);

  // Each hostile agent keeps a silent upload open, opening a new one as
  // soon as the coordinator ends the last (at most 4 each, 40 s).
  std::vector<absl::Status> ended1, ended2;
  absl::Notification first1, first2;
  auto hold = [&bytes](RawAgent& a, const v1::TrainTask& t,
                       std::vector<absl::Status>* ended,
                       absl::Notification* first) {
    for (int i = 0; i < 4; ++i) {
      ended->push_back(a.StalledUpload(t, absl::StrCat("silent-", i), bytes,
                                       0, absl::Seconds(10),
                                       i == 0 ? first : nullptr));
      if (absl::IsAborted(ended->back())) break;  // The round closed.
    }
  };
  std::thread t1(hold, std::ref(h1), *task1, &ended1, &first1);
  std::thread t2(hold, std::ref(h2), *task2, &ended2, &first2);
  first1.WaitForNotificationWithTimeout(absl::Seconds(10));
  first2.WaitForNotificationWithTimeout(absl::Seconds(10));

  // A second upload of the same agent at the same time is refused (which
  // of the two reached the coordinator first is not known: one is refused,
  // the other held its slot until it idled).
  absl::Status second = h1.StalledUpload(*task1, "second", bytes, 0,
                                         absl::Seconds(10));

  ASSERT_TRUE(WaitForRounds(1, absl::Seconds(60))) << coordinator->Log();
  t1.join();
  t2.join();
  auto rows = History();
  EXPECT_EQ(rows[0]["num_agents"], "1") << coordinator->Log();  // The honest.
  // The silent uploads were ended for idling, naming the field.
  ASSERT_FALSE(ended1.empty());
  const bool second_refused = absl::IsResourceExhausted(second);
  const absl::Status& refused = second_refused ? second : ended1[0];
  const absl::Status& idled = second_refused ? ended1[0] : second;
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("max_uploads_per_agent is 1"));
  EXPECT_EQ(idled.code(), absl::StatusCode::kDeadlineExceeded) << idled;
  EXPECT_THAT(std::string(idled.message()),
              HasSubstr("upload_idle_timeout_ms = 5000"));
  ASSERT_FALSE(ended2.empty());
  EXPECT_EQ(ended2[0].code(), absl::StatusCode::kDeadlineExceeded) << ended2[0];
  // The honest update was accepted (after waiting for a slot while both
  // were held), and the agent was never dropped meanwhile.
  const std::string log = coordinator->Log();
  const size_t idle = Find(log, "refused cancelled from hostile-");
  ASSERT_NE(idle, std::string::npos) << log;
  EXPECT_THAT(log.substr(idle), HasSubstr("upload_idle_timeout_ms"));
  EXPECT_THAT(log, HasSubstr("refused refused from hostile-1: "
                             "max_uploads_per_agent"));
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/agent-1.log"),
              HasSubstr("submitted in"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("agent-1 dropped")));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("agent agent-1 timed out")));
  // Counted with their reasons.
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, ::testing::ContainsRegex(
                           "fedge_updates_total\\{result=\"cancelled\",reason="
                           "\"upload_idle_timeout_ms\"\\} [1-9]"))
      << metrics;
  EXPECT_THAT(metrics, ::testing::ContainsRegex(
                           "fedge_updates_total\\{result=\"refused\",reason="
                           "\"max_uploads_per_agent\"\\} [1-9]"));
  honest->Signal(SIGTERM);
  honest->Wait(absl::Seconds(20));
}

// Issue #9: "a frozen device (SIGSTOP) held a slot about 80 s after its
// round closed and the next round's honest update was lost". One upload
// slot; a client stops sending half-way through its update (and keeps its
// session alive): its upload is ended when round 1 closes, and the honest
// agent's round-2 update is accepted, long before upload_idle_timeout_ms.
TEST_F(UploadLimitsTest, UploadFrozenMidStream_EndsWithItsRound) {
  int port = 0;
  auto coordinator = StartCoordinator(
      {"--rounds=2", "--strategy.count=2",
       "--strategy.min_available_agents=2", "--strategy.min_fit_agents=1",
       "--strategy.round_deadline_ms=8000", "--max_concurrent_uploads=1",
       "--upload_idle_timeout_ms=300000"},
      &port);
  ASSERT_NE(port, 0) << coordinator->Log();
  RawAgent frozen(port, ServerOnlyTls());
  ASSERT_TRUE(frozen.Join("frozen").ok());
  frozen.StartHeartbeats();
  auto honest = StartAgent(1, port, {"--profile.compute_slowdown=3"});
  auto task = frozen.WaitForTask();
  ASSERT_TRUE(task.has_value()) << coordinator->Log();
  auto model = frozen.Fetch(task->model_version());
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string bytes = ZeroUpdate(*model);
  const absl::Time start = absl::Now();
  absl::Status ended = frozen.StalledUpload(*task, "frozen-1", bytes,
                                            bytes.size() / 2,
                                            absl::Seconds(120));
  const absl::Duration held = absl::Now() - start;
  EXPECT_EQ(ended.code(), absl::StatusCode::kAborted) << ended;
  EXPECT_THAT(std::string(ended.message()),
              HasSubstr(absl::StrCat("round ", task->round(),
                                     " closed before this upload finished")));
  EXPECT_LT(held, absl::Seconds(60));  // Its round's 8 s, not 300 s.
  ASSERT_TRUE(WaitForRounds(2, absl::Seconds(60))) << coordinator->Log();
  auto rows = History();
  EXPECT_EQ(rows[1]["round"], "2");
  EXPECT_EQ(rows[1]["num_agents"], "1") << coordinator->Log();
  EXPECT_THAT(coordinator->Log(), HasSubstr("refused cancelled from frozen: "
                                            "round_closed"));
  EXPECT_THAT(Metrics(), ::testing::ContainsRegex(
                             "fedge_updates_total\\{result=\"cancelled\","
                             "reason=\"round_closed\"\\} [1-9]"));
  honest->Signal(SIGTERM);
  honest->Wait(absl::Seconds(20));
}

// A stream that never sends even its metadata is ended too (it would hold
// its call's memory for good otherwise).
TEST_F(UploadLimitsTest, StreamWithoutMetadata_EndedAfterIdleTimeout) {
  int port = 0;
  auto coordinator = StartCoordinator({"--upload_idle_timeout_ms=1000"}, &port);
  ASSERT_NE(port, 0) << coordinator->Log();
  auto creds = MakeChannelCredentials(ServerOnlyTls());
  ASSERT_TRUE(creds.ok());
  auto stub = v1::Federation::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", port), *creds,
      MakeChannelArguments(ServerOnlyTls(), 0)));
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(30)));
  v1::SubmitUpdateResponse resp;
  auto writer = stub->SubmitUpdate(&ctx, &resp);  // Then silence.
  const absl::Status s = FromGrpcStatus(writer->Finish());
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("no metadata"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("(upload_idle_timeout_ms = 1000)"));
}

// Issue #9: "Certificate revocation: ... a revoked agent is refused at its
// next call." Mutual TLS, tls.crl_path from deploy/make-certs.sh; agent-2
// (a real fedge-agent) and agent-3 (a client holding one connection open)
// are revoked while the coordinator runs: both are refused at their next
// call, agent-3 on the connection it opened before; agent-1 keeps training.
TEST_F(UploadLimitsTest, CertificateRevokedWhileRunning_RefusedOthersTrain) {
  const std::string certs = dir_ + "/certs";
  ASSERT_EQ(std::system(("cp -r " + CertDir() + " " + certs).c_str()), 0);
  int port = 0;
  auto coordinator = StartCoordinator(
      {"--rounds=1000", "--strategy.count=3",
       "--strategy.min_available_agents=1", "--strategy.min_fit_agents=1",
       "--strategy.round_deadline_ms=5000", "--tls.require_client_cert=true",
       "--tls.ca_path=" + certs + "/ca.pem",
       "--tls.crl_path=" + certs + "/crl.pem",
       "--tls.crl_reload_interval_ms=200"},
      &port);
  ASSERT_NE(port, 0) << coordinator->Log();
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 2; ++i) {
    agents.push_back(StartAgent(
        i, port,
        {absl::StrCat("--tls.cert_path=", certs, "/agent-", i, ".pem"),
         absl::StrCat("--tls.key_path=", certs, "/agent-", i, ".key"),
         "--tls.ca_path=" + certs + "/ca.pem"}));
  }
  v1::TlsConfig tls3;
  tls3.set_ca_path(certs + "/ca.pem");
  tls3.set_cert_path(certs + "/agent-3.pem");
  tls3.set_key_path(certs + "/agent-3.key");
  RawAgent agent3(port, tls3);
  ASSERT_TRUE(agent3.Join("ignored").ok());
  ASSERT_TRUE(agent3.Heartbeat().ok());
  agent3.StartHeartbeats();  // Stays live (its own calls below check).
  ASSERT_TRUE(WaitForRounds(2, absl::Seconds(60))) << coordinator->Log();
  ASSERT_TRUE(WaitFor(
      [&] {
        return ReadFileOrEmpty(dir_ + "/agent-2.log").find("submitted in") !=
               std::string::npos;
      },
      absl::Seconds(60)));

  const std::string revoke = kSourceDir + "/deploy/make-certs.sh " + certs +
                             " --revoke agent-2 --revoke agent-3 >" + dir_ +
                             "/revoke.log 2>&1";
  ASSERT_EQ(std::system(revoke.c_str()), 0) << ReadFileOrEmpty(dir_ + "/revoke.log");
  // agent-3's next call, on its existing connection, is refused.
  absl::Status refused;
  EXPECT_TRUE(WaitFor(
      [&] {
        refused = agent3.Heartbeat();
        return !refused.ok();
      },
      absl::Seconds(10)));
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnauthenticated) << refused;
  EXPECT_THAT(std::string(refused.message()), HasSubstr("certificate serial "));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("(CN agent-3) is revoked"));
  // agent-2 (a real agent) is refused at its next call too.
  EXPECT_TRUE(WaitFor(
      [&] {
        return ReadFileOrEmpty(dir_ + "/agent-2.log")
                   .find("(CN agent-2) is revoked") != std::string::npos;
      },
      absl::Seconds(30)))
      << ReadFileOrEmpty(dir_ + "/agent-2.log");
  // agent-1 keeps training: three more rounds complete, with one agent.
  const size_t before = History().size();
  ASSERT_TRUE(WaitForRounds(before + 3, absl::Seconds(60))) << coordinator->Log();
  auto rows = History();
  EXPECT_EQ(rows[before + 2]["num_agents"], "1");
  EXPECT_THAT(coordinator->Log(),
              HasSubstr("certificate revocation list " + certs +
                        "/crl.pem reloaded: 2 revoked certificate(s)"));
  EXPECT_THAT(coordinator->Log(), HasSubstr("refused a call: certificate serial"));
  EXPECT_THAT(Metrics(), ::testing::ContainsRegex(
                             "fedge_revoked_certificate_calls_total [1-9]"));
  coordinator->Signal(SIGTERM);
  EXPECT_TRUE(coordinator->Wait(absl::Seconds(30)).has_value());
}

}  // namespace
}  // namespace fedge::testing
