// The coordinator's core, driven directly (no gRPC) with a FakeClock: what
// the gRPC adapters and the agents would do, call by call.
#include "server/coordinator.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/checksum.h"
#include "common/clock.h"
#include "common/fl_config.h"
#include "common/local_trainer.h"
#include "common/model_codec.h"
#include "common/model_signature.h"
#include "common/privacy_accountant.h"
#include "common/secagg/client.h"
#include "common/secagg_update.h"
#include "common/sha256.h"
#include "common/signing.h"
#include "common/strategy.h"
#include "common/tensor_buffer.h"
#include "common/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/checkpoint_store.h"
#include "tests/common/scratch_dir.h"
#include "tests/common/test_tensors.h"

namespace fedge {
namespace {

using testing::Floats;
using testing::Model;

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kAborted = absl::StatusCode::kAborted;
constexpr absl::StatusCode kAlreadyExists = absl::StatusCode::kAlreadyExists;
constexpr absl::StatusCode kUnauthenticated =
    absl::StatusCode::kUnauthenticated;
constexpr absl::StatusCode kUnavailable = absl::StatusCode::kUnavailable;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;
constexpr absl::StatusCode kFailedPrecondition =
    absl::StatusCode::kFailedPrecondition;

// Ticks until the published model version is `version`. A new model is
// published only once its checkpoint is durable, which a background thread
// writes in milliseconds: the wait is bounded by a number of ticks, not by
// time.
constexpr int kMaxTicks = 2'000'000;

// ---------------------------------------------------------------------------
// Models and updates.

std::vector<float> Values(const ModelState& m, const std::string& name) {
  const TensorBuffer* t = m.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  return std::vector<float>(t->floats().begin(), t->floats().end());
}

// A SCAFFOLD update: the delta, then its control-variate delta.
ModelState WithDc(const ModelState& delta, float w0, float w1, float b) {
  ModelState u = delta.Clone();
  u.Add(Floats("scaffold.dc/w", {w0, w1}));
  u.Add(Floats("scaffold.dc/b", {b}));
  return u;
}

// An evaluator that returns fixed metrics and records what it saw.
class FakeEvaluator : public LocalTrainer {
 public:
  struct Calls {
    absl::Mutex mu;
    std::vector<std::string> models ABSL_GUARDED_BY(mu);  // Encoded.
  };
  explicit FakeEvaluator(std::shared_ptr<Calls> calls)
      : calls_(std::move(calls)) {}
  absl::StatusOr<TrainOutput> Train(const ModelState&, const TrainPlan&,
                                    absl::Span<const int64_t>) override {
    return absl::UnimplementedError("an evaluator does not train");
  }
  absl::StatusOr<EvalMetrics> Evaluate(const ModelState& weights) override {
    absl::MutexLock lock(&calls_->mu);
    calls_->models.push_back(EncodeModel(weights));
    return EvalMetrics{100, 0.5, 0.75};
  }

 private:
  std::shared_ptr<Calls> calls_;
};

// ---------------------------------------------------------------------------
// The agents' side of the protocol.

struct Agent {
  std::string id;
  std::string token;
};

// What an upload says about itself; the overrides make malformed ones.
// Set fields with the chained setters: Sub().set_round(2).
struct Submission {
  int64_t round = 1;
  int64_t base_version = 0;
  std::string upload_id;  // Empty: "<agent>-<round>".
  int64_t num_examples = 10;
  int64_t num_steps = 1;
  double loss = 0;
  double train_seconds = 0;
  std::optional<int64_t> total_size_bytes;
  // The checksum: XXH3-128 of the bytes (as agents send) unless set; a set
  // sha256 replaces it (as older agents sent); both set send both.
  std::optional<std::string> xxh3_128;
  std::optional<std::string> sha256;
  std::optional<size_t> bytes_sent;  // Fewer bytes than encoded.

  Submission& set_round(int64_t v) {
    round = v;
    return *this;
  }
  Submission& set_base_version(int64_t v) {
    base_version = v;
    return *this;
  }
  Submission& set_upload_id(std::string v) {
    upload_id = std::move(v);
    return *this;
  }
  Submission& set_num_examples(int64_t v) {
    num_examples = v;
    return *this;
  }
  Submission& set_loss(double v) {
    loss = v;
    return *this;
  }
  Submission& set_train_seconds(double v) {
    train_seconds = v;
    return *this;
  }
  Submission& set_total_size_bytes(int64_t v) {
    total_size_bytes = v;
    return *this;
  }
  Submission& set_xxh3_128(std::string v) {
    xxh3_128 = std::move(v);
    return *this;
  }
  Submission& set_sha256(std::string v) {
    sha256 = std::move(v);
    return *this;
  }
  Submission& set_bytes_sent(size_t v) {
    bytes_sent = v;
    return *this;
  }
};
Submission Sub() { return Submission(); }

v1::UpdateMetadata Metadata(const Agent& agent, const std::string& bytes,
                            const Submission& s) {
  v1::UpdateMetadata m;
  m.set_session_token(agent.token);
  m.set_round(s.round);
  m.set_base_version(s.base_version);
  m.set_upload_id(s.upload_id.empty() ? absl::StrCat(agent.id, "-", s.round)
                                      : s.upload_id);
  m.set_num_examples(s.num_examples);
  m.set_num_steps(s.num_steps);
  m.mutable_metrics()->set_loss(s.loss);
  m.mutable_metrics()->set_train_seconds(s.train_seconds);
  m.set_total_size_bytes(s.total_size_bytes.value_or(bytes.size()));
  if (s.sha256.has_value()) m.set_sha256(*s.sha256);
  if (s.xxh3_128.has_value() || !s.sha256.has_value()) {
    m.set_xxh3_128(s.xxh3_128.value_or(ToHex(Xxh3_128Of(bytes))));
  }
  return m;
}

// BeginUpload; with free upload slots the callback runs at once.
absl::StatusOr<std::unique_ptr<Upload>> Begin(Coordinator& c,
                                              const v1::UpdateMetadata& m) {
  std::optional<absl::StatusOr<std::unique_ptr<Upload>>> got;
  c.BeginUpload(m, [&got](absl::StatusOr<std::unique_ptr<Upload>> upload) {
    got = std::move(upload);
  });
  if (!got.has_value()) return absl::InternalError("no upload slot");
  return *std::move(got);
}
absl::StatusOr<std::unique_ptr<Upload>> Begin(Coordinator& c,
                                              const Agent& agent,
                                              const std::string& bytes,
                                              const Submission& s) {
  return Begin(c, Metadata(agent, bytes, s));
}

// Feeds `bytes` in small chunks, then FinishUpload.
absl::StatusOr<v1::SubmitUpdateResponse> Complete(
    Coordinator& c, std::unique_ptr<Upload> upload, absl::string_view bytes) {
  for (size_t at = 0; at < bytes.size(); at += 7) {
    absl::Status fed = c.FeedUpload(*upload, bytes.substr(at, 7));
    if (!fed.ok()) return fed;
  }
  return c.FinishUpload(std::move(upload));
}

absl::StatusOr<v1::SubmitUpdateResponse> Submit(Coordinator& c,
                                                const Agent& agent,
                                                const ModelState& update,
                                                const Submission& s) {
  const std::string bytes = EncodeModel(update);
  absl::StatusOr<std::unique_ptr<Upload>> upload = Begin(c, agent, bytes, s);
  if (!upload.ok()) return upload.status();
  return Complete(
      c, *std::move(upload),
      absl::string_view(bytes).substr(0, s.bytes_sent.value_or(bytes.size())));
}

absl::StatusOr<v1::PollResponse> PollNow(Coordinator& c, const Agent& agent) {
  v1::PollRequest request;
  request.set_session_token(agent.token);
  request.set_no_wait(true);
  std::optional<absl::StatusOr<v1::PollResponse>> got;
  c.Poll(request, [&got](absl::StatusOr<v1::PollResponse> response) {
    got = std::move(response);
  });
  EXPECT_TRUE(got.has_value()) << "a no_wait poll is answered at once";
  if (!got.has_value()) return absl::InternalError("not answered");
  return *std::move(got);
}

// A long poll that may be parked: counts its answers.
struct ParkedPoll {
  absl::Mutex mu;
  int answers ABSL_GUARDED_BY(mu) = 0;
  std::optional<absl::StatusOr<v1::PollResponse>> response ABSL_GUARDED_BY(mu);

  void Start(Coordinator& c, const Agent& agent) {
    v1::PollRequest request;
    request.set_session_token(agent.token);
    c.Poll(request, [this](absl::StatusOr<v1::PollResponse> r) {
      absl::MutexLock lock(&mu);
      ++answers;
      response = std::move(r);
    });
  }
  int num_answers() {
    absl::MutexLock lock(&mu);
    return answers;
  }
  absl::StatusOr<v1::PollResponse> last() {
    absl::MutexLock lock(&mu);
    return response.value_or(absl::InternalError("not answered"));
  }
};

// ---------------------------------------------------------------------------
// The fixture: a fresh state directory and a FakeClock per test.

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            fedge::testing::ScratchDir::NameForCurrentTest("coordinator");
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string StateDir(const std::string& name = "state") const {
    return (root_ / name).string();
  }

  // Every joined agent trains (fraction 1); rounds start with 2 agents and
  // close at their 10 s deadline with 1 result; nobody times out unless a
  // test says so.
  v1::CoordinatorConfig Config(const std::string& strategy = "fedavg") const {
    v1::CoordinatorConfig c;
    c.set_state_dir(StateDir());
    c.set_rounds(3);
    c.set_seed(11);
    c.set_heartbeat_interval_ms(1000);
    c.set_agent_timeout_ms(600000);
    c.set_poll_wait_ms(1000);
    v1::StrategyConfig* s = c.mutable_strategy();
    s->set_name(strategy);
    s->set_fraction(1.0);
    s->set_min_available_agents(2);
    s->set_min_fit_agents(1);
    s->set_round_deadline_ms(10000);
    v1::TrainPlanConfig* t = c.mutable_train();
    t->set_epochs(2);
    t->set_batch_size(16);
    t->set_learning_rate(0.05);
    return c;
  }

  std::unique_ptr<Coordinator> Make(
      const v1::CoordinatorConfig& config,
      std::unique_ptr<LocalTrainer> evaluator = nullptr) {
    absl::StatusOr<std::unique_ptr<Coordinator>> c =
        Create(config, std::move(evaluator));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  absl::StatusOr<std::unique_ptr<Coordinator>> Create(
      const v1::CoordinatorConfig& config,
      std::unique_ptr<LocalTrainer> evaluator = nullptr) {
    CoordinatorOptions o;
    o.config = config;
    o.model_spec.set_architecture("logreg");
    o.initial_model = Model(1, 2, 0.5f);
    o.evaluator = std::move(evaluator);
    o.clock = &clock_;
    return Coordinator::Create(std::move(o));
  }

  Agent Join(Coordinator& c, const std::string& id, int64_t num_examples = 10,
             const std::string& device_class = "") {
    v1::JoinRequest request;
    request.set_agent_id(id);
    request.set_num_examples(num_examples);
    request.set_device_class(device_class);
    absl::StatusOr<v1::JoinResponse> r = c.Join(request, "");
    EXPECT_TRUE(r.ok()) << r.status();
    return {id, r.ok() ? r->session_token() : ""};
  }

  void Tick(Coordinator& c) { EXPECT_EQ(c.Tick(), absl::OkStatus()); }

  bool TickUntilVersion(Coordinator& c, int64_t version) {
    for (int i = 0; i < kMaxTicks; ++i) {
      if (c.GetStatus().model_version() == version) return true;
      EXPECT_EQ(c.Tick(), absl::OkStatus());
      std::this_thread::yield();
    }
    return c.GetStatus().model_version() == version;
  }

  // A 3-round federation of agents a and b whose first round completed
  // (model version 1, durable), paused: round 2 does not start.
  std::unique_ptr<Coordinator> PausedAfterRound1(Agent& a, Agent& b) {
    std::unique_ptr<Coordinator> c = Make(Config());
    a = Join(*c, "a");
    b = Join(*c, "b");
    Tick(*c);
    EXPECT_EQ(c->Pause("op"), absl::OkStatus());
    EXPECT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub()).ok());
    EXPECT_TRUE(Submit(*c, b, Model(1, 1, 1), Sub()).ok());
    EXPECT_TRUE(TickUntilVersion(*c, 1));
    EXPECT_EQ(c->Flush(), absl::OkStatus());
    return c;
  }

  // Agents a and b join and report round 1; version 1 is out and
  // persisted.
  void CompleteRound1(Coordinator& c) {
    const Agent a = Join(c, "a"), b = Join(c, "b");
    Tick(c);
    EXPECT_TRUE(Submit(c, a, Model(1, 1, 1), Sub()).ok());
    EXPECT_TRUE(Submit(c, b, Model(1, 1, 1), Sub()).ok());
    EXPECT_TRUE(TickUntilVersion(c, 1));
    EXPECT_EQ(c.Flush(), absl::OkStatus());
  }
  // PausedAfterRound1, resumed: round 2 is in progress.
  std::unique_ptr<Coordinator> InRound2(Agent& a, Agent& b) {
    std::unique_ptr<Coordinator> c = PausedAfterRound1(a, b);
    EXPECT_EQ(c->Resume("op"), absl::OkStatus());
    Tick(*c);
    EXPECT_EQ(c->GetStatus().state(), "IN_PROGRESS");
    return c;
  }
  // a and b report round 2 (on version 1) and version 2 is out.
  void BothReportRound2(Coordinator& c, const Agent& a, const Agent& b) {
    for (const Agent* agent : {&a, &b}) {
      EXPECT_TRUE(Submit(c, *agent, Model(1, 1, 1),
                         Sub().set_round(2).set_base_version(1))
                      .ok());
    }
    EXPECT_TRUE(TickUntilVersion(c, 2));
  }

  // The task of a selected agent.
  v1::TrainTask TaskOf(Coordinator& c, const Agent& agent) {
    absl::StatusOr<v1::PollResponse> r = PollNow(c, agent);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r.ok() && r->has_train()) << agent.id;
    return r.ok() ? r->train() : v1::TrainTask();
  }

  std::vector<std::vector<std::string>> History() const {
    std::ifstream in(StateDir() + "/history.csv");
    std::vector<std::vector<std::string>> lines;
    std::string line;
    while (std::getline(in, line)) {
      lines.push_back(absl::StrSplit(line, ','));
    }
    return lines;
  }

  std::string CheckpointPath(int64_t version,
                             const std::string& state = "state") const {
    char name[32];
    std::snprintf(name, sizeof(name), "ckpt-%08lld.fedge",
                  static_cast<long long>(version));
    return (root_ / state / "checkpoints" / name).string();
  }

  FakeClock clock_;
  fs::path root_;
};

// ---------------------------------------------------------------------------
// Joining and polling.

TEST_F(CoordinatorTest, Join_GivesASession) {
  std::unique_ptr<Coordinator> c = Make(Config());
  v1::JoinRequest request;
  request.set_agent_id("a");
  absl::StatusOr<v1::JoinResponse> first = c->Join(request, "");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->agent_id(), "a");
  EXPECT_FALSE(first->session_token().empty());
  EXPECT_EQ(first->heartbeat_interval_ms(), 1000);
  EXPECT_EQ(first->model().architecture(), "logreg");
  EXPECT_EQ(first->partition_index(), -1);  // No simulation mode.
  // A second join of the same agent gets another session and revokes the
  // first (one live session per agent).
  absl::StatusOr<v1::JoinResponse> again = c->Join(request, "");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->session_token(), first->session_token());
  EXPECT_TRUE(PollNow(*c, {"a", again->session_token()}).ok());
  EXPECT_EQ(PollNow(*c, {"a", first->session_token()}).status().code(),
            kUnauthenticated);
  v1::HeartbeatRequest old_hb;
  old_hb.set_session_token(first->session_token());
  EXPECT_EQ(c->Heartbeat(old_hb).code(), kUnauthenticated);
  EXPECT_EQ(c->GetStatus().num_agents(), 1);
  // A verified identity overrides the id the agent chose.
  absl::StatusOr<v1::JoinResponse> cert = c->Join(request, "cert-name");
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->agent_id(), "cert-name");

  request.set_agent_id("");
  EXPECT_EQ(c->Join(request, "").status().code(), kInvalidArgument);
  // Ids are letters, digits, '.', '_', '-': nothing that forges a log line.
  for (const char* bad : {"a\nI1130 forged line", "a b", "a/b", "\x01"}) {
    request.set_agent_id(bad);
    absl::Status s = c->Join(request, "").status();
    EXPECT_EQ(s.code(), kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("letters, digits")) << bad;
  }
  request.set_agent_id(std::string(257, 'a'));
  EXPECT_EQ(c->Join(request, "").status().code(), kInvalidArgument);
  request.set_agent_id("host-1.example_2");
  EXPECT_TRUE(c->Join(request, "").ok());
  // A certificate whose CN is not a usable id is refused.
  EXPECT_EQ(c->Join(request, "bad cn").status().code(), kUnauthenticated);
  EXPECT_EQ(PollNow(*c, {"x", "no-such-token"}).status().code(),
            kUnauthenticated);
  v1::HeartbeatRequest hb;
  hb.set_session_token("no-such-token");
  EXPECT_EQ(c->Heartbeat(hb).code(), kUnauthenticated);
}

TEST_F(CoordinatorTest,
       MutualTls_CertificateWithoutCn_Refused_ClaimedIdNeverUsed) {
  v1::CoordinatorConfig config = Config();
  config.mutable_tls()->set_require_client_cert(true);
  std::unique_ptr<Coordinator> c = Make(config);
  v1::JoinRequest request;
  request.set_agent_id("agent-3");
  absl::Status s = c->Join(request, "").status();
  EXPECT_EQ(s.code(), kUnauthenticated);
  EXPECT_THAT(s.message(), HasSubstr("no common name"));
  EXPECT_EQ(c->GetStatus().num_agents(), 0);
  absl::StatusOr<v1::JoinResponse> cert = c->Join(request, "agent-1");
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(cert->agent_id(), "agent-1");
}

TEST_F(CoordinatorTest, Poll_GetsTaskWithPlan_OnceMinAvailableJoined) {
  v1::CoordinatorConfig config = Config();
  v1::DeviceClassPlanConfig* slow =
      config.mutable_strategy()->add_device_plans();
  slow->set_device_class("slow");
  slow->set_epochs(1);
  slow->set_max_steps(5);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a", 10, "slow");
  Tick(*c);
  absl::StatusOr<v1::PollResponse> wait = PollNow(*c, a);
  ASSERT_TRUE(wait.ok()) << wait.status();
  EXPECT_FALSE(wait->has_train());  // 1 of min_available_agents = 2.
  EXPECT_EQ(wait->action_case(), v1::PollResponse::kWaitRetryAfterMs);
  EXPECT_EQ(wait->latest_model_version(), 0);

  const Agent b = Join(*c, "b", 30);
  Tick(*c);
  EXPECT_EQ(c->GetStatus().state(), "IN_PROGRESS");
  EXPECT_EQ(c->GetStatus().num_selected(), 2);
  v1::TrainTask ta = TaskOf(*c, a);
  v1::TrainTask tb = TaskOf(*c, b);
  EXPECT_EQ(ta.round(), 1);
  EXPECT_EQ(ta.model_version(), 0);
  EXPECT_EQ(ta.model_sha256(), c->latest_model()->sha256_hex);
  EXPECT_EQ(ta.model_size_bytes(), EncodedSize(Model(1, 2, 0.5f)));
  EXPECT_EQ(ta.deadline_remaining_ms(), 10000);
  EXPECT_EQ(ta.client_algorithm(), "");
  // The strategy's plans: the config's, the agent's seed, its class.
  EXPECT_EQ(ta.plan().seed(), AgentPlanSeed(11, 1, "a"));
  EXPECT_EQ(tb.plan().seed(), AgentPlanSeed(11, 1, "b"));
  EXPECT_EQ(ta.plan().epochs(), 1);
  EXPECT_EQ(ta.plan().max_steps(), 5);
  EXPECT_EQ(tb.plan().epochs(), 2);
  EXPECT_EQ(tb.plan().max_steps(), 0);
  EXPECT_EQ(tb.plan().batch_size(), 16);
  EXPECT_DOUBLE_EQ(tb.plan().learning_rate(), 0.05);
  // The deadline counts down with the clock.
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(TaskOf(*c, a).deadline_remaining_ms(), 6000);
}

// ---------------------------------------------------------------------------
// Identity and access (docs/security.md).

absl::Status HeartbeatOf(Coordinator& c, const std::string& token) {
  v1::HeartbeatRequest hb;
  hb.set_session_token(token);
  return c.Heartbeat(hb);
}

TEST_F(CoordinatorTest, Sessions_OfDroppedAgentsEnd_AndSessionsExpire) {
  v1::CoordinatorConfig config = Config();
  config.set_agent_timeout_ms(10000);
  config.set_session_lifetime_ms(30000);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a");
  const Agent b = Join(*c, "b");
  // b keeps heartbeating; a goes silent and is dropped, and its session
  // ends with it (pruned within 5 s).
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(absl::Seconds(4));
    ASSERT_TRUE(HeartbeatOf(*c, b.token).ok());
    Tick(*c);
  }
  EXPECT_EQ(c->GetStatus().num_agents(), 1);
  absl::Status s = HeartbeatOf(*c, a.token);
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("unknown session"));
  // b's session ends 30 s after its join, live or not: it joins again.
  clock_.Advance(absl::Seconds(14));
  s = HeartbeatOf(*c, b.token);
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("expired"));
  EXPECT_TRUE(HeartbeatOf(*c, Join(*c, "b").token).ok());
}

TEST_F(CoordinatorTest, JoinTokens_EnrollThenAgentKey_RevokeEndsSessions) {
  v1::CoordinatorConfig config = Config();
  config.set_require_join_token(true);
  std::unique_ptr<Coordinator> c = Make(config);
  v1::JoinRequest request;
  request.set_agent_id("a");
  absl::StatusOr<v1::JoinResponse> none = c->Join(request, "", "ipv4:1.2.3.4");
  EXPECT_EQ(none.status().code(), kUnauthenticated);
  EXPECT_EQ(c->GetStatus().num_agents(), 0);

  v1::CreateJoinTokenRequest make;
  make.set_ttl_seconds(60);
  absl::StatusOr<v1::CreateJoinTokenResponse> token =
      c->CreateJoinToken(make, "tester");
  ASSERT_TRUE(token.ok()) << token.status();
  request.set_join_token(token->token());
  absl::StatusOr<v1::JoinResponse> enrolled = c->Join(request, "", "x");
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  ASSERT_FALSE(enrolled->agent_key().empty());
  // Later: the key alone, after the token expired.
  clock_.Advance(absl::Seconds(61));
  v1::JoinRequest with_key;
  with_key.set_agent_id("a");
  with_key.set_agent_key(enrolled->agent_key());
  absl::StatusOr<v1::JoinResponse> again = c->Join(with_key, "", "x");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->agent_key().empty());
  EXPECT_EQ(c->Join(request, "", "x").status().code(), kUnauthenticated)
      << "an expired token enrolled";
  EXPECT_EQ(c->ListJoinTokens().tokens(0).enrollments(), 1);

  // Revoking the token ends the session and the enrollment.
  absl::StatusOr<std::string> revoked =
      c->RevokeJoinToken(token->token_id(), "tester");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(HeartbeatOf(*c, again->session_token()).code(), kUnauthenticated);
  EXPECT_EQ(c->Join(with_key, "", "x").status().code(), kUnauthenticated);
  EXPECT_EQ(c->GetStatus().num_agents(), 0);
  const std::string audit = [&] {
    std::ifstream in(StateDir() + "/audit.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }();
  EXPECT_THAT(audit, HasSubstr("\"event\":\"join_refused\",\"agent\":\"a\""));
  EXPECT_THAT(audit, HasSubstr("\"event\":\"join\",\"agent\":\"a\""));
  EXPECT_THAT(audit, HasSubstr("\"action\":\"token_revoke\""));
  EXPECT_EQ(audit.find(enrolled->agent_key()), std::string::npos);
}

TEST_F(CoordinatorTest, MaxAgentsAndJoinRatePerSource) {
  v1::CoordinatorConfig config = Config();
  config.set_max_agents(2);
  config.set_join_rate_per_source(1);
  config.set_join_burst_per_source(3);
  std::unique_ptr<Coordinator> c = Make(config);
  v1::JoinRequest r;
  auto join = [&](const std::string& id, const std::string& source) {
    r.set_agent_id(id);
    return c->Join(r, "", source).status();
  };
  EXPECT_TRUE(join("a", "s1").ok());
  EXPECT_TRUE(join("b", "s1").ok());
  absl::Status full = join("c", "s2");
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.message()), HasSubstr("max_agents = 2"));
  EXPECT_TRUE(join("a", "s1").ok());    // Known ids may join again.
  absl::Status fast = join("a", "s1");  // The 4th from s1 at once.
  EXPECT_EQ(fast.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(fast.message()), HasSubstr("join_rate_per_source"));
  EXPECT_TRUE(join("a", "s3").ok());  // Other sources are not affected.
  clock_.Advance(absl::Seconds(1));   // One more token for s1.
  EXPECT_TRUE(join("a", "s1").ok());
}

TEST_F(CoordinatorTest, MutualTls_AnotherAgentsSession_PermissionDenied) {
  v1::CoordinatorConfig config = Config();
  config.mutable_tls()->set_require_client_cert(true);
  std::unique_ptr<Coordinator> c = Make(config);
  v1::JoinRequest r;
  absl::StatusOr<v1::JoinResponse> a = c->Join(r, "agent-a");
  absl::StatusOr<v1::JoinResponse> b = c->Join(r, "agent-b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(c->CheckCaller(a->session_token(), "agent-a", "Poll").ok());
  absl::Status s = c->CheckCaller(a->session_token(), "agent-b", "Poll");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  // Without mutual TLS a session is a bearer token (no identity to bind).
  std::unique_ptr<Coordinator> open = Make([&] {
    v1::CoordinatorConfig o = Config();
    o.set_state_dir(StateDir("open"));
    return o;
  }());
  absl::StatusOr<v1::JoinResponse> x = open->Join(r, "agent-x");
  EXPECT_TRUE(open->CheckCaller(x->session_token(), "", "Poll").ok());
}

TEST_F(CoordinatorTest, ParkedPoll_AnsweredWithTheTask_OrWaitAfterPollWait) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a");
  ParkedPoll parked;
  parked.Start(*c, a);
  Tick(*c);
  EXPECT_EQ(parked.num_answers(), 0);  // Parked: no round yet.
  const Agent b = Join(*c, "b");
  Tick(*c);  // Round 1 starts: the parked poll gets its task.
  ASSERT_EQ(parked.num_answers(), 1);
  ASSERT_TRUE(parked.last().ok());
  EXPECT_TRUE(parked.last()->has_train());
  EXPECT_EQ(parked.last()->train().round(), 1);

  // b reports; a poll of b then waits, and expires after poll_wait_ms.
  ASSERT_TRUE(Submit(*c, b, Model(0, 0, 0), Sub()).ok());
  ParkedPoll idle;
  idle.Start(*c, b);
  Tick(*c);
  EXPECT_EQ(idle.num_answers(), 0);
  clock_.Advance(absl::Milliseconds(999));
  Tick(*c);
  EXPECT_EQ(idle.num_answers(), 0);
  clock_.Advance(absl::Milliseconds(1));
  Tick(*c);
  ASSERT_EQ(idle.num_answers(), 1);
  ASSERT_TRUE(idle.last().ok());
  EXPECT_EQ(idle.last()->action_case(), v1::PollResponse::kWaitRetryAfterMs);
}

// ---------------------------------------------------------------------------
// Rounds.

TEST_F(CoordinatorTest, AllSelectedReport_RoundClosed_NextVersionPublished) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a"), b = Join(*c, "b", 30);
  Tick(*c);
  ASSERT_TRUE(
      Submit(*c, a, Model(1, 0, 2, 5),
             Sub().set_num_examples(10).set_loss(2).set_train_seconds(3))
          .ok());
  EXPECT_EQ(c->GetStatus().num_reported(), 1);
  ASSERT_TRUE(
      Submit(*c, b, Model(4, 3, -1, 7),
             Sub().set_num_examples(30).set_loss(1).set_train_seconds(5))
          .ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));

  // (10 [1, 0 | 2] + 30 [4, 3 | -1]) / 40 = [3.25, 2.25 | -0.25].
  std::shared_ptr<const PublishedModel> v1 = c->latest_model();
  EXPECT_EQ(v1->version, 1);
  EXPECT_THAT(Values(v1->model, "w"), ElementsAre(FloatEq(4.25f), 4.25f));
  EXPECT_THAT(Values(v1->model, "b"), ElementsAre(FloatEq(0.25f)));
  EXPECT_EQ(v1->model.Find("count")->int64s()[0], 7);
  EXPECT_EQ(v1->sha256_hex, ToHex(ModelDigest(v1->model)));
  EXPECT_FALSE(v1->with_extras.has_value());

  // Published only once durable: its checkpoint is on disk.
  absl::StatusOr<Checkpoint> ckpt =
      CheckpointStore::ReadFile(CheckpointPath(1));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->model_version, 1);
  EXPECT_EQ(ckpt->next_round, 2);
  EXPECT_EQ(ckpt->completed_rounds, 1);
  EXPECT_EQ(EncodeModel(ckpt->model), EncodeModel(v1->model));
  v1::CoordinatorCheckpointExtra extra;
  ASSERT_TRUE(extra.ParseFromString(ckpt->extra));
  EXPECT_EQ(extra.strategy_name(), "fedavg");
  EXPECT_EQ(extra.strategy_state(), "");

  // Agents fetch the new version; the old one is gone.
  v1::FetchModelRequest fetch;
  fetch.set_session_token(a.token);
  fetch.set_version(-1);
  absl::StatusOr<std::shared_ptr<const PublishedModel>> got =
      c->GetModel(fetch);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)->version, 1);
  fetch.set_version(0);
  EXPECT_EQ(c->GetModel(fetch).status().code(), kNotFound);

  // Round 2 started from version 1.
  EXPECT_EQ(c->GetStatus().current_round(), 2);
  EXPECT_EQ(TaskOf(*c, a).model_version(), 1);

  ASSERT_EQ(c->Flush(), absl::OkStatus());
  v1::ListRoundsResponse rounds = c->ListRounds();
  ASSERT_THAT(rounds.rounds(), SizeIs(1));
  EXPECT_TRUE(rounds.rounds(0).completed());
  EXPECT_EQ(rounds.rounds(0).num_agents(), 2);
  EXPECT_EQ(rounds.rounds(0).num_examples(), 40);
  const auto history = History();
  ASSERT_THAT(history, SizeIs(2));
  EXPECT_EQ(history[0][0], "round");
  EXPECT_EQ(history[0][4], "train_loss");
  EXPECT_EQ(history[1][0], "1");  // round
  EXPECT_EQ(history[1][1], "2");  // num_agents
  EXPECT_EQ(history[1][2], "0");  // num_failed
  EXPECT_EQ(history[1][3], "40");
  EXPECT_DOUBLE_EQ(std::stod(history[1][4]), (10 * 2.0 + 30 * 1.0) / 40);
  EXPECT_DOUBLE_EQ(std::stod(history[1][8]), 5.0);  // Slowest agent.
}

// A state_dir whose checkpoints all fail to verify is not silently started
// over (a new round 1 after the old history): Create says which and why.
TEST_F(CoordinatorTest, EveryCheckpointCorrupt_RefusesToStartOver) {
  { ASSERT_NE(Make(Config()), nullptr); }  // Writes checkpoint 0.
  ASSERT_TRUE(fs::exists(CheckpointPath(0)));
  {
    std::ofstream damaged(CheckpointPath(0),
                          std::ios::binary | std::ios::trunc);
    damaged << "not a checkpoint";
  }
  absl::StatusOr<std::unique_ptr<Coordinator>> c = Create(Config());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(c.status().message(),
              HasSubstr("none of the 1 checkpoint(s) in " + StateDir() +
                        "/checkpoints verifies (" + CheckpointPath(0)));
  EXPECT_THAT(c.status().message(), HasSubstr("move the state_dir away"));
  EXPECT_EQ(fs::file_size(CheckpointPath(0)), 16u);  // Left as it was.
}

// keep_checkpoints: after each round's close (and its announcement) the
// ones beyond the newest K are deleted.
TEST_F(CoordinatorTest, KeepCheckpoints_OlderOnesDeletedAsRoundsClose) {
  v1::CoordinatorConfig config = Config();
  config.set_keep_checkpoints(2);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  for (int r = 1; r <= 3; ++r) {
    for (const Agent* agent : {&a, &b}) {
      ASSERT_TRUE(Submit(*c, *agent, Model(r, 0, 0),
                         Sub().set_round(r).set_base_version(r - 1))
                      .ok());
    }
    ASSERT_TRUE(TickUntilVersion(*c, r));
  }
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  std::vector<std::string> names;
  for (const auto& f : fs::directory_iterator(StateDir() + "/checkpoints")) {
    names.push_back(f.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_THAT(names, ElementsAre("ckpt-00000002.fedge", "ckpt-00000003.fedge"));
}

TEST_F(CoordinatorTest,
       LastRound_SettledOnceItsModelIsPublished_PollSaysFinished) {
  v1::CoordinatorConfig config = Config();
  config.set_rounds(1);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub()).ok());
  EXPECT_FALSE(c->done());
  ASSERT_TRUE(Submit(*c, b, Model(1, 1, 1), Sub()).ok());
  // The server writes the final model and stops once done() and
  // Settled(). The last round closes on the thread of its last upload,
  // between two Ticks: until a Tick takes its outcome and its model is
  // published, the coordinator is done but not settled (before Settled()
  // checked that, the server of a 1-round federation could write version
  // 0 as its final model: arm64_e2e_test saw it once).
  EXPECT_TRUE(c->done());
  EXPECT_FALSE(c->Settled());
  EXPECT_EQ(c->latest_model()->version, 0);
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_TRUE(c->Settled());
  EXPECT_TRUE(c->done());
  EXPECT_EQ(c->GetStatus().state(), "DONE");
  EXPECT_FALSE(c->AllAgentsToldFinished());
  absl::StatusOr<v1::PollResponse> r = PollNow(*c, a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->finished());
  EXPECT_EQ(r->latest_model_version(), 1);
  // The server may close its port once every agent is done with the
  // answer: it polled again, or it left (after fetching the final model).
  ASSERT_TRUE(PollNow(*c, b).ok());
  EXPECT_FALSE(c->AllAgentsToldFinished());  // b may still be fetching.
  ASSERT_TRUE(PollNow(*c, a).ok());
  EXPECT_FALSE(c->AllAgentsToldFinished());
  v1::LeaveRequest leave;
  leave.set_session_token(b.token);
  ASSERT_EQ(c->Leave(leave), absl::OkStatus());
  EXPECT_TRUE(c->AllAgentsToldFinished());
  c.reset();

  // Started again on that state, it is complete at once: an agent that
  // joins is told so (no round outcome marks the end this time).
  c = Make(config);
  EXPECT_TRUE(c->done());
  const Agent again = Join(*c, "a");
  Tick(*c);
  r = PollNow(*c, again);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->finished());
  EXPECT_EQ(r->latest_model_version(), 1);
}

// An operator can end the federation between rounds (set-rounds or stop
// while it is paused or waiting for agents): no round outcome marks the
// end then, yet agents must still be told, or they poll until the server's
// finish_linger_ms runs out and it closes on them.
TEST_F(CoordinatorTest, SetRoundsWhilePaused_PollSaysFinished) {
  Agent a, b;
  std::unique_ptr<Coordinator> c = PausedAfterRound1(a, b);
  Tick(*c);
  EXPECT_FALSE(c->done());
  ASSERT_EQ(c->SetRounds(1, "op"), absl::OkStatus());
  EXPECT_TRUE(c->done());
  Tick(*c);
  absl::StatusOr<v1::PollResponse> r = PollNow(*c, a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->finished());
  EXPECT_EQ(r->latest_model_version(), 1);
  ASSERT_TRUE(PollNow(*c, a).ok());
  ASSERT_TRUE(PollNow(*c, b).ok());
  ASSERT_TRUE(PollNow(*c, b).ok());
  EXPECT_TRUE(c->AllAgentsToldFinished());
}

// What an operator changes between rounds (pause, the number of rounds,
// evicted agents) is in a checkpoint at once, not only at the next round's
// close: a coordinator restarted before then keeps it.
TEST_F(CoordinatorTest, OperatorChangesBetweenRounds_SurviveARestart) {
  Agent a, b;
  std::unique_ptr<Coordinator> c = PausedAfterRound1(a, b);
  ASSERT_EQ(c->SetRounds(5, "op"), absl::OkStatus());
  ASSERT_EQ(c->EvictAgent("b", "op"), absl::OkStatus());
  Tick(*c);
  c.reset();

  c = Make(Config());
  const v1::GetStatusResponse status = c->GetStatus();
  EXPECT_EQ(status.total_rounds(), 5);
  EXPECT_EQ(status.completed_rounds(), 1);
  EXPECT_EQ(status.model_version(), 1);
  EXPECT_TRUE(status.paused());
  // What each agent contributed too (b, evicted, is listed; it was 0).
  const v1::ListAgentsResponse listed = c->ListAgents();
  ASSERT_THAT(listed.agents(), SizeIs(1));
  EXPECT_EQ(listed.agents(0).agent_id(), "b");
  EXPECT_EQ(listed.agents(0).rounds_contributed(), 1);
  v1::JoinRequest join;
  join.set_agent_id("b");
  EXPECT_EQ(c->Join(join, "").status().code(),
            absl::StatusCode::kPermissionDenied);
  Join(*c, "a");
  Join(*c, "c");
  Tick(*c);
  EXPECT_EQ(c->GetStatus().state(), "WAITING_FOR_AGENTS");  // Still paused.
  // Resuming and letting b back are kept the same way.
  ASSERT_EQ(c->AllowAgent("b", "op"), absl::OkStatus());
  ASSERT_EQ(c->Resume("op"), absl::OkStatus());
  Tick(*c);  // Checkpointed before round 2 starts.
  c.reset();
  c = Make(Config());
  EXPECT_FALSE(c->GetStatus().paused());
  EXPECT_TRUE(c->Join(join, "").ok());
}

// The config's rounds count after a restart unless an operator set them
// (fedge set-rounds): a checkpoint used to keep the rounds it was written
// with, so a restart with another --rounds was ignored and logged as an
// operator's doing.
TEST_F(CoordinatorTest,
       RestartWithOtherRounds_ConfigCountsUnlessSetByOperator) {
  Agent a, b;
  std::unique_ptr<Coordinator> c = PausedAfterRound1(a, b);  // Rounds 3.
  c.reset();
  v1::CoordinatorConfig more = Config();
  more.set_rounds(7);
  c = Make(more);
  EXPECT_EQ(c->GetStatus().total_rounds(), 7);
  EXPECT_EQ(c->GetStatus().completed_rounds(), 1);

  ASSERT_EQ(c->SetRounds(4, "op"), absl::OkStatus());
  Tick(*c);  // Still paused: checkpointed between rounds.
  c.reset();
  c = Make(more);
  EXPECT_EQ(c->GetStatus().total_rounds(), 4);
  // Still the operator's after the next checkpoint and restart.
  ASSERT_EQ(c->Resume("op"), absl::OkStatus());
  Tick(*c);
  c.reset();
  c = Make(more);
  EXPECT_EQ(c->GetStatus().total_rounds(), 4);
}

// set-rounds during a round must leave room for it: rounds equal to those
// completed used to be taken, and the round in progress then completed
// one past the end ("3 / 2").
TEST_F(CoordinatorTest, SetRoundsDuringARound_LeavesRoomForIt) {
  Agent a, b;
  std::unique_ptr<Coordinator> c = InRound2(a, b);
  const absl::Status s = c->SetRounds(1, "op");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("while round 2 is in progress"));
  EXPECT_THAT(s.message(), HasSubstr("set at least 2"));
  EXPECT_THAT(s.message(), HasSubstr("fedge stop ends the federation"));
  ASSERT_EQ(c->SetRounds(2, "op"), absl::OkStatus());
  BothReportRound2(*c, a, b);
  EXPECT_TRUE(c->done());
  EXPECT_EQ(c->GetStatus().completed_rounds(), 2);
  EXPECT_EQ(c->GetStatus().total_rounds(), 2);
}

// fedge stop is checkpointed like the other operator changes: a restart
// used to train on to the config's rounds. A restart with another
// --rounds is a new decision and goes on; set-rounds on a finished
// federation says so.
TEST_F(CoordinatorTest, StopDuringARound_SurvivesARestart_OtherRoundsGoOn) {
  Agent a, b;
  std::unique_ptr<Coordinator> c = InRound2(a, b);  // Rounds 3.
  ASSERT_EQ(c->StopAfterRound("op"), absl::OkStatus());
  BothReportRound2(*c, a, b);
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_TRUE(c->done());
  c.reset();

  c = Make(Config());
  EXPECT_TRUE(c->done());
  EXPECT_EQ(c->GetStatus().completed_rounds(), 2);
  const absl::Status more_rounds = c->SetRounds(5, "op");
  EXPECT_EQ(more_rounds.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(more_rounds.message(),
              HasSubstr("the federation is done (2 rounds completed); to "
                        "train more rounds, restart the coordinator on its "
                        "state_dir with a larger --rounds"));
  c.reset();

  v1::CoordinatorConfig more = Config();
  more.set_rounds(5);
  c = Make(more);
  EXPECT_FALSE(c->done());
  EXPECT_EQ(c->GetStatus().total_rounds(), 5);
  EXPECT_EQ(c->GetStatus().completed_rounds(), 2);
}

// An id that never joined can be evicted ahead of its join; one that can
// be no agent's id is refused for that reason (it used to say "no agent
// has joined"). An evicted agent is out of the roster: not "seen just now".
TEST_F(CoordinatorTest, EvictNeverJoined_ValidIdListedUnseen_BadIdNamed) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const absl::Status bad = c->EvictAgent("bad id!", "op");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("'bad id!' is not an agent id"));
  ASSERT_EQ(c->EvictAgent("agent-7", "op"), absl::OkStatus());
  const v1::ListAgentsResponse agents = c->ListAgents();
  ASSERT_THAT(agents.agents(), SizeIs(1));
  EXPECT_EQ(agents.agents(0).agent_id(), "agent-7");
  EXPECT_EQ(agents.agents(0).state(), "evicted");
  EXPECT_EQ(agents.agents(0).last_seen_unix_ms(), 0);
}

// An evicted agent's join is refused and listed on the status page, but
// it is no update: fedge_updates_total used to count it as
// {result="join",reason="evicted"}.
TEST_F(CoordinatorTest, EvictedJoin_ListedNotCountedAsAnUpdate) {
  std::unique_ptr<Coordinator> c = Make(Config());
  ASSERT_EQ(c->EvictAgent("b", "op"), absl::OkStatus());
  v1::JoinRequest join;
  join.set_agent_id("b");
  EXPECT_EQ(c->Join(join, "").status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(c->metrics_registry().Render(),
              Not(HasSubstr("fedge_updates_total{result=\"join\"")));
  const FederationSnapshot snap = c->Snapshot();
  ASSERT_THAT(snap.refusals, SizeIs(1));
  EXPECT_EQ(snap.refusals[0].agent_id, "b");
  EXPECT_THAT(snap.refusals[0].reason, HasSubstr("evicted"));
}

TEST_F(CoordinatorTest, StopWhileWaitingForAgents_PollSaysFinished) {
  v1::CoordinatorConfig config = Config();
  config.mutable_strategy()->set_min_available_agents(3);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a");
  Tick(*c);
  EXPECT_FALSE(c->done());
  ASSERT_EQ(c->StopAfterRound("op"), absl::OkStatus());
  Tick(*c);
  EXPECT_TRUE(c->done());
  EXPECT_TRUE(c->Settled());
  absl::StatusOr<v1::PollResponse> r = PollNow(*c, a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->finished());
  EXPECT_EQ(r->latest_model_version(), 0);
}

TEST_F(CoordinatorTest, Deadline_WithQuorum_ClosesRound) {
  v1::CoordinatorConfig config = Config();
  config.mutable_strategy()->set_min_available_agents(3);
  config.mutable_strategy()->set_min_fit_agents(2);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Join(*c, "c");
  Tick(*c);
  ASSERT_EQ(c->GetStatus().num_selected(), 3);
  ASSERT_TRUE(Submit(*c, a, Model(2, 0, 0), Sub()).ok());
  ASSERT_TRUE(Submit(*c, b, Model(0, 2, 0), Sub()).ok());
  clock_.Advance(absl::Milliseconds(9999));
  Tick(*c);
  EXPECT_EQ(c->GetStatus().current_round(), 1);  // Still open.
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(2), FloatEq(3)));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  const auto history = History();
  ASSERT_THAT(history, SizeIs(2));
  EXPECT_EQ(history[1][1], "2");  // num_agents
  EXPECT_EQ(history[1][2], "1");  // num_failed: c.
  EXPECT_TRUE(c->ListRounds().rounds(0).completed());
}

TEST_F(CoordinatorTest, Deadline_WithoutQuorum_Abandoned_ModelUnchanged) {
  v1::CoordinatorConfig config = Config();
  config.mutable_strategy()->set_min_fit_agents(2);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  const std::string v0 = c->latest_model()->sha256_hex;
  ASSERT_TRUE(Submit(*c, a, Model(100, 100, 100), Sub()).ok());
  clock_.Advance(absl::Seconds(10));
  Tick(*c);  // Abandoned: persisted in the background.
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  Tick(*c);  // Round 2 starts.
  EXPECT_EQ(c->GetStatus().model_version(), 0);
  EXPECT_EQ(c->latest_model()->sha256_hex, v0);
  EXPECT_EQ(c->GetStatus().current_round(), 2);
  EXPECT_EQ(c->GetStatus().completed_rounds(), 0);
  v1::ListRoundsResponse rounds = c->ListRounds();
  ASSERT_THAT(rounds.rounds(), SizeIs(1));
  EXPECT_FALSE(rounds.rounds(0).completed());
  EXPECT_EQ(rounds.rounds(0).num_agents(), 1);

  // The abandoned update is not in round 2's model, and a late retry of
  // it is refused.
  EXPECT_EQ(Submit(*c, a, Model(100, 100, 100), Sub().set_upload_id("late"))
                .status()
                .code(),
            kAborted);
  ASSERT_TRUE(Submit(*c, a, Model(2, 0, 0), Sub().set_round(2)).ok());
  ASSERT_TRUE(Submit(*c, b, Model(0, 2, 0), Sub().set_round(2)).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 2));
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(2), FloatEq(3)));
  EXPECT_THAT(Values(c->latest_model()->model, "b"), ElementsAre(0.5f));
}

TEST_F(CoordinatorTest, Heartbeats_KeepBusyAgentLive_SilentOneDropped) {
  v1::CoordinatorConfig config = Config();
  config.set_agent_timeout_ms(10000);
  config.mutable_strategy()->set_round_deadline_ms(60000);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  ASSERT_EQ(c->GetStatus().num_selected(), 2);
  v1::HeartbeatRequest hb;
  hb.set_session_token(a.token);
  for (int i = 0; i < 3; ++i) {  // a trains for 18 s, b is silent.
    clock_.Advance(absl::Seconds(6));
    EXPECT_EQ(c->Heartbeat(hb), absl::OkStatus());
    Tick(*c);
  }
  EXPECT_EQ(c->GetStatus().num_agents(), 1);
  hb.set_session_token(b.token);
  EXPECT_EQ(c->Heartbeat(hb).code(), kUnauthenticated);
  EXPECT_EQ(PollNow(*c, b).status().code(), kUnauthenticated);
  EXPECT_EQ(c->GetStatus().current_round(), 1);

  // a's update completes the round; b counts as failed.
  ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub()).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  const auto history = History();
  ASSERT_THAT(history, SizeIs(2));
  EXPECT_EQ(history[1][1], "1");
  EXPECT_EQ(history[1][2], "1");
}

TEST_F(CoordinatorTest, Leave_CountsAsFailed) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  v1::LeaveRequest leave;
  leave.set_session_token(b.token);
  EXPECT_EQ(c->Leave(leave), absl::OkStatus());
  EXPECT_EQ(c->Leave(leave).code(), kUnauthenticated);  // Session gone.
  EXPECT_EQ(c->GetStatus().num_agents(), 1);
  ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub()).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_EQ(History()[1][2], "1");
}

// ---------------------------------------------------------------------------
// Updates that must not count.

TEST_F(CoordinatorTest, StaleRoundOrBaseVersion_Aborted) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub()).ok());
  ASSERT_TRUE(Submit(*c, b, Model(1, 1, 1), Sub()).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  ASSERT_EQ(c->GetStatus().current_round(), 2);
  const std::string v1 = EncodeModel(c->latest_model()->model);

  // Round 1 is closed: a new upload for it is stale.
  absl::StatusOr<v1::SubmitUpdateResponse> stale =
      Submit(*c, a, Model(9, 9, 9), Sub().set_round(1).set_upload_id("a-late"));
  EXPECT_EQ(stale.status().code(), kAborted);
  // A retry of round 1's counted upload is acknowledged as a duplicate.
  EXPECT_EQ(Submit(*c, a, Model(1, 1, 1), Sub().set_round(1)).status().code(),
            kAlreadyExists);
  // Trained from version 0 for round 2 (which uses version 1).
  absl::StatusOr<v1::SubmitUpdateResponse> old_base =
      Submit(*c, a, Model(9, 9, 9), Sub().set_round(2).set_base_version(0));
  EXPECT_EQ(old_base.status().code(), kAborted);
  EXPECT_THAT(old_base.status().message(), HasSubstr("version"));

  // Nothing was counted: round 2 aggregates only its own updates.
  ASSERT_TRUE(
      Submit(*c, a, Model(0, 0, 0), Sub().set_round(2).set_base_version(1))
          .ok());
  ASSERT_TRUE(
      Submit(*c, b, Model(0, 0, 0), Sub().set_round(2).set_base_version(1))
          .ok());
  ASSERT_TRUE(TickUntilVersion(*c, 2));
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(2), FloatEq(3)));
}

TEST_F(CoordinatorTest, DuplicateUpload_CountedOnce) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  ASSERT_TRUE(Submit(*c, a, Model(2, 2, 2), Sub().set_upload_id("u1")).ok());
  // A retry once counted: refused before reading it.
  EXPECT_EQ(
      Submit(*c, a, Model(2, 2, 2), Sub().set_upload_id("u1")).status().code(),
      kAlreadyExists);
  // Another upload id from an agent that already reported.
  EXPECT_EQ(
      Submit(*c, a, Model(2, 2, 2), Sub().set_upload_id("u9")).status().code(),
      kFailedPrecondition);

  // Two streams of the same upload at once: one counts, one is a duplicate.
  const std::string bytes = EncodeModel(Model(4, 4, 4));
  absl::StatusOr<std::unique_ptr<Upload>> first =
      Begin(*c, b, bytes, Sub().set_upload_id("u2"));
  absl::StatusOr<std::unique_ptr<Upload>> second =
      Begin(*c, b, bytes, Sub().set_upload_id("u2"));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  absl::StatusOr<v1::SubmitUpdateResponse> r1 =
      Complete(*c, *std::move(first), bytes);
  absl::StatusOr<v1::SubmitUpdateResponse> r2 =
      Complete(*c, *std::move(second), bytes);
  ASSERT_TRUE(r1.ok()) << r1.status();
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_FALSE(r1->duplicate());
  EXPECT_TRUE(r2->duplicate());
  // A retry of the counted upload without a usable checksum is refused
  // before it is read, as a first upload would be.
  for (const std::string& bad : {std::string(""), std::string(31, 'a')}) {
    EXPECT_EQ(Begin(*c, b, bytes, Sub().set_upload_id("u2").set_xxh3_128(bad))
                  .status()
                  .code(),
              kInvalidArgument)
        << bad;
  }

  ASSERT_TRUE(TickUntilVersion(*c, 1));
  // (2 + 4) / 2 + the initial [1, 2 | 0.5]: each update once.
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(4), FloatEq(5)));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_EQ(History()[1][3], "20");  // Examples counted once each.
}

TEST_F(CoordinatorTest, MalformedUploads_InvalidArgument_ModelUnchanged) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  const ModelState good = Model(2, 0, 0);
  const int64_t size = EncodedSize(good);
  const float nan = std::numeric_limits<float>::quiet_NaN();

  EXPECT_EQ(
      Submit(*c, a, good, Sub().set_total_size_bytes(size + 1)).status().code(),
      kInvalidArgument);
  EXPECT_EQ(Submit(*c, a, good, Sub().set_num_examples(0)).status().code(),
            kInvalidArgument);
  EXPECT_EQ(
      Submit(*c, a, good, Sub().set_sha256(ToHex(Sha256Of("other bytes"))))
          .status()
          .code(),
      kInvalidArgument);
  // The checksum: the wrong one, both, neither, not lower-case hex.
  const std::string bytes = EncodeModel(good);
  const absl::StatusOr<v1::SubmitUpdateResponse> wrong = Submit(
      *c, a, good, Sub().set_xxh3_128(ToHex(Xxh3_128Of("other bytes"))));
  EXPECT_EQ(wrong.status().code(), kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("xxh3_128"));
  const absl::StatusOr<v1::SubmitUpdateResponse> both =
      Submit(*c, a, good,
             Sub()
                 .set_xxh3_128(ToHex(Xxh3_128Of(bytes)))
                 .set_sha256(ToHex(Sha256Of(bytes))));
  EXPECT_EQ(both.status().code(), kInvalidArgument);
  EXPECT_THAT(both.status().message(), HasSubstr("exactly one"));
  EXPECT_EQ(Submit(*c, a, good, Sub().set_xxh3_128("")).status().code(),
            kInvalidArgument);
  EXPECT_EQ(Submit(*c, a, good,
                   Sub().set_xxh3_128(absl::AsciiStrToUpper(
                       ToHex(Xxh3_128Of(bytes)))))
                .status()
                .code(),
            kInvalidArgument);
  EXPECT_EQ(Submit(*c, a, good, Sub().set_bytes_sent(size - 5)).status().code(),
            kInvalidArgument);
  EXPECT_EQ(Submit(*c, a, Model(nan, 0, 0), Sub()).status().code(),
            kInvalidArgument);
  ModelState renamed;  // Same size, another name.
  renamed.Add(Floats("v", {2, 0}));
  renamed.Add(Model(0, 0, 0).tensor(1).Clone());
  renamed.Add(Floats("b", {0}));
  ASSERT_EQ(EncodedSize(renamed), size);
  EXPECT_EQ(Submit(*c, a, renamed, Sub()).status().code(), kInvalidArgument);
  ModelState longer = Model(2, 0, 0);  // An extra tensor.
  longer.Add(Floats("x", {1}));
  EXPECT_EQ(Submit(*c, a, longer, Sub()).status().code(), kInvalidArgument);
  EXPECT_EQ(c->GetStatus().num_reported(), 0);

  // Nothing was counted: a's good update is still welcome.
  ASSERT_TRUE(Submit(*c, a, good, Sub()).ok());
  // b as an older agent: SHA-256, not XXH3-128.
  ASSERT_TRUE(Submit(*c, b, Model(0, 2, 0),
                     Sub().set_sha256(ToHex(Sha256Of(EncodeModel(
                         Model(0, 2, 0))))))
                  .ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(2), FloatEq(3)));
  EXPECT_THAT(Values(c->latest_model()->model, "b"), ElementsAre(0.5f));
}

TEST_F(CoordinatorTest, RoundClosedDuringUpload_Aborted_NotCounted) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  const std::string bytes = EncodeModel(Model(100, 100, 100));
  absl::StatusOr<std::unique_ptr<Upload>> slow = Begin(*c, a, bytes, Sub());
  ASSERT_TRUE(slow.ok()) << slow.status();
  ASSERT_TRUE(Submit(*c, b, Model(2, 2, 2), Sub()).ok());
  clock_.Advance(absl::Seconds(10));  // The deadline: b is a quorum.
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  EXPECT_EQ(Complete(*c, *std::move(slow), bytes).status().code(), kAborted);
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(3), FloatEq(4)));
}

TEST_F(CoordinatorTest, RefusedAggregate_KeepsTheModel_NextRoundRuns) {
  // No norm bound (it would refuse these updates): the aggregate's own
  // check behind it.
  v1::CoordinatorConfig config = Config();
  config.mutable_strategy()->mutable_update_limits()->set_update_norm_bound(0);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  const float max = std::numeric_limits<float>::max();
  ASSERT_TRUE(Submit(*c, a, Model(max, 0, 0), Sub()).ok());
  ASSERT_TRUE(Submit(*c, b, Model(max, 0, 0), Sub()).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));  // w[0] = 1 + FLT_MAX = FLT_MAX.
  const std::string v1 = EncodeModel(c->latest_model()->model);
  // FLT_MAX + FLT_MAX is not finite: the aggregate is refused.
  ASSERT_TRUE(
      Submit(*c, a, Model(max, 0, 0), Sub().set_round(2).set_base_version(1))
          .ok());
  ASSERT_TRUE(
      Submit(*c, b, Model(max, 0, 0), Sub().set_round(2).set_base_version(1))
          .ok());
  Tick(*c);
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  Tick(*c);
  EXPECT_EQ(c->GetStatus().model_version(), 1);
  EXPECT_EQ(EncodeModel(c->latest_model()->model), v1);
  ASSERT_THAT(c->ListRounds().rounds(), SizeIs(2));
  EXPECT_FALSE(c->ListRounds().rounds(1).completed());
  EXPECT_FALSE(c->ListRounds().rounds(1).has_test_accuracy());
  // The federation goes on from version 1.
  EXPECT_EQ(c->GetStatus().current_round(), 3);
  EXPECT_EQ(TaskOf(*c, a).model_version(), 1);
  // Nothing that is not finite was checkpointed.
  EXPECT_FALSE(fs::exists(CheckpointPath(2)));
  for (const auto& f : fs::directory_iterator(StateDir() + "/checkpoints")) {
    absl::StatusOr<Checkpoint> ckpt = CheckpointStore::ReadFile(f.path());
    ASSERT_TRUE(ckpt.ok()) << f.path() << ": " << ckpt.status();
    EXPECT_EQ(CheckFinite(ckpt->model), absl::OkStatus()) << f.path();
  }
  EXPECT_THAT(c->metrics_registry().Render(),
              HasSubstr("fedge_aggregates_refused_total 1\n"));
}

// ---------------------------------------------------------------------------
// Poisoning limits (strategy.update_limits): each refusal names its limit,
// is counted under its reason and changes nothing.

std::string Published(Coordinator& c) {
  return EncodeModel(c.latest_model()->model);
}

// The count of fedge_updates_total{result, reason}.
std::string UpdatesCounted(Coordinator& c, const std::string& result,
                           const std::string& reason) {
  const std::string text = c.metrics_registry().Render();
  const std::string key = absl::StrCat("fedge_updates_total{result=\"", result,
                                       "\",reason=\"", reason, "\"} ");
  const size_t at = text.find(key);
  if (at == std::string::npos) return "0";
  return text.substr(at + key.size(), text.find('\n', at) - at - key.size());
}

TEST_F(CoordinatorTest, Limits_Weight_BoundedByDeclarationAndMaximum) {
  v1::CoordinatorConfig config = Config();
  config.mutable_strategy()
      ->mutable_update_limits()
      ->set_max_examples_per_update(500);
  config.mutable_strategy()->set_min_available_agents(3);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a", 200), b = Join(*c, "b", 1000),
              d = Join(*c, "d", 0);
  Tick(*c);
  const std::string before = Published(*c);

  // The attack of issue #9: 200 declared, 2^40 claimed. Refused before a
  // byte is read.
  const std::string bytes = EncodeModel(Model(1, 0, 0));
  absl::StatusOr<std::unique_ptr<Upload>> up =
      Begin(*c, a, bytes, Sub().set_num_examples(int64_t{1} << 40));
  EXPECT_EQ(up.status().code(), kInvalidArgument);
  EXPECT_THAT(up.status().message(),
              HasSubstr("exceeds the 200 examples the agent declared at join"));
  EXPECT_EQ(Submit(*c, a, Model(1, 0, 0), Sub().set_num_examples(201))
                .status()
                .code(),
            kInvalidArgument);
  // Declared 1000, the operator allows 500.
  absl::Status s =
      Submit(*c, b, Model(1, 0, 0), Sub().set_num_examples(501)).status();
  EXPECT_EQ(s.code(), kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("strategy.update_limits.max_examples_per_update = "
                        "500"));
  // Declared nothing: the maximum alone.
  EXPECT_EQ(Submit(*c, d, Model(1, 0, 0), Sub().set_num_examples(600))
                .status()
                .code(),
            kInvalidArgument);
  EXPECT_EQ(UpdatesCounted(*c, "invalid", "weight_declared"), "2");
  EXPECT_EQ(UpdatesCounted(*c, "invalid", "weight_max"), "2");
  EXPECT_EQ(c->GetStatus().num_reported(), 0);
  EXPECT_EQ(Published(*c), before);

  // Nothing was counted: honest weights go through.
  ASSERT_TRUE(Submit(*c, a, Model(4, 0, 0), Sub().set_num_examples(200)).ok());
  ASSERT_TRUE(Submit(*c, b, Model(0, 0, 0), Sub().set_num_examples(500)).ok());
  ASSERT_TRUE(Submit(*c, d, Model(0, 0, 0), Sub().set_num_examples(300)).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  // w0 = 1 + 200 * 4 / 1000.
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(1.8f), FloatEq(2)));
}

TEST_F(CoordinatorTest, Limits_NanMetrics_Refused_ModelUnchanged) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a");
  Join(*c, "b");
  Tick(*c);
  const std::string before = Published(*c);
  absl::Status s =
      Submit(*c, a, Model(1, 0, 0), Sub().set_loss(std::nan(""))).status();
  EXPECT_EQ(s.code(), kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("metrics out of range"));
  EXPECT_EQ(Submit(*c, a, Model(1, 0, 0), Sub().set_train_seconds(-1))
                .status()
                .code(),
            kInvalidArgument);
  EXPECT_EQ(UpdatesCounted(*c, "invalid", "metrics"), "2");
  EXPECT_EQ(c->GetStatus().num_reported(), 0);
  EXPECT_EQ(Published(*c), before);
}

TEST_F(CoordinatorTest, Limits_NormAboveBound_Refused_ModelUnchanged) {
  v1::CoordinatorConfig config = Config();
  config.mutable_strategy()->mutable_update_limits()->set_update_norm_bound(10);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  const std::string before = Published(*c);
  absl::Status s = Submit(*c, a, Model(30, 0, 40), Sub()).status();  // 50.
  EXPECT_EQ(s.code(), kInvalidArgument);
  EXPECT_THAT(s.message(),
              HasSubstr("L2 norm 50 exceeds the limit "
                        "strategy.update_limits.update_norm_bound = 10"));
  EXPECT_EQ(UpdatesCounted(*c, "invalid", "norm"), "1");
  EXPECT_EQ(c->GetStatus().num_reported(), 0);
  EXPECT_EQ(Published(*c), before);
  ASSERT_TRUE(Submit(*c, a, Model(6, 0, 8), Sub()).ok());  // 10: within.
  ASSERT_TRUE(Submit(*c, b, Model(0, 0, 0), Sub()).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(4), FloatEq(2)));
}

TEST_F(CoordinatorTest, Limits_NormAboveBound_Clipped) {
  v1::CoordinatorConfig config = Config();
  v1::UpdateLimitsConfig* limits =
      config.mutable_strategy()->mutable_update_limits();
  limits->set_update_norm_bound(5);
  limits->set_update_norm_action("clip");
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  // [30, 0 | 40] (norm 50) is folded as [3, 0 | 4]; the counter is not a
  // float and keeps its value.
  ASSERT_TRUE(Submit(*c, a, Model(30, 0, 40, 9), Sub()).ok());
  ASSERT_TRUE(Submit(*c, b, Model(1, 0, 0), Sub()).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  // [1, 2 | 0.5] + ([3, 0 | 4] + [1, 0 | 0]) / 2.
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(3), FloatEq(2)));
  EXPECT_THAT(Values(c->latest_model()->model, "b"),
              ElementsAre(FloatEq(2.5f)));
  EXPECT_EQ(UpdatesCounted(*c, "accepted", "clipped"), "1");
  EXPECT_EQ(UpdatesCounted(*c, "accepted", ""), "1");
}

TEST_F(CoordinatorTest, Limits_FltMaxPair_RefusedByDefault_ModelUnchanged) {
  std::unique_ptr<Coordinator> c = Make(Config());  // Default limits.
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  const std::string before = Published(*c);
  const float max = std::numeric_limits<float>::max();
  for (const Agent* agent : {&a, &b}) {
    absl::Status s = Submit(*c, *agent, Model(max, max, max), Sub()).status();
    EXPECT_EQ(s.code(), kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("update_norm_bound = 1e+06"));
  }
  // 1e38 everywhere, too.
  EXPECT_EQ(Submit(*c, a, Model(1e38f, 1e38f, 1e38f), Sub()).status().code(),
            kInvalidArgument);
  EXPECT_EQ(UpdatesCounted(*c, "invalid", "norm"), "3");
  EXPECT_EQ(c->GetStatus().num_reported(), 0);
  // The round runs out without a quorum: the model stays.
  clock_.Advance(absl::Seconds(11));
  Tick(*c);
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  Tick(*c);
  EXPECT_EQ(c->GetStatus().model_version(), 0);
  EXPECT_EQ(Published(*c), before);
}

TEST_F(CoordinatorTest, Restore_SkipsCheckpointWithNonFiniteModel) {
  {
    std::unique_ptr<Coordinator> c = Make(Config());
    const Agent a = Join(*c, "a"), b = Join(*c, "b");
    Tick(*c);
    ASSERT_TRUE(Submit(*c, a, Model(2, 0, 0), Sub()).ok());
    ASSERT_TRUE(Submit(*c, b, Model(0, 2, 0), Sub()).ok());
    ASSERT_TRUE(TickUntilVersion(*c, 1));
    ASSERT_EQ(c->Flush(), absl::OkStatus());
  }
  // A newer checkpoint whose model is not finite (as an older fedge could
  // write): all inf.
  absl::StatusOr<Checkpoint> good =
      CheckpointStore::ReadFile(CheckpointPath(1));
  ASSERT_TRUE(good.ok()) << good.status();
  const std::string v1_model = EncodeModel(good->model);
  Checkpoint bad;
  bad.extra = good->extra;
  bad.model = good->model.Clone();
  bad.model_version = 2;
  bad.next_round = 3;
  bad.completed_rounds = 2;
  const float inf = std::numeric_limits<float>::infinity();
  for (float& x : bad.model.mutable_tensor(0).mutable_floats()) x = inf;
  auto store = CheckpointStore::Create({StateDir() + "/checkpoints", 3});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Save(bad).ok());

  // Resumed from version 1.
  {
    std::unique_ptr<Coordinator> c = Make(Config());
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->GetStatus().model_version(), 1);
    EXPECT_EQ(Published(*c), v1_model);
    EXPECT_EQ(CheckFinite(c->latest_model()->model), absl::OkStatus());
  }
  // Only non-finite models: the coordinator refuses to start.
  for (int64_t version : {0, 1}) fs::remove(CheckpointPath(version));
  ASSERT_TRUE(fs::exists(CheckpointPath(2)));
  absl::StatusOr<std::unique_ptr<Coordinator>> none = Create(Config());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(none.status().message(), HasSubstr("finite"));
}

TEST_F(CoordinatorTest, UploadSlots_BoundConcurrentUploads) {
  v1::CoordinatorConfig config = Config();
  config.set_max_concurrent_uploads(1);
  config.mutable_strategy()->set_min_available_agents(3);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b"), d = Join(*c, "d");
  Tick(*c);
  const std::string bytes = EncodeModel(Model(3, 3, 3));
  absl::StatusOr<std::unique_ptr<Upload>> first = Begin(*c, a, bytes, Sub());
  ASSERT_TRUE(first.ok()) << first.status();
  // b waits for the only slot; d's wait ends with the shutdown.
  struct Waiting {
    int calls = 0;
    absl::StatusOr<std::unique_ptr<Upload>> upload = absl::UnknownError("");
  };
  Waiting wb, wd;
  for (auto [agent, w] : {std::pair{&b, &wb}, {&d, &wd}}) {
    c->BeginUpload(Metadata(*agent, bytes, Sub()),
                   [w = w](absl::StatusOr<std::unique_ptr<Upload>> u) {
                     ++w->calls;
                     w->upload = std::move(u);
                   });
  }
  EXPECT_EQ(wb.calls, 0);
  EXPECT_EQ(wd.calls, 0);
  // Finishing a's upload hands its slot to b.
  ASSERT_TRUE(Complete(*c, *std::move(first), bytes).ok());
  ASSERT_EQ(wb.calls, 1);
  ASSERT_TRUE(wb.upload.ok()) << wb.upload.status();
  EXPECT_EQ(wd.calls, 0);
  ASSERT_TRUE(Complete(*c, *std::move(wb.upload), bytes).ok());
  ASSERT_EQ(wd.calls, 1);  // Then to d.
  ASSERT_TRUE(wd.upload.ok()) << wd.upload.status();
  ASSERT_TRUE(Complete(*c, *std::move(wd.upload), bytes).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(4), FloatEq(5)));

  // At shutdown a waiting upload is answered UNAVAILABLE.
  ASSERT_EQ(c->GetStatus().current_round(), 2);
  first = Begin(*c, a, bytes, Sub().set_round(2).set_base_version(1));
  ASSERT_TRUE(first.ok()) << first.status();
  Waiting late;
  c->BeginUpload(Metadata(b, bytes, Sub().set_round(2).set_base_version(1)),
                 [&late](absl::StatusOr<std::unique_ptr<Upload>> u) {
                   ++late.calls;
                   late.upload = std::move(u);
                 });
  EXPECT_EQ(late.calls, 0);
  c->BeginShutdown();
  ASSERT_EQ(late.calls, 1);
  EXPECT_EQ(late.upload.status().code(), kUnavailable);
  first->reset();  // a gives up: its slot is released.
  ASSERT_EQ(c->Flush(), absl::OkStatus());
}

// ---------------------------------------------------------------------------
// Shutdown.

TEST_F(CoordinatorTest, BeginShutdown_AnswersParkedPoll_ClosesRoundWithQuorum) {
  v1::CoordinatorConfig config = Config();
  config.mutable_strategy()->set_min_available_agents(3);
  config.mutable_strategy()->set_min_fit_agents(2);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Join(*c, "c");
  Tick(*c);
  ASSERT_TRUE(Submit(*c, a, Model(2, 0, 0), Sub()).ok());
  ASSERT_TRUE(Submit(*c, b, Model(0, 2, 0), Sub()).ok());
  ParkedPoll parked;  // a has reported: its poll waits for work.
  parked.Start(*c, a);
  Tick(*c);
  ASSERT_EQ(parked.num_answers(), 0);

  c->BeginShutdown();
  // Answered, without work (no parked call keeps gRPC's Shutdown waiting).
  ASSERT_EQ(parked.num_answers(), 1);
  absl::StatusOr<v1::PollResponse> answer = parked.last();
  if (answer.ok()) {
    EXPECT_FALSE(answer->has_train());
  } else {
    EXPECT_EQ(answer.status().code(), kUnavailable);
  }
  // New work is refused.
  EXPECT_EQ(PollNow(*c, a).status().code(), kUnavailable);
  EXPECT_EQ(Submit(*c, b, Model(1, 1, 1), Sub()).status().code(), kUnavailable);

  // The round closed with what arrived (2 of 3, a quorum).
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_EQ(c->GetStatus().model_version(), 1);
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(2), FloatEq(3)));
  absl::StatusOr<Checkpoint> ckpt =
      CheckpointStore::ReadFile(CheckpointPath(1));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(EncodeModel(ckpt->model), EncodeModel(c->latest_model()->model));
  EXPECT_EQ(History()[1][2], "1");  // c failed.
}

TEST_F(CoordinatorTest, BeginShutdown_WithoutQuorum_AbandonsRound) {
  v1::CoordinatorConfig config = Config();
  config.mutable_strategy()->set_min_fit_agents(2);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a");
  Join(*c, "b");
  Tick(*c);
  ASSERT_TRUE(Submit(*c, a, Model(2, 0, 0), Sub()).ok());
  c->BeginShutdown();
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_EQ(c->GetStatus().model_version(), 0);
  EXPECT_THAT(Values(c->latest_model()->model, "w"), ElementsAre(1, 2));
  ASSERT_THAT(c->ListRounds().rounds(), SizeIs(1));
  EXPECT_FALSE(c->ListRounds().rounds(0).completed());
}

// ---------------------------------------------------------------------------
// Resume.

// A fedavgm federation of one agent, momentum 0.5: rounds with the deltas
// [1, 0 | 2], [0, 2 | 0], [1, 1 | 0] from [1, 2 | 0.5] end at
// [3.75, 6 | 4.0] (v = [1, 0 | 2], [0.5, 2 | 1], [1.25, 2 | 0.5]).
v1::CoordinatorConfig MomentumConfig(v1::CoordinatorConfig c,
                                     const std::string& state_dir) {
  c.set_state_dir(state_dir);
  c.mutable_strategy()->set_name("fedavgm");
  c.mutable_strategy()->set_server_momentum(0.5);
  c.mutable_strategy()->set_min_available_agents(1);
  return c;
}

ModelState MomentumDelta(int round) {
  switch (round) {
    case 1:
      return Model(1, 0, 2);
    case 2:
      return Model(0, 2, 0);
    default:
      return Model(1, 1, 0);
  }
}

TEST_F(CoordinatorTest, Resume_RestoresVersionAndMomentum_BitForBit) {
  // Uninterrupted.
  std::unique_ptr<Coordinator> whole =
      Make(MomentumConfig(Config(), StateDir("whole")));
  Agent a = Join(*whole, "a");
  for (int round = 1; round <= 3; ++round) {
    Tick(*whole);
    ASSERT_TRUE(Submit(*whole, a, MomentumDelta(round),
                       Sub().set_round(round).set_base_version(round - 1))
                    .ok());
    ASSERT_TRUE(TickUntilVersion(*whole, round));
  }
  const std::string want = EncodeModel(whole->latest_model()->model);
  EXPECT_THAT(Values(whole->latest_model()->model, "w"),
              ElementsAre(FloatEq(3.75f), FloatEq(6)));
  EXPECT_THAT(Values(whole->latest_model()->model, "b"),
              ElementsAre(FloatEq(4.0f)));

  // Two rounds, a restart on the same state directory, the third round.
  const v1::CoordinatorConfig config =
      MomentumConfig(Config(), StateDir("resumed"));
  {
    std::unique_ptr<Coordinator> first = Make(config);
    a = Join(*first, "a");
    for (int round = 1; round <= 2; ++round) {
      Tick(*first);
      ASSERT_TRUE(Submit(*first, a, MomentumDelta(round),
                         Sub().set_round(round).set_base_version(round - 1))
                      .ok());
      ASSERT_TRUE(TickUntilVersion(*first, round));
    }
  }
  std::unique_ptr<Coordinator> second = Make(config);
  EXPECT_EQ(second->GetStatus().model_version(), 2);
  EXPECT_EQ(second->GetStatus().completed_rounds(), 2);
  a = Join(*second, "a");
  Tick(*second);
  v1::TrainTask task = TaskOf(*second, a);
  EXPECT_EQ(task.round(), 3);
  EXPECT_EQ(task.model_version(), 2);
  EXPECT_EQ(task.plan().seed(), AgentPlanSeed(11, 3, "a"));
  ASSERT_TRUE(Submit(*second, a, MomentumDelta(3),
                     Sub().set_round(3).set_base_version(2))
                  .ok());
  ASSERT_TRUE(TickUntilVersion(*second, 3));
  EXPECT_EQ(EncodeModel(second->latest_model()->model), want);
  EXPECT_EQ(second->latest_model()->sha256_hex,
            whole->latest_model()->sha256_hex);
}

TEST_F(CoordinatorTest, CheckpointOfAnotherStrategy_FailedPrecondition) {
  { Make(Config("fedavg")); }
  absl::StatusOr<std::unique_ptr<Coordinator>> other =
      Create(Config("fedavgm"));
  EXPECT_EQ(other.status().code(), kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("'fedavg'"));
  EXPECT_THAT(other.status().message(), HasSubstr("strategy.name=fedavg"));
  // The same strategy resumes.
  EXPECT_TRUE(Create(Config("fedavg")).ok());
}

// ---------------------------------------------------------------------------
// SCAFFOLD's extra tensors on the wire.

TEST_F(CoordinatorTest, Fp16Download_HalfTheBytes_MasterStaysFloat32) {
  v1::CoordinatorConfig config = Config();
  config.mutable_strategy()->set_download_encoding("fp16");
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  std::shared_ptr<const PublishedModel> v0 = c->latest_model();
  ASSERT_TRUE(v0->wire.has_value());
  EncodingOptions fp16;
  fp16.kind = UpdateEncoding::kFp16;
  const EncodedModel wire = *EncodeForWire(v0->model, fp16);
  EXPECT_EQ(v0->encoding, "fp16");
  EXPECT_EQ(v0->sha256_hex, ToHex(ModelDigest(wire)));
  EXPECT_EQ(v0->size_bytes, EncodedSize(wire));
  EXPECT_LT(v0->size_bytes, EncodedSize(v0->model));
  v1::TrainTask task = TaskOf(*c, a);
  EXPECT_EQ(task.model_encoding(), "fp16");
  EXPECT_EQ(task.model_sha256(), v0->sha256_hex);
  EXPECT_EQ(task.model_size_bytes(), v0->size_bytes);
  // The deltas are added to the float32 model, not to its rounding.
  const ModelState before = v0->model.Clone();
  ASSERT_TRUE(Submit(*c, a, Model(1e-4f, 0, 0), Sub()).ok());
  ASSERT_TRUE(Submit(*c, b, Model(1e-4f, 0, 0), Sub()).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  std::shared_ptr<const PublishedModel> v1 = c->latest_model();
  // (1 + 1e-4 rounds to 1 in half precision.)
  EXPECT_THAT(Values(v1->model, "w"),
              ElementsAre(FloatNear(Values(before, "w")[0] + 1e-4f, 1e-7),
                          FloatEq(Values(before, "w")[1])));
  EXPECT_NE(Values(v1->model, "w")[0], Values(before, "w")[0]);
  EXPECT_EQ(v1->encoding, "fp16");
}

TEST_F(CoordinatorTest, Scaffold_DownloadCarriesControl_UpdateCarriesDc) {
  std::unique_ptr<Coordinator> c = Make(Config("scaffold"));
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  v1::FetchModelRequest fetch;
  fetch.set_session_token(a.token);
  fetch.set_version(-1);
  absl::StatusOr<std::shared_ptr<const PublishedModel>> v0 = c->GetModel(fetch);
  ASSERT_TRUE(v0.ok()) << v0.status();
  const ModelState& download = (*v0)->download();
  ASSERT_EQ(download.size(), 5u);
  EXPECT_EQ(download.tensor(0).name(), "w");
  EXPECT_EQ(download.tensor(1).name(), "count");
  EXPECT_EQ(download.tensor(2).name(), "b");
  EXPECT_EQ(download.tensor(3).name(), "scaffold.c/w");
  EXPECT_EQ(download.tensor(4).name(), "scaffold.c/b");
  EXPECT_THAT(Values(download, "scaffold.c/w"), ElementsAre(0, 0));
  EXPECT_EQ((*v0)->sha256_hex, ToHex(ModelDigest(download)));
  EXPECT_EQ((*v0)->size_bytes, EncodedSize(download));
  EXPECT_EQ((*v0)->model.size(), 3u);
  v1::TrainTask task = TaskOf(*c, a);
  EXPECT_EQ(task.client_algorithm(), "scaffold");
  EXPECT_EQ(task.model_size_bytes(), EncodedSize(download));

  // A plain delta lacks scaffold.dc/*: refused by its size.
  EXPECT_EQ(Submit(*c, a, Model(1, 1, 1), Sub()).status().code(),
            kInvalidArgument);
  // The delta's tensors twice: the right size, the wrong names.
  ModelState wrong = WithDc(Model(1, 1, 1), 0, 0, 0);
  wrong.mutable_tensor(3) = Floats("scaffold.c/w", {0, 0});
  wrong.mutable_tensor(4) = Floats("scaffold.c/b", {0});
  EXPECT_EQ(Submit(*c, a, wrong, Sub()).status().code(), kInvalidArgument);

  ASSERT_TRUE(Submit(*c, a, WithDc(Model(2, 0, 0), 2, 0, 4), Sub()).ok());
  ASSERT_TRUE(Submit(*c, b, WithDc(Model(0, 2, 0), 0, 2, 0), Sub()).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  std::shared_ptr<const PublishedModel> v1 = c->latest_model();
  EXPECT_THAT(Values(v1->model, "w"), ElementsAre(FloatEq(2), FloatEq(3)));
  // c += |S| / N * mean(dc), N = 2 agents in the roster: [1, 1 | 2].
  EXPECT_THAT(Values(v1->download(), "scaffold.c/w"),
              ElementsAre(FloatEq(1), FloatEq(1)));
  EXPECT_THAT(Values(v1->download(), "scaffold.c/b"), ElementsAre(FloatEq(2)));
  EXPECT_EQ(v1->sha256_hex, ToHex(ModelDigest(v1->download())));

  // The control variate is checkpointed with the model.
  absl::StatusOr<Checkpoint> ckpt =
      CheckpointStore::ReadFile(CheckpointPath(1));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  v1::CoordinatorCheckpointExtra extra;
  ASSERT_TRUE(extra.ParseFromString(ckpt->extra));
  EXPECT_EQ(extra.strategy_name(), "scaffold");
  absl::StatusOr<ModelState> control = DecodeModel(extra.strategy_state());
  ASSERT_TRUE(control.ok()) << control.status();
  EXPECT_THAT(Values(*control, "scaffold.c/b"), ElementsAre(FloatEq(2)));
}

// ---------------------------------------------------------------------------
// Central evaluation.

TEST_F(CoordinatorTest, Evaluator_EvaluatesEachNewModel) {
  auto calls = std::make_shared<FakeEvaluator::Calls>();
  std::unique_ptr<Coordinator> c =
      Make(Config(), std::make_unique<FakeEvaluator>(calls));
  // Nothing evaluated yet: no accuracy (fedge status used to print -1).
  EXPECT_FALSE(c->GetStatus().has_last_test_accuracy());
  CompleteRound1(*c);
  {
    absl::MutexLock lock(&calls->mu);
    ASSERT_THAT(calls->models, SizeIs(1));
    EXPECT_EQ(calls->models[0], EncodeModel(c->latest_model()->model));
  }
  EXPECT_DOUBLE_EQ(c->GetStatus().last_test_accuracy(), 0.75);
  EXPECT_DOUBLE_EQ(c->ListRounds().rounds(0).test_accuracy(), 0.75);
  const auto history = History();
  EXPECT_EQ(history[0][7], "test_accuracy");
  EXPECT_DOUBLE_EQ(std::stod(history[1][7]), 0.75);

  // An abandoned round has no new model to evaluate.
  Tick(*c);
  clock_.Advance(absl::Seconds(10));
  Tick(*c);
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  ASSERT_THAT(c->ListRounds().rounds(), SizeIs(2));
  EXPECT_FALSE(c->ListRounds().rounds(1).completed());
  EXPECT_FALSE(c->ListRounds().rounds(1).has_test_accuracy());
  absl::MutexLock lock(&calls->mu);
  EXPECT_THAT(calls->models, SizeIs(1));
}

// The gauges of the model and its evaluation read as before a restart (they
// read 0 until the next round), and NaN where nothing was evaluated.
TEST_F(CoordinatorTest, Gauges_AfterARestart_AsBefore) {
  auto gauge = [](Coordinator& c, const std::string& name) {
    const std::string text = c.metrics_registry().Render();
    const std::string key = "\n" + name + " ";
    const size_t at = text.find(key);
    if (at == std::string::npos) return std::string("absent");
    const size_t from = at + key.size();
    return text.substr(from, text.find('\n', from) - from);
  };
  auto calls = std::make_shared<FakeEvaluator::Calls>();
  std::unique_ptr<Coordinator> c =
      Make(Config(), std::make_unique<FakeEvaluator>(calls));
  EXPECT_EQ(gauge(*c, "fedge_central_accuracy"), "NaN");
  EXPECT_EQ(gauge(*c, "fedge_federated_accuracy"), "NaN");
  CompleteRound1(*c);
  EXPECT_EQ(gauge(*c, "fedge_model_version"), "1");
  EXPECT_EQ(gauge(*c, "fedge_central_accuracy"), "0.75");
  c.reset();

  c = Make(Config());  // No evaluator this time.
  EXPECT_EQ(gauge(*c, "fedge_model_version"), "1");
  EXPECT_EQ(gauge(*c, "fedge_central_accuracy"), "0.75");
  EXPECT_EQ(gauge(*c, "fedge_central_loss"), "0.5");
  EXPECT_EQ(gauge(*c, "fedge_federated_accuracy"), "NaN");
}

// ---------------------------------------------------------------------------
// Agents that hold back or give their round up (device conditions).

TEST_F(CoordinatorTest, ReportFailure_FailsOnce_ReasonShownAndCounted) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  ASSERT_EQ(c->GetStatus().num_selected(), 2);
  auto reason_of = [&](const std::string& id) -> std::string {
    const v1::ListAgentsResponse agents = c->ListAgents();
    for (const v1::AgentInfo& info : agents.agents()) {
      if (info.agent_id() == id) return info.status_reason();
    }
    return "?";
  };
  // b holds back: its polls say why.
  v1::PollRequest paused;
  paused.set_session_token(b.token);
  paused.set_no_wait(true);
  paused.set_paused_reason("power: on battery");
  c->Poll(paused, [](absl::StatusOr<v1::PollResponse>) {});
  EXPECT_EQ(reason_of("b"), "paused: power: on battery");
  EXPECT_EQ(reason_of("a"), "");

  v1::ReportFailureRequest r;
  r.set_session_token(b.token);
  r.set_round(1);
  r.set_detail("power: on battery");
  EXPECT_EQ(c->ReportFailure(r).code(), kInvalidArgument);  // No reason.
  r.set_reason(v1::FAILURE_REASON_POWER);
  EXPECT_EQ(c->ReportFailure(r), absl::OkStatus());
  EXPECT_EQ(c->ReportFailure(r), absl::OkStatus());  // A retry.
  r.set_round(7);
  EXPECT_EQ(c->ReportFailure(r).code(), kAborted);
  r.set_session_token("nobody");
  EXPECT_EQ(c->ReportFailure(r).code(), kUnauthenticated);
  const std::string metrics = c->metrics_registry().Render();
  EXPECT_THAT(metrics,
              HasSubstr("fedge_agent_failures_total{reason=\"power\"} 1\n"));
  // Power back: no longer paused; the failure shows while round 1 runs.
  PollNow(*c, b).IgnoreError();
  EXPECT_EQ(reason_of("b"), "gave up round 1: power: on battery");

  // a's update closes the round at once; b counted failed.
  ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub()).ok());
  v1::ReportFailureRequest late;
  late.set_session_token(a.token);
  late.set_round(1);
  late.set_reason(v1::FAILURE_REASON_MEMORY);
  EXPECT_NE(c->ReportFailure(late), absl::OkStatus());  // a reported.
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_EQ(History()[1][1], "1");
  EXPECT_EQ(History()[1][2], "1");
  Tick(*c);  // Round 2.
  EXPECT_EQ(reason_of("b"), "");
  // A reason this build does not know is counted as "unknown".
  r.set_session_token(b.token);
  r.set_round(2);
  r.set_reason(static_cast<v1::FailureReason>(99));
  EXPECT_EQ(c->ReportFailure(r), absl::OkStatus());
  EXPECT_THAT(c->metrics_registry().Render(),
              HasSubstr("fedge_agent_failures_total{reason=\"unknown\"} 1\n"));
}

// ---------------------------------------------------------------------------
// FedBuff (strategy.mode "fedbuff"): tasks instead of rounds, a version
// every fedbuff_buffer_size updates.

v1::CoordinatorConfig FedBuffConfig(v1::CoordinatorConfig c, int buffer_size,
                                    int concurrency, int max_staleness = 20) {
  v1::StrategyConfig* s = c.mutable_strategy();
  s->set_mode("fedbuff");
  s->set_fedbuff_buffer_size(buffer_size);
  s->set_fedbuff_concurrency(concurrency);
  s->set_fedbuff_max_staleness(max_staleness);
  return c;
}

// The outcome of a poll: the task's number, or -1 for "wait".
int64_t TaskNumber(Coordinator& c, const Agent& agent) {
  absl::StatusOr<v1::PollResponse> r = PollNow(c, agent);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() && r->has_train() ? r->train().round() : -1;
}

TEST_F(CoordinatorTest, FedBuff_TasksUpToConcurrency_EachWithItsNumber) {
  std::unique_ptr<Coordinator> c = Make(FedBuffConfig(Config(), 2, 2));
  const Agent a = Join(*c, "a"), b = Join(*c, "b"), d = Join(*c, "d");
  const v1::TrainTask first = TaskOf(*c, a);
  EXPECT_EQ(first.round(), 1);
  EXPECT_EQ(first.model_version(), 0);
  // The plan as the simulator makes it: the task number is the round.
  EXPECT_EQ(first.plan().seed(), AgentPlanSeed(11, 1, "a"));
  EXPECT_EQ(first.deadline_remaining_ms(), 10000);
  EXPECT_EQ(TaskNumber(*c, b), 2);
  EXPECT_EQ(TaskNumber(*c, d), -1);  // Two in flight: d waits.
  EXPECT_EQ(TaskNumber(*c, a), 1);   // A repeated poll: the same task.
  ASSERT_TRUE(
      Submit(*c, a, Model(1, 1, 1), Sub().set_round(1).set_base_version(0))
          .ok());
  EXPECT_EQ(TaskNumber(*c, d), 3);  // a's slot is free.
  EXPECT_EQ(TaskNumber(*c, a), -1);
  // A task past its deadline frees its slot.
  clock_.Advance(absl::Seconds(10));
  Tick(*c);
  EXPECT_EQ(TaskNumber(*c, a), 4);
  EXPECT_EQ(TaskNumber(*c, b), 5);
  // An upload of the expired task is refused.
  EXPECT_EQ(Submit(*c, d, Model(1, 1, 1), Sub().set_round(3)).status().code(),
            kAborted);
}

TEST_F(CoordinatorTest, FedBuff_VersionEveryKUpdates_WeightedByStaleness) {
  std::unique_ptr<Coordinator> c = Make(FedBuffConfig(Config(), 2, 3));
  const Agent a = Join(*c, "a"), b = Join(*c, "b", 30), d = Join(*c, "d");
  ASSERT_EQ(TaskNumber(*c, a), 1);
  ASSERT_EQ(TaskNumber(*c, b), 2);
  ASSERT_EQ(TaskNumber(*c, d), 3);
  ASSERT_TRUE(
      Submit(*c, a, Model(1, 0, 2), Sub().set_round(1).set_num_examples(10))
          .ok());
  Tick(*c);
  EXPECT_EQ(c->GetStatus().model_version(), 0);  // One update: no version.
  ASSERT_TRUE(
      Submit(*c, b, Model(4, 3, -1), Sub().set_round(2).set_num_examples(30))
          .ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  // (10 [1, 0] + 30 [4, 3]) / 40 + [1, 2].
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(4.25f), FloatEq(4.25f)));

  // d trained from version 0 (staleness 1: weight 1/sqrt(2)); a's next
  // task is on version 1 (weight 1).
  const v1::TrainTask next = TaskOf(*c, a);
  EXPECT_EQ(next.round(), 4);
  EXPECT_EQ(next.model_version(), 1);
  ASSERT_TRUE(
      Submit(*c, d, Model(2, 2, 0),
             Sub().set_round(3).set_base_version(0).set_num_examples(10))
          .ok());
  ASSERT_TRUE(
      Submit(*c, a, Model(0, 0, 0),
             Sub().set_round(4).set_base_version(1).set_num_examples(10))
          .ok());
  ASSERT_TRUE(TickUntilVersion(*c, 2));
  const double w = 1 / std::sqrt(2.0);
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatEq(static_cast<float>(4.25 + 2 * w / (w + 1))),
                          FloatEq(static_cast<float>(4.25 + 2 * w / (w + 1)))));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  const auto history = History();
  ASSERT_THAT(history, SizeIs(3));  // The header, then one row per version.
  EXPECT_EQ(history[1][0], "1");
  EXPECT_EQ(history[1][1], "2");
  EXPECT_EQ(history[1][3], "40");
  EXPECT_EQ(history[2][0], "2");
  EXPECT_EQ(history[2][1], "2");
  EXPECT_EQ(history[2][3], "17");  // 10 / sqrt(2) + 10 examples.
}

// An update that arrives while a full buffer waits for its version to
// close is not folded into it: UNAVAILABLE (retry), nothing recorded; the
// retry after the close counts in the next version, weighted as stale.
TEST_F(CoordinatorTest, FedBuff_FullBuffer_UpdateWaitsForTheNextVersion) {
  std::unique_ptr<Coordinator> c = Make(FedBuffConfig(Config(), 1, 2));
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  ASSERT_EQ(TaskNumber(*c, a), 1);
  ASSERT_EQ(TaskNumber(*c, b), 2);
  ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub().set_round(1)).ok());
  // No tick yet: version 1 has not closed.
  absl::StatusOr<v1::SubmitUpdateResponse> early =
      Submit(*c, b, Model(3, 3, 3), Sub().set_round(2).set_base_version(0));
  EXPECT_EQ(early.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(early.status().message(), HasSubstr("fedbuff_buffer_size = 1"));
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_EQ(History()[1][1], "1");  // Version 1: a's update alone.
  ASSERT_TRUE(
      Submit(*c, b, Model(3, 3, 3), Sub().set_round(2).set_base_version(0))
          .ok());
  ASSERT_TRUE(TickUntilVersion(*c, 2));
}

TEST_F(CoordinatorTest, FedBuff_StaleUpdate_Refused_SlotFreed) {
  std::unique_ptr<Coordinator> c =
      Make(FedBuffConfig(Config(), 1, 2, /*max_staleness=*/0));
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  ASSERT_EQ(TaskNumber(*c, a), 1);
  ASSERT_EQ(TaskNumber(*c, b), 2);
  ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub().set_round(1)).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  // b's update, from version 0, is one version stale.
  absl::StatusOr<v1::SubmitUpdateResponse> stale =
      Submit(*c, b, Model(1, 1, 1), Sub().set_round(2).set_base_version(0));
  EXPECT_EQ(stale.status().code(), kAborted);
  EXPECT_THAT(stale.status().message(), HasSubstr("fedbuff_max_staleness"));
  // Its base version must be the task's.
  ASSERT_EQ(TaskNumber(*c, a), 3);
  EXPECT_EQ(
      Submit(*c, a, Model(1, 1, 1), Sub().set_round(3).set_base_version(0))
          .status()
          .code(),
      kInvalidArgument);
  // b's task ended: it gets a new one on version 1.
  const v1::TrainTask next = TaskOf(*c, b);
  EXPECT_EQ(next.round(), 4);
  EXPECT_EQ(next.model_version(), 1);
}

TEST_F(CoordinatorTest, FedBuff_DuplicateUpload_CountedOnce) {
  std::unique_ptr<Coordinator> c = Make(FedBuffConfig(Config(), 2, 2));
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  ASSERT_EQ(TaskNumber(*c, a), 1);
  ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub().set_round(1)).ok());
  absl::StatusOr<v1::SubmitUpdateResponse> again =
      Submit(*c, a, Model(1, 1, 1), Sub().set_round(1));
  EXPECT_EQ(again.status().code(), kAlreadyExists);
  Tick(*c);
  EXPECT_EQ(c->GetStatus().model_version(), 0);  // Still one update.
}

TEST_F(CoordinatorTest, FedBuff_Restart_TaskNumbersNeverRepeat) {
  const v1::CoordinatorConfig config = FedBuffConfig(Config(), 1, 2);
  {
    std::unique_ptr<Coordinator> first = Make(config);
    const Agent a = Join(*first, "a"), b = Join(*first, "b");
    ASSERT_EQ(TaskNumber(*first, a), 1);
    ASSERT_EQ(TaskNumber(*first, b), 2);
    ASSERT_TRUE(Submit(*first, a, Model(1, 1, 1), Sub().set_round(1)).ok());
    ASSERT_TRUE(TickUntilVersion(*first, 1));
    ASSERT_EQ(TaskNumber(*first, a), 3);  // Handed out after the checkpoint.
  }
  std::unique_ptr<Coordinator> second = Make(config);
  EXPECT_EQ(second->GetStatus().model_version(), 1);
  EXPECT_EQ(second->GetStatus().completed_rounds(), 1);
  const Agent a = Join(*second, "a"), b = Join(*second, "b");
  // Tasks of the last run are gone; their uploads are refused.
  EXPECT_EQ(
      Submit(*second, b, Model(1, 1, 1), Sub().set_round(2)).status().code(),
      kAborted);
  const v1::TrainTask task = TaskOf(*second, a);
  EXPECT_GT(task.round(), 3);
  EXPECT_EQ(task.model_version(), 1);
  EXPECT_EQ(task.plan().seed(), AgentPlanSeed(11, task.round(), "a"));
  ASSERT_TRUE(Submit(*second, a, Model(1, 1, 1),
                     Sub().set_round(task.round()).set_base_version(1))
                  .ok());
  ASSERT_TRUE(TickUntilVersion(*second, 2));
  // A third run continues after every number the second could have used.
  const int64_t used = TaskNumber(*second, b);
  ASSERT_GT(used, task.round());
  ASSERT_EQ(second->Flush(), absl::OkStatus());
  second.reset();
  std::unique_ptr<Coordinator> third = Make(config);
  const Agent a3 = Join(*third, "a");
  Join(*third, "b");
  EXPECT_GT(TaskNumber(*third, a3), used);
}

TEST_F(CoordinatorTest, FedBuff_LastVersion_PollSaysFinished) {
  v1::CoordinatorConfig config = FedBuffConfig(Config(), 1, 2);
  config.set_rounds(2);
  std::unique_ptr<Coordinator> c = Make(config);
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  for (int64_t version = 1; version <= 2; ++version) {
    const v1::TrainTask task = TaskOf(*c, a);
    ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1),
                       Sub()
                           .set_round(task.round())
                           .set_base_version(task.model_version()))
                    .ok());
    ASSERT_TRUE(TickUntilVersion(*c, version));
  }
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_TRUE(c->done());
  absl::StatusOr<v1::PollResponse> r = PollNow(*c, b);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->finished());
}

TEST_F(CoordinatorTest, FedBuff_ScaffoldOrRobustStrategy_InvalidArgument) {
  for (const std::string name : {"scaffold", "median", "trimmed_mean"}) {
    absl::StatusOr<std::unique_ptr<Coordinator>> c =
        Create(FedBuffConfig(Config(name), 2, 2));
    EXPECT_EQ(c.status().code(), kInvalidArgument) << name;
    EXPECT_THAT(c.status().message(), HasSubstr("strategy.mode")) << name;
  }
}

// ---------------------------------------------------------------------------
// Model signing (docs/model-signing.md).

// The signature a task carries.
ModelSignature SignatureOf(const v1::TrainTask& task) {
  return {task.model_signing_key_id(), task.model_signature()};
}

TEST_F(CoordinatorTest, SigningKey_EveryModelAndAnnouncementSigned) {
  fs::create_directories(root_);
  const std::string key_path = (root_ / "model-signing.key").string();
  Ed25519PrivateKey key = *Ed25519PrivateKey::Generate();
  ASSERT_EQ(SavePrivateKeyPem(key, key_path), absl::OkStatus());
  v1::CoordinatorConfig config = Config();
  config.set_model_signing_key_path(key_path);
  std::unique_ptr<Coordinator> c = Make(config);
  ASSERT_NE(c, nullptr);
  const ModelVerifier verifier({key.public_key()});
  v1::ModelSpecProto spec;
  spec.set_architecture("logreg");  // What Create() was given.

  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  const v1::TrainTask task = TaskOf(*c, a);
  EXPECT_EQ(task.model_signing_key_id(), ModelSigningKeyId(key.public_key()));
  EXPECT_EQ(verifier.Verify(task.model_version(), spec, task.model_sha256(),
                            SignatureOf(task)),
            absl::OkStatus());
  // Bound to the version, the spec and the hash.
  v1::ModelSpecProto other_spec = spec;
  other_spec.set_num_classes(3);
  EXPECT_EQ(verifier
                .Verify(task.model_version(), other_spec, task.model_sha256(),
                        SignatureOf(task))
                .code(),
            kUnauthenticated);
  EXPECT_EQ(verifier
                .Verify(task.model_version() + 1, spec, task.model_sha256(),
                        SignatureOf(task))
                .code(),
            kUnauthenticated);
  EXPECT_EQ(verifier
                .Verify(task.model_version(), spec, std::string(64, '0'),
                        SignatureOf(task))
                .code(),
            kUnauthenticated);

  // The next version is signed too, and announced with its signature.
  ASSERT_TRUE(Submit(*c, a, Model(1, 1, 1), Sub()).ok());
  ASSERT_TRUE(Submit(*c, b, Model(1, 1, 1), Sub()).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  std::shared_ptr<const PublishedModel> latest = c->latest_model();
  EXPECT_EQ(verifier.Verify(1, spec, latest->sha256_hex, latest->signature),
            absl::OkStatus());
  absl::StatusOr<v1::PollResponse> poll = PollNow(*c, a);
  ASSERT_TRUE(poll.ok()) << poll.status();
  EXPECT_EQ(poll->latest_model_version(), 1);
  EXPECT_EQ(verifier.Verify(1, spec, poll->latest_model_sha256(),
                            {poll->latest_model_signing_key_id(),
                             poll->latest_model_signature()}),
            absl::OkStatus());
  ASSERT_TRUE(poll->has_train());
  EXPECT_EQ(poll->train().model_version(), 1);
  EXPECT_EQ(verifier.Verify(1, spec, poll->train().model_sha256(),
                            SignatureOf(poll->train())),
            absl::OkStatus());
  // Another key does not verify it.
  const ModelVerifier other({Ed25519PrivateKey::Generate()->public_key()});
  EXPECT_EQ(other.Verify(1, spec, latest->sha256_hex, latest->signature).code(),
            kUnauthenticated);
}

TEST_F(CoordinatorTest, NoSigningKey_ModelsPublishedUnsigned) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a");
  Join(*c, "b");
  Tick(*c);
  const v1::TrainTask task = TaskOf(*c, a);
  EXPECT_TRUE(task.model_signature().empty());
  EXPECT_TRUE(task.model_signing_key_id().empty());
  EXPECT_TRUE(c->latest_model()->signature.empty());
}

TEST_F(CoordinatorTest, SigningKeyMissingOrNotAPrivateKey_InvalidArgument) {
  v1::CoordinatorConfig config = Config();
  config.set_model_signing_key_path((root_ / "missing.key").string());
  absl::StatusOr<std::unique_ptr<Coordinator>> c = Create(config);
  EXPECT_EQ(c.status().code(), kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("model_signing_key_path"));
  EXPECT_FALSE(fs::exists(StateDir()));  // Refused before any state.

  fs::create_directories(root_);
  const std::string pub_path = (root_ / "model-signing.pub.pem").string();
  ASSERT_EQ(
      SavePublicKeyPem(Ed25519PrivateKey::Generate()->public_key(), pub_path),
      absl::OkStatus());
  config.set_model_signing_key_path(pub_path);
  c = Create(config);
  EXPECT_EQ(c.status().code(), kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("model_signing_key_path"));
}

// ---------------------------------------------------------------------------
// Differential privacy (strategy.dp, docs/privacy.md).

v1::CoordinatorConfig WithDp(v1::CoordinatorConfig c, double z,
                             double max_epsilon = 0) {
  v1::DpConfig* dp = c.mutable_strategy()->mutable_dp();
  dp->set_mode("central");
  dp->set_clip_norm(1.0);
  dp->set_noise_multiplier(z);
  dp->set_max_epsilon(max_epsilon);
  dp->set_noise_seed(5);
  return c;
}

// Epsilon at delta 1e-5 after `rounds` rounds with sampling rate q.
double DpEpsilon(double q, double sigma, int rounds) {
  auto a = RdpAccountant::Create({});
  EXPECT_TRUE(a.ok() && (*a)->Compose(q, sigma, rounds).ok());
  return (*a)->GetEpsilon(1e-5)->epsilon;
}

TEST_F(CoordinatorTest, Dp_ServerClipsEveryUpdate_MeanOverSampled_Reported) {
  // Negligible noise, so the clipped fixed-denominator mean shows.
  std::unique_ptr<Coordinator> c = Make(WithDp(Config(), 1e-7));
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  const v1::TrainTask task = TaskOf(*c, a);
  EXPECT_DOUBLE_EQ(task.plan().dp_clip_norm(), 1.0);
  EXPECT_EQ(task.plan().dp_noise_stddev(), 0);  // Central: no agent noise.
  // a did not clip (norm 50): the coordinator clips it to 1 anyway.
  ASSERT_TRUE(Submit(*c, a, Model(30, 40, 0), Sub().set_num_examples(10)).ok());
  ASSERT_TRUE(Submit(*c, b, Model(0, 0, 0.5), Sub().set_num_examples(1)).ok());
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  // (1, 2, 0.5) + ((0.6, 0.8, 0) + (0, 0, 0.5)) / 2, uniform weights.
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatNear(1.3f, 1e-4), FloatNear(2.4f, 1e-4)));
  EXPECT_THAT(Values(c->latest_model()->model, "b"),
              ElementsAre(FloatNear(0.75f, 1e-4)));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  const double eps = DpEpsilon(1.0, 1e-7, 1);
  const v1::GetStatusResponse s = c->GetStatus();
  EXPECT_EQ(s.privacy_mode(), "central");
  EXPECT_DOUBLE_EQ(s.privacy_epsilon(), eps);
  EXPECT_DOUBLE_EQ(s.privacy_delta(), 1e-5);
  EXPECT_FALSE(s.privacy_budget_exhausted());
  ASSERT_TRUE(c->Snapshot().federation.privacy.has_value());
  EXPECT_EQ(c->Snapshot().federation.privacy->rounds, 1);
  EXPECT_THAT(c->metrics_registry().Render(),
              HasSubstr("fedge_privacy_epsilon "));
  const auto history = History();
  ASSERT_THAT(history, SizeIs(2));
  EXPECT_EQ(history[0][history[0].size() - 2], "epsilon");
  EXPECT_EQ(history[0].back(), "delta");
  EXPECT_NEAR(std::stod(history[1][history[1].size() - 2]), eps, 1e-6 * eps);
}

TEST_F(CoordinatorTest, Dp_AccountantSurvivesRestart_RunStopsAtTheBudget) {
  // 2 of 2 agents (q = 1), sigma 2: the budget fits two rounds, not three.
  const double e1 = DpEpsilon(1, 2, 1), e2 = DpEpsilon(1, 2, 2),
               e3 = DpEpsilon(1, 2, 3);
  v1::CoordinatorConfig config = WithDp(Config(), 2.0, (e2 + e3) / 2);
  config.set_rounds(10);
  {
    std::unique_ptr<Coordinator> first = Make(config);
    const Agent a = Join(*first, "a"), b = Join(*first, "b");
    Tick(*first);
    ASSERT_TRUE(Submit(*first, a, Model(0.1f, 0, 0), Sub()).ok());
    ASSERT_TRUE(Submit(*first, b, Model(0, 0.1f, 0), Sub()).ok());
    ASSERT_TRUE(TickUntilVersion(*first, 1));
    ASSERT_EQ(first->Flush(), absl::OkStatus());
    EXPECT_NEAR(first->GetStatus().privacy_epsilon(), e1, 1e-9);
  }
  std::unique_ptr<Coordinator> second = Make(config);
  // The ledger came back with the checkpoint.
  EXPECT_NEAR(second->GetStatus().privacy_epsilon(), e1, 1e-9);
  const Agent a = Join(*second, "a"), b = Join(*second, "b");
  Tick(*second);
  ASSERT_TRUE(Submit(*second, a, Model(0.1f, 0, 0),
                     Sub().set_round(2).set_base_version(1))
                  .ok());
  ASSERT_TRUE(Submit(*second, b, Model(0, 0.1f, 0),
                     Sub().set_round(2).set_base_version(1))
                  .ok());
  ASSERT_TRUE(TickUntilVersion(*second, 2));
  ASSERT_EQ(second->Flush(), absl::OkStatus());
  EXPECT_NEAR(second->GetStatus().privacy_epsilon(), e2, 1e-9);
  // Round 3 would take epsilon to e3 > max_epsilon: the run ends instead.
  for (int i = 0; i < 10 && !second->done(); ++i) Tick(*second);
  ASSERT_TRUE(second->done());
  v1::GetStatusResponse s = second->GetStatus();
  EXPECT_TRUE(s.privacy_budget_exhausted());
  EXPECT_EQ(s.state(), "DONE");
  EXPECT_EQ(s.completed_rounds(), 2);
  EXPECT_EQ(s.model_version(), 2);
  absl::StatusOr<v1::PollResponse> r = PollNow(*second, a);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->finished());
  const auto history = History();
  ASSERT_THAT(history, SizeIs(3));
  EXPECT_NEAR(std::stod(history[1][history[1].size() - 2]), e1, 1e-5);
  EXPECT_NEAR(std::stod(history[2][history[2].size() - 2]), e2, 1e-5);
  second.reset();
  // A restart stops again before round 3.
  std::unique_ptr<Coordinator> third = Make(config);
  Join(*third, "a");
  Join(*third, "b");
  for (int i = 0; i < 10 && !third->done(); ++i) Tick(*third);
  EXPECT_TRUE(third->done());
  EXPECT_EQ(third->GetStatus().model_version(), 2);
  EXPECT_NEAR(third->GetStatus().privacy_epsilon(), e2, 1e-9);
}

TEST_F(CoordinatorTest, Dp_CheckpointOfANonPrivateRun_FailedPrecondition) {
  {
    std::unique_ptr<Coordinator> plain = Make(Config());
    const Agent a = Join(*plain, "a"), b = Join(*plain, "b");
    Tick(*plain);
    ASSERT_TRUE(Submit(*plain, a, Model(1, 1, 1), Sub()).ok());
    ASSERT_TRUE(Submit(*plain, b, Model(1, 1, 1), Sub()).ok());
    ASSERT_TRUE(TickUntilVersion(*plain, 1));
    ASSERT_EQ(plain->Flush(), absl::OkStatus());
  }
  // Its history has no epsilon columns: refused as well.
  absl::StatusOr<std::unique_ptr<Coordinator>> dp = Create(WithDp(Config(), 1));
  EXPECT_EQ(dp.status().code(), kFailedPrecondition);
  EXPECT_THAT(dp.status().message(), HasSubstr("different columns"));
  // Without it, the checkpoint's unaccounted round is.
  fs::remove(StateDir() + "/history.csv");
  dp = Create(WithDp(Config(), 1));
  EXPECT_EQ(dp.status().code(), kFailedPrecondition);
  EXPECT_THAT(dp.status().message(), HasSubstr("without strategy.dp"));
}

// ---------------------------------------------------------------------------
// Secure aggregation over the network (coordinator_secagg.cc): each agent
// runs a real SecAggClient through SecAggStep and a masked upload.

// A SecAggStep that may be parked until its stage closes.
struct ParkedStep {
  absl::Mutex mu;
  std::optional<absl::StatusOr<v1::SecAggStepResponse>> response
      ABSL_GUARDED_BY(mu);

  void Start(Coordinator& c, const Agent& agent, int64_t round,
             v1::SecAggStage stage, const std::string& message) {
    {
      absl::MutexLock lock(&mu);
      response.reset();
    }
    v1::SecAggStepRequest request;
    request.set_session_token(agent.token);
    request.set_round(round);
    request.set_stage(stage);
    request.set_message(message);
    c.SecAggStep(request, [this](absl::StatusOr<v1::SecAggStepResponse> r) {
      absl::MutexLock lock(&mu);
      response = std::move(r);
    });
  }
  bool answered() {
    absl::MutexLock lock(&mu);
    return response.has_value();
  }
  absl::StatusOr<v1::SecAggStepResponse> get() {
    absl::MutexLock lock(&mu);
    return response.value_or(absl::InternalError("not answered"));
  }
};

// One agent of a secure round.
struct SecureAgent {
  Agent agent;
  int64_t examples = 0;
  ModelState delta;
  SecAggAssignment assignment;
  std::unique_ptr<secagg::SecAggClient> client;
  std::string shares;
  ParkedStep step;
};

class SecureCoordinatorTest : public CoordinatorTest {
 protected:
  v1::CoordinatorConfig SecureConfig(int agents) const {
    v1::CoordinatorConfig config = Config();
    config.mutable_strategy()->set_min_available_agents(agents);
    config.mutable_strategy()->mutable_secure_aggregation()->set_enabled(true);
    config.mutable_strategy()
        ->mutable_secure_aggregation()
        ->set_stage_timeout_ms(5000);
    return config;
  }

  // Joins the agents (agents[i] with examples[i] and delta[i]) and starts
  // round 1; each reads its part of the session from its task.
  std::vector<std::unique_ptr<SecureAgent>> JoinSecure(
      Coordinator& c, const std::vector<int64_t>& examples,
      const std::vector<std::array<float, 3>>& deltas) {
    std::vector<std::unique_ptr<SecureAgent>> out;
    for (size_t i = 0; i < examples.size(); ++i) {
      auto a = std::make_unique<SecureAgent>();
      a->agent = Join(c, absl::StrCat("s", i), examples[i]);
      a->examples = examples[i];
      a->delta = Model(deltas[i][0], deltas[i][1], deltas[i][2]);
      out.push_back(std::move(a));
    }
    Tick(c);
    for (auto& a : out) {
      const v1::TrainTask task = TaskOf(c, a->agent);
      EXPECT_TRUE(task.has_secure_aggregation()) << a->agent.id;
      absl::StatusOr<SecAggAssignment> assignment =
          FromSecAggTask(task.secure_aggregation());
      EXPECT_TRUE(assignment.ok()) << assignment.status();
      if (!assignment.ok()) continue;
      a->assignment = *assignment;
      secagg::SecAggClient::Options o;
      o.config = a->assignment.config;
      o.client_id = a->assignment.client_id;
      absl::StatusOr<std::unique_ptr<secagg::SecAggClient>> client =
          secagg::SecAggClient::Create(o);
      EXPECT_TRUE(client.ok()) << client.status();
      if (client.ok()) a->client = *std::move(client);
    }
    return out;
  }

  // Ticks until every step of `agents` is answered (bounded).
  void TickUntilAnswered(Coordinator& c,
                         const std::vector<SecureAgent*>& agents) {
    for (int i = 0; i < 1000; ++i) {
      bool all = true;
      for (SecureAgent* a : agents) all = all && a->step.answered();
      if (all) return;
      Tick(c);
    }
    ADD_FAILURE() << "steps not answered";
  }

  // Stages 0 and 1 for `agents` (the others stay silent).
  void ShareKeys(Coordinator& c, const std::vector<SecureAgent*>& agents) {
    for (SecureAgent* a : agents) {
      absl::StatusOr<std::string> keys = a->client->AdvertiseKeys();
      ASSERT_TRUE(keys.ok()) << keys.status();
      a->step.Start(c, a->agent, 1, v1::SECAGG_STAGE_ADVERTISE_KEYS, *keys);
    }
    TickUntilAnswered(c, agents);
    for (SecureAgent* a : agents) {
      absl::StatusOr<v1::SecAggStepResponse> directory = a->step.get();
      ASSERT_TRUE(directory.ok()) << directory.status();
      ASSERT_FALSE(directory->pending());
      absl::StatusOr<std::string> shares =
          a->client->ShareKeys(directory->message());
      ASSERT_TRUE(shares.ok()) << shares.status();
      a->step.Start(c, a->agent, 1, v1::SECAGG_STAGE_SHARE_KEYS, *shares);
    }
    TickUntilAnswered(c, agents);
    for (SecureAgent* a : agents) {
      absl::StatusOr<v1::SecAggStepResponse> shares = a->step.get();
      ASSERT_TRUE(shares.ok()) << shares.status();
      a->shares = shares->message();
    }
  }

  // The agent's masked input, as fedge-agent makes it.
  std::string Mask(SecureAgent& a) {
    FitResult result;
    result.num_examples = static_cast<double>(a.examples);
    result.num_steps = 1;
    result.delta = &a.delta;
    StrategyOptions strategy;
    strategy.name = a.assignment.strategy_name;
    absl::StatusOr<SecAggInput> input =
        SecAggInput::Prepare(a.assignment.options, strategy, result);
    EXPECT_TRUE(input.ok()) << input.status();
    if (!input.ok()) return "";
    absl::StatusOr<std::string> masked =
        a.client->MaskInputPieces(a.shares, input->pieces());
    EXPECT_TRUE(masked.ok()) << masked.status();
    return masked.ok() ? *masked : "";
  }

  absl::StatusOr<v1::SubmitUpdateResponse> SubmitMasked(
      Coordinator& c, const Agent& agent, const std::string& masked) {
    v1::UpdateMetadata m = Metadata(agent, masked, Sub());
    m.set_masked(true);
    m.clear_num_examples();
    m.clear_num_steps();
    m.clear_metrics();
    absl::StatusOr<std::unique_ptr<Upload>> upload = Begin(c, m);
    if (!upload.ok()) return upload.status();
    return Complete(c, *std::move(upload), masked);
  }

  // Stage 3 for `agents`, once the round's inputs are closed.
  void Unmask(Coordinator& c, const std::vector<SecureAgent*>& agents) {
    for (SecureAgent* a : agents) {
      a->step.Start(c, a->agent, 1, v1::SECAGG_STAGE_UNMASKING_REQUEST, "");
    }
    TickUntilAnswered(c, agents);
    for (SecureAgent* a : agents) {
      absl::StatusOr<v1::SecAggStepResponse> request = a->step.get();
      ASSERT_TRUE(request.ok()) << request.status();
      absl::StatusOr<std::string> answer =
          a->client->Unmask(request->message());
      ASSERT_TRUE(answer.ok()) << answer.status();
      a->step.Start(c, a->agent, 1, v1::SECAGG_STAGE_UNMASKING_RESPONSE,
                    *answer);
      ASSERT_TRUE(a->step.answered());
      EXPECT_TRUE(a->step.get().ok()) << a->step.get().status();
    }
  }
};

// Agents poll on gRPC threads while the Tick starts a round: the engine's
// round first, then its SecAgg session. A poll in between used to get a
// task without the session (trained and uploaded in the clear, then
// refused); it must wait for the session instead.
TEST_F(SecureCoordinatorTest, PollsWhileTheRoundStarts_EveryTaskHasTheSession) {
  int tasks = 0;
  for (int attempt = 0; attempt < 40; ++attempt) {
    fs::remove_all(StateDir());
    std::unique_ptr<Coordinator> c = Make(SecureConfig(3));
    ASSERT_NE(c, nullptr);
    const std::vector<Agent> agents = {Join(*c, "s0"), Join(*c, "s1"),
                                       Join(*c, "s2")};
    std::atomic<bool> stop{false};
    std::atomic<int> with{0}, without{0};
    std::thread poller([&] {
      while (!stop) {
        for (const Agent& a : agents) {
          absl::StatusOr<v1::PollResponse> r = PollNow(*c, a);
          if (!r.ok() || !r->has_train()) continue;
          ++(r->train().has_secure_aggregation() ? with : without);
        }
      }
    });
    Tick(*c);  // Starts round 1.
    for (const Agent& a : agents) {
      absl::StatusOr<v1::PollResponse> r = PollNow(*c, a);
      ASSERT_TRUE(r.ok() && r->has_train()) << a.id;
      EXPECT_TRUE(r->train().has_secure_aggregation()) << a.id;
    }
    stop = true;
    poller.join();
    EXPECT_EQ(without, 0) << "attempt " << attempt;
    tasks += with;
  }
  EXPECT_GT(tasks, 0);  // The poller did see tasks.
}

std::vector<SecureAgent*> Ptrs(
    const std::vector<std::unique_ptr<SecureAgent>>& agents) {
  std::vector<SecureAgent*> out;
  for (const auto& a : agents) out.push_back(a.get());
  return out;
}

TEST_F(SecureCoordinatorTest, SumEqualsPlainFedAvg_UpdatesNeverSeenAlone) {
  std::unique_ptr<Coordinator> c = Make(SecureConfig(3));
  auto agents =
      JoinSecure(*c, {10, 30, 60}, {{1, 0, 2}, {4, 3, -1}, {-2, 1, 0.5f}});
  ASSERT_THAT(agents, SizeIs(3));
  EXPECT_EQ(agents[0]->assignment.config.num_clients, 3);
  EXPECT_EQ(agents[0]->assignment.options.weight_unit, 60);  // Automatic.
  EXPECT_EQ(c->GetStatus().secure_aggregation_stage(), "collecting_keys");
  EXPECT_EQ(c->GetStatus().secure_aggregation_awaited(), 3);
  ShareKeys(*c, Ptrs(agents));
  EXPECT_EQ(c->GetStatus().secure_aggregation_stage(), "collecting_inputs");

  // The update itself is refused in a secure round; so is a masked input
  // of another size, before a byte is read.
  absl::StatusOr<v1::SubmitUpdateResponse> plain =
      Submit(*c, agents[0]->agent, Model(1, 0, 2), Sub());
  EXPECT_EQ(plain.status().code(), kInvalidArgument);
  EXPECT_THAT(plain.status().message(), HasSubstr("uses secure aggregation"));
  const std::string masked0 = Mask(*agents[0]);
  absl::StatusOr<v1::SubmitUpdateResponse> short_input =
      SubmitMasked(*c, agents[0]->agent, masked0.substr(0, masked0.size() - 4));
  EXPECT_EQ(short_input.status().code(), kInvalidArgument);
  EXPECT_THAT(short_input.status().message(), HasSubstr("the session's is"));

  absl::StatusOr<v1::SubmitUpdateResponse> first =
      SubmitMasked(*c, agents[0]->agent, masked0);
  ASSERT_TRUE(first.ok()) << first.status();
  // A retry once counted: refused before reading it (the service answers
  // "duplicate").
  EXPECT_EQ(SubmitMasked(*c, agents[0]->agent, masked0).status().code(),
            kAlreadyExists);
  for (int i : {1, 2}) {
    ASSERT_TRUE(SubmitMasked(*c, agents[i]->agent, Mask(*agents[i])).ok());
  }
  Tick(*c);  // The engine closes the round: unmasking.
  EXPECT_EQ(c->GetStatus().model_version(), 0);
  Unmask(*c, Ptrs(agents));
  ASSERT_TRUE(TickUntilVersion(*c, 1));

  // (10 [1, 0 | 2] + 30 [4, 3 | -1] + 60 [-2, 1 | 0.5]) / 100
  //   = [0.1, 1.5 | 0.2], added to [1, 2 | 0.5].
  std::shared_ptr<const PublishedModel> v1 = c->latest_model();
  EXPECT_THAT(Values(v1->model, "w"),
              ElementsAre(FloatNear(1.1f, 1e-5), FloatNear(3.5f, 1e-5)));
  EXPECT_THAT(Values(v1->model, "b"), ElementsAre(FloatNear(0.7f, 1e-5)));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  const auto history = History();
  ASSERT_THAT(history, SizeIs(2));
  EXPECT_EQ(history[1][1], "3");    // num_agents
  EXPECT_EQ(history[1][3], "100");  // examples: the masked sum's
  // Round 2 has a session of its own.
  const v1::TrainTask next = TaskOf(*c, agents[0]->agent);
  EXPECT_EQ(next.round(), 2);
  EXPECT_NE(next.secure_aggregation().session_id(),
            agents[0]->assignment.config.session_id);
}

// A secure last round is settled only once its sum is unmasked and its
// model published, not when the engine closes it.
TEST_F(SecureCoordinatorTest, LastRound_SettledOnlyOnceUnmaskedAndPublished) {
  v1::CoordinatorConfig config = SecureConfig(3);
  config.set_rounds(1);
  std::unique_ptr<Coordinator> c = Make(config);
  auto agents = JoinSecure(*c, {10, 10, 10}, {{1, 0, 0}, {3, 0, 0}, {5, 5, 5}});
  ASSERT_THAT(agents, SizeIs(3));
  ShareKeys(*c, Ptrs(agents));
  for (auto& agent : agents) {
    ASSERT_TRUE(SubmitMasked(*c, agent->agent, Mask(*agent)).ok());
  }
  Tick(*c);  // The engine closes the round: unmasking.
  EXPECT_TRUE(c->done());
  EXPECT_EQ(c->GetStatus().secure_aggregation_stage(), "unmasking");
  EXPECT_FALSE(c->Settled());
  Unmask(*c, Ptrs(agents));
  for (int i = 0; i < kMaxTicks && !c->Settled(); ++i) {
    Tick(*c);
    std::this_thread::yield();
  }
  ASSERT_TRUE(c->Settled());
  EXPECT_EQ(c->latest_model()->version, 1);
}

TEST_F(SecureCoordinatorTest, DropoutAfterSharingKeys_RecoveredAtTheDeadline) {
  std::unique_ptr<Coordinator> c = Make(SecureConfig(4));
  auto agents = JoinSecure(*c, {10, 10, 10, 10},
                           {{1, 0, 0}, {2, 0, 0}, {3, 0, 0}, {100, 100, 100}});
  ShareKeys(*c, Ptrs(agents));
  // s3 shared its keys, then vanished.
  for (int i : {0, 1, 2}) {
    ASSERT_TRUE(SubmitMasked(*c, agents[i]->agent, Mask(*agents[i])).ok());
  }
  clock_.Advance(absl::Seconds(11));  // The round's 10 s deadline.
  Tick(*c);
  Unmask(*c, {agents[0].get(), agents[1].get(), agents[2].get()});
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  // The mean of the three that arrived: its masks were removed.
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatNear(3.0f, 1e-5), FloatNear(2.0f, 1e-5)));
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  EXPECT_EQ(History()[1][1], "3");  // num_agents
  EXPECT_EQ(History()[1][2], "1");  // num_failed
}

TEST_F(SecureCoordinatorTest, DropoutsBeyondTheThreshold_RoundAbandoned) {
  std::unique_ptr<Coordinator> c = Make(SecureConfig(4));
  auto agents = JoinSecure(*c, {10, 10, 10, 10},
                           {{1, 0, 0}, {2, 0, 0}, {3, 0, 0}, {4, 0, 0}});
  ShareKeys(*c, Ptrs(agents));
  // Only 2 masked inputs: below the threshold of 3, never a wrong sum.
  for (int i : {0, 1}) {
    ASSERT_TRUE(SubmitMasked(*c, agents[i]->agent, Mask(*agents[i])).ok());
  }
  clock_.Advance(absl::Seconds(11));
  for (int i = 0; i < kMaxTicks && c->GetStatus().current_round() < 2; ++i) {
    Tick(*c);
    std::this_thread::yield();
  }
  EXPECT_EQ(c->GetStatus().model_version(), 0);
  EXPECT_EQ(c->GetStatus().current_round(), 2);  // The next round runs.
  ASSERT_EQ(c->Flush(), absl::OkStatus());
  const auto history = History();
  ASSERT_THAT(history, SizeIs(2));
  EXPECT_EQ(EncodeModel(c->latest_model()->model),
            EncodeModel(Model(1, 2, 0.5f)));
  // A step of the abandoned session is ABORTED.
  agents[0]->step.Start(*c, agents[0]->agent, 1,
                        v1::SECAGG_STAGE_UNMASKING_REQUEST, "");
  ASSERT_TRUE(agents[0]->step.answered());
  EXPECT_EQ(agents[0]->step.get().status().code(), kAborted);
}

TEST_F(SecureCoordinatorTest, SilentAgent_KeyStageClosesAtItsTimeout) {
  std::unique_ptr<Coordinator> c = Make(SecureConfig(3));
  auto agents = JoinSecure(*c, {10, 10, 10}, {{1, 0, 0}, {3, 0, 0}, {5, 5, 5}});
  // s2 never advertises its keys: the stage waits for it, then closes
  // without it (threshold 2 of 3), and the round does not wait for its
  // update.
  std::vector<SecureAgent*> two = {agents[0].get(), agents[1].get()};
  for (SecureAgent* a : two) {
    a->step.Start(*c, a->agent, 1, v1::SECAGG_STAGE_ADVERTISE_KEYS,
                  *a->client->AdvertiseKeys());
  }
  Tick(*c);
  EXPECT_FALSE(agents[0]->step.answered());
  clock_.Advance(absl::Milliseconds(1500));  // poll_wait_ms: "pending".
  Tick(*c);
  ASSERT_TRUE(agents[0]->step.answered());
  EXPECT_TRUE(agents[0]->step.get()->pending());
  for (SecureAgent* a : two) {
    a->step.Start(*c, a->agent, 1, v1::SECAGG_STAGE_ADVERTISE_KEYS, "");
  }
  clock_.Advance(absl::Seconds(4));  // stage_timeout_ms 5000.
  TickUntilAnswered(*c, two);
  for (SecureAgent* a : two) {
    absl::StatusOr<v1::SecAggStepResponse> directory = a->step.get();
    ASSERT_TRUE(directory.ok()) << directory.status();
    a->step.Start(*c, a->agent, 1, v1::SECAGG_STAGE_SHARE_KEYS,
                  *a->client->ShareKeys(directory->message()));
  }
  TickUntilAnswered(*c, two);
  for (SecureAgent* a : two) a->shares = a->step.get()->message();
  // Too late for s2: it is no longer part of the session.
  agents[2]->step.Start(*c, agents[2]->agent, 1,
                        v1::SECAGG_STAGE_ADVERTISE_KEYS,
                        *agents[2]->client->AdvertiseKeys());
  ASSERT_TRUE(agents[2]->step.answered());
  EXPECT_NE(agents[2]->step.get().status().code(), absl::StatusCode::kOk);
  for (SecureAgent* a : two) {
    ASSERT_TRUE(SubmitMasked(*c, a->agent, Mask(*a)).ok());
  }
  Tick(*c);  // Both inputs in, s2 failed: the round closes before its deadline.
  Unmask(*c, two);
  ASSERT_TRUE(TickUntilVersion(*c, 1));
  EXPECT_THAT(Values(c->latest_model()->model, "w"),
              ElementsAre(FloatNear(3.0f, 1e-5), FloatNear(2.0f, 1e-5)));
}

// Every strategy that needs only the sum gets the same next model from the
// masked sum as from the updates themselves.
class SecureStrategyTest : public SecureCoordinatorTest,
                           public ::testing::WithParamInterface<const char*> {};

TEST_P(SecureStrategyTest, NextModelEqualsAPlainCoordinators) {
  const std::vector<int64_t> examples = {10, 30, 60};
  const std::vector<std::array<float, 3>> deltas = {
      {1, 0, 2}, {4, 3, -1}, {-2, 1, 0.5f}};
  v1::CoordinatorConfig plain_config = Config(GetParam());
  plain_config.mutable_strategy()->set_min_available_agents(3);
  std::unique_ptr<Coordinator> plain = Make(plain_config);
  std::vector<Agent> agents;
  for (size_t i = 0; i < examples.size(); ++i) {
    agents.push_back(Join(*plain, absl::StrCat("s", i), examples[i]));
  }
  Tick(*plain);
  for (size_t i = 0; i < agents.size(); ++i) {
    ASSERT_TRUE(Submit(*plain, agents[i],
                       Model(deltas[i][0], deltas[i][1], deltas[i][2]),
                       Sub().set_num_examples(examples[i]))
                    .ok());
  }
  ASSERT_TRUE(TickUntilVersion(*plain, 1));

  v1::CoordinatorConfig secure_config = SecureConfig(3);
  secure_config.mutable_strategy()->set_name(GetParam());
  secure_config.set_state_dir(StateDir("secure"));
  std::unique_ptr<Coordinator> secure = Make(secure_config);
  auto secure_agents = JoinSecure(*secure, examples, deltas);
  ShareKeys(*secure, Ptrs(secure_agents));
  for (auto& a : secure_agents) {
    ASSERT_TRUE(SubmitMasked(*secure, a->agent, Mask(*a)).ok());
  }
  Tick(*secure);
  Unmask(*secure, Ptrs(secure_agents));
  ASSERT_TRUE(TickUntilVersion(*secure, 1));

  for (const char* name : {"w", "b"}) {
    const std::vector<float> want = Values(plain->latest_model()->model, name);
    const std::vector<float> got = Values(secure->latest_model()->model, name);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-5) << GetParam() << " " << name << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SumOnly, SecureStrategyTest,
                         ::testing::Values("fedavg", "fedavgm", "fedprox",
                                           "fednova", "fedadam", "fedyogi",
                                           "fedadagrad"));

TEST_F(SecureCoordinatorTest, MaskedInputOutsideASecureRound_Refused) {
  std::unique_ptr<Coordinator> c = Make(Config());
  const Agent a = Join(*c, "a"), b = Join(*c, "b");
  Tick(*c);
  v1::UpdateMetadata m = Metadata(a, std::string(100, 'x'), Sub());
  m.set_masked(true);
  absl::StatusOr<std::unique_ptr<Upload>> upload = Begin(*c, m);
  EXPECT_EQ(upload.status().code(), kInvalidArgument);
  EXPECT_THAT(upload.status().message(),
              HasSubstr("does not use secure aggregation"));
  ParkedStep step;
  step.Start(*c, b, 1, v1::SECAGG_STAGE_ADVERTISE_KEYS, "keys");
  ASSERT_TRUE(step.answered());
  EXPECT_EQ(step.get().status().code(), kAborted);
}

}  // namespace
}  // namespace fedge
