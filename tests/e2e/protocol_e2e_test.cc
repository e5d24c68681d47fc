// End-to-end protocol checks against the real fedge-coordinator binary, with
// a hand-driven client (the stub), so that bad behaviour can be sent on
// purpose: stale results, duplicate uploads, malformed updates, a model of
// more than 100 MB, clients without a valid certificate under mutual TLS,
// and poisoned updates (the limits of strategy.update_limits).
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/model_codec.h"
#include "common/net/credentials.h"
#include "common/net/grpc_status.h"
#include "common/robust_aggregation.h"
#include "fedge/v1/federation.grpc.pb.h"
#include "gmock/gmock.h"
#include "server/checkpoint_store.h"
#include "tests/e2e/federation_fixture.h"
#include "tests/e2e/raw_client.h"

namespace fedge::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

v1::UpdateMetadata Meta(const v1::TrainTask& task, const std::string& upload) {
  v1::UpdateMetadata m;
  m.set_round(task.round());
  m.set_base_version(task.model_version());
  m.set_upload_id(upload);
  m.set_num_examples(100);
  m.set_num_steps(10);
  return m;
}

class ProtocolTest : public FederationTest {
 protected:
  // Two raw clients joined as raw-a and raw-b (each declaring `examples`),
  // both given round 1's task; their tasks and the model a fetched for it.
  struct TwoAgents {
    std::unique_ptr<RawClient> a, b;
    v1::TrainTask task, task_b;
    ModelState model;
    std::string model_sha256;  // As the download announced it.
  };
  // Fails the test (nullopt) when a step does.
  std::optional<TwoAgents> JoinTwo(int port, const Process& coordinator,
                                   int64_t examples = 0) {
    TwoAgents t;
    const v1::TlsConfig tls = ClientTls(CertDir(), "");
    t.a = std::make_unique<RawClient>(port, tls, OperatorTokenPath());
    t.b = std::make_unique<RawClient>(port, tls, OperatorTokenPath());
    if (!t.a->Join("raw-a", examples).ok() ||
        !t.b->Join("raw-b", examples).ok()) {
      ADD_FAILURE() << "join failed: " << coordinator.Log();
      return std::nullopt;
    }
    auto task = t.a->WaitForTask();
    auto task_b = t.b->WaitForTask();
    if (!task.has_value() || !task_b.has_value()) {
      ADD_FAILURE() << "no task: " << coordinator.Log();
      return std::nullopt;
    }
    t.task = *task;
    t.task_b = *task_b;
    auto model = t.a->Fetch(task->model_version(), &t.model_sha256);
    if (!model.ok()) {
      ADD_FAILURE() << model.status();
      return std::nullopt;
    }
    t.model = *std::move(model);
    return t;
  }
};

TEST_F(ProtocolTest, StaleDuplicateAndMalformedUpdates) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=2", "--strategy.count=2", "--strategy.min_available_agents=2",
       "--strategy.min_fit_agents=2"},
      &port);
  std::optional<TwoAgents> two = JoinTwo(port, *coordinator);
  ASSERT_TRUE(two.has_value());
  RawClient& a = *two->a;
  RawClient& b = *two->b;
  const v1::TrainTask& task = two->task;
  const v1::TrainTask& task_b = two->task_b;
  const ModelState& model = two->model;
  EXPECT_EQ(two->model_sha256, task.model_sha256());
  const v1::GetStatusResponse before = a.Status();

  // Malformed: a NaN value, a wrong schema, a wrong hash, truncated bytes.
  ModelState nan = Filled(model, 0.0f);
  nan.mutable_tensor(0).mutable_floats()[3] = std::nanf("");
  auto r = a.Submit(Meta(task, "bad-1"), EncodeModel(nan));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("finite"));
  ModelState wrong;
  wrong.Add(*TensorBuffer::FromFloats("w", {1}, {1.0f}));
  r = a.Submit(Meta(task, "bad-2"), EncodeModel(wrong));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  v1::UpdateMetadata bad_hash = Meta(task, "bad-3");
  bad_hash.set_sha256(std::string(64, '0'));
  r = a.Submit(bad_hash, EncodeModel(Filled(model, 0.0f)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  v1::UpdateMetadata bad_checksum = Meta(task, "bad-3x");
  bad_checksum.set_xxh3_128(std::string(32, '0'));
  r = a.Submit(bad_checksum, EncodeModel(Filled(model, 0.0f)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("xxh3_128"));
  std::string cut = EncodeModel(Filled(model, 0.0f));
  v1::UpdateMetadata truncated = Meta(task, "bad-4");
  truncated.set_total_size_bytes(cut.size());
  r = a.Submit(truncated, cut.substr(0, cut.size() / 2));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  // ... and nothing changed: same model, nobody reported yet.
  const v1::GetStatusResponse after = a.Status();
  EXPECT_EQ(after.model_sha256(), before.model_sha256());
  EXPECT_EQ(after.num_reported(), 0);

  // Stale: a result for another round is refused with ABORTED.
  v1::UpdateMetadata stale = Meta(task, "stale");
  stale.set_round(task.round() + 7);
  r = a.Submit(stale, EncodeModel(Filled(model, 0.0f)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted);

  // Duplicate: the same upload twice is acknowledged twice, counted once.
  const std::string good = EncodeModel(Filled(model, 0.01f));
  r = a.Submit(Meta(task, "up-1"), good);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->duplicate());
  r = a.Submit(Meta(task, "up-1"), good);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->duplicate());
  EXPECT_EQ(a.Status().num_reported(), 1);
  r = b.Submit(Meta(task_b, "up-b"), good);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(WaitForRounds(1, absl::Seconds(30))) << coordinator->Log();
  auto rows = History();
  EXPECT_EQ(rows[0]["num_agents"], "2");
  EXPECT_EQ(rows[0]["num_examples"], "200");
  // The closed round refuses late results.
  r = a.Submit(Meta(task, "late"), good);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted);
}

// ---------------------------------------------------------------------------
// Poisoning limits: the attacks of issue #9, each refused (INVALID_ARGUMENT
// naming the limit), logged under its reason, and changing nothing.

constexpr float kFltMax = std::numeric_limits<float>::max();

TEST_F(ProtocolTest, PoisonedUpdates_RefusedAndTheModelUnchanged) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--strategy.count=2", "--strategy.min_available_agents=2",
       "--strategy.min_fit_agents=2",
       "--strategy.update_limits.update_norm_bound=100"},
      &port);
  std::optional<TwoAgents> two = JoinTwo(port, *coordinator, 200);
  ASSERT_TRUE(two.has_value());
  RawClient& a = *two->a;
  RawClient& b = *two->b;
  const v1::TrainTask& task = two->task;
  const v1::TrainTask& task_b = two->task_b;
  const ModelState& model = two->model;
  const std::string before = a.Status().model_sha256();
  const std::string small = EncodeModel(Filled(model, 0.001f));

  // Declared 200 examples at join, claims 2^40.
  v1::UpdateMetadata heavy = Meta(task, "heavy");
  heavy.set_num_examples(int64_t{1} << 40);
  auto r = a.Submit(heavy, small);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("exceeds the 200 examples the agent declared"));
  // An L2 norm above the bound (2NN: ~446 with every value 1).
  r = a.Submit(Meta(task, "far"), EncodeModel(Filled(model, 1.0f)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("strategy.update_limits.update_norm_bound = 100"));
  // 1e38 everywhere.
  r = a.Submit(Meta(task, "huge"), EncodeModel(Filled(model, 1e38f)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  // NaN metrics.
  v1::UpdateMetadata nan = Meta(task, "nan");
  nan.mutable_metrics()->set_loss(std::nan(""));
  r = a.Submit(nan, small);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("metrics out of range"));
  // The FLT_MAX pair.
  const std::string top = EncodeModel(Filled(model, kFltMax));
  r = a.Submit(Meta(task, "max-a"), top);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  r = b.Submit(Meta(task_b, "max-b"), top);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);

  // Nothing changed; each refusal is logged under its reason.
  const v1::GetStatusResponse after = a.Status();
  EXPECT_EQ(after.model_sha256(), before);
  EXPECT_EQ(after.model_version(), 0);
  EXPECT_EQ(after.num_reported(), 0);
  const std::string log = coordinator->Log();
  EXPECT_THAT(log, HasSubstr("from raw-a: weight_declared: num_examples"));
  EXPECT_THAT(log, HasSubstr("from raw-a: norm: the update's L2 norm"));
  EXPECT_THAT(log, HasSubstr("from raw-a: metrics: metrics out of range"));
  EXPECT_THAT(log, HasSubstr("from raw-b: norm: the update's L2 norm"));

  // The honest updates still count: the round completes with them alone.
  r = a.Submit(Meta(task, "good-a"), small);
  ASSERT_TRUE(r.ok()) << r.status();
  r = b.Submit(Meta(task_b, "good-b"), small);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(WaitForRounds(1, absl::Seconds(30))) << coordinator->Log();
  auto rows = History();
  EXPECT_EQ(rows[0]["num_agents"], "2");
  EXPECT_EQ(rows[0]["num_examples"], "200");
}

TEST_F(ProtocolTest, FltMaxPair_DefaultLimits_RefusedAndTheModelUnchanged) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--strategy.count=2", "--strategy.min_available_agents=2",
       "--strategy.min_fit_agents=2"},
      &port);
  std::optional<TwoAgents> two = JoinTwo(port, *coordinator, 100);
  ASSERT_TRUE(two.has_value());
  RawClient& a = *two->a;
  RawClient& b = *two->b;
  const v1::TrainTask& task = two->task;
  const v1::TrainTask& task_b = two->task_b;
  const ModelState& model = two->model;
  const std::string before = a.Status().model_sha256();
  const std::string top = EncodeModel(Filled(model, kFltMax));
  auto r = a.Submit(Meta(task, "max-a"), top);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("strategy.update_limits.update_norm_bound = 1e+06"));
  r = b.Submit(Meta(task_b, "max-b"), top);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Status().model_sha256(), before);
  EXPECT_EQ(a.Status().num_reported(), 0);
}

TEST_F(ProtocolTest, NormAboveBound_ClippedToTheBound) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=2", "--strategy.count=1", "--strategy.min_available_agents=1",
       "--strategy.min_fit_agents=1",
       "--strategy.update_limits.update_norm_bound=2",
       "--strategy.update_limits.update_norm_action=clip"},
      &port);
  RawClient a(port, ClientTls(CertDir(), ""), OperatorTokenPath());
  ASSERT_TRUE(a.Join("raw-a", 100).ok());
  auto task = a.WaitForTask();
  ASSERT_TRUE(task.has_value()) << coordinator->Log();
  auto base = a.Fetch(task->model_version());
  ASSERT_TRUE(base.ok()) << base.status();
  auto r = a.Submit(Meta(*task, "far"), EncodeModel(Filled(*base, 1.0f)));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(WaitForRounds(1, absl::Seconds(30))) << coordinator->Log();
  auto next_task = a.WaitForTask();
  ASSERT_TRUE(next_task.has_value()) << coordinator->Log();
  ASSERT_EQ(next_task->model_version(), 1);
  auto next = a.Fetch(1);
  ASSERT_TRUE(next.ok()) << next.status();
  // FedAvg of one update: the new model is the old plus the clipped delta.
  absl::StatusOr<ModelState> delta = Subtract(*next, *base);
  ASSERT_TRUE(delta.ok()) << delta.status();
  EXPECT_NEAR(L2Norm(*delta), 2.0, 1e-3);
  EXPECT_THAT(coordinator->Log(), HasSubstr("clipped to "
                                            "strategy.update_limits."
                                            "update_norm_bound"));
}

// All checkpoints in `dir` verify and hold finite models; their versions.
std::vector<int64_t> FiniteCheckpoints(const std::string& dir) {
  std::vector<int64_t> versions;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() != ".fedge") continue;  // A file being written.
    absl::StatusOr<Checkpoint> c = CheckpointStore::ReadFile(f.path());
    EXPECT_TRUE(c.ok()) << f.path() << ": " << c.status();
    if (!c.ok()) continue;
    EXPECT_EQ(CheckFinite(c->model), absl::OkStatus()) << f.path();
    versions.push_back(c->model_version);
  }
  return versions;
}

// Without a norm bound, two FLT_MAX updates are finite and accepted; the
// second pair would make the model inf: that aggregate is refused, nothing
// that is not finite is checkpointed, and a restart resumes a finite model
// even when a checkpoint that is not finite lies newest on disk.
TEST_F(ProtocolTest, FltMaxPairs_NoBound_ModelStaysFinite_RestartToo) {
  const std::vector<std::string> flags = {
      "--rounds=5", "--strategy.count=2", "--strategy.min_available_agents=2",
      "--strategy.min_fit_agents=2",
      "--strategy.update_limits.update_norm_bound=0"};
  int port;
  auto coordinator = StartCoordinator(flags, &port);
  const std::string certs = CertDir();
  RawClient a(port, ClientTls(certs, ""), OperatorTokenPath()),
      b(port, ClientTls(certs, ""), OperatorTokenPath());
  ASSERT_TRUE(a.Join("raw-a", 100).ok());
  ASSERT_TRUE(b.Join("raw-b", 100).ok());
  std::string v1_sha;
  for (int round = 1; round <= 2; ++round) {
    auto task = a.WaitForTask();
    auto task_b = b.WaitForTask();
    ASSERT_TRUE(task.has_value() && task_b.has_value()) << coordinator->Log();
    ASSERT_EQ(task->round(), round);
    auto model = a.Fetch(task->model_version());
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_EQ(CheckFinite(*model), absl::OkStatus());
    const std::string top = EncodeModel(Filled(*model, kFltMax));
    auto r = a.Submit(Meta(*task, absl::StrCat("max-a-", round)), top);
    ASSERT_TRUE(r.ok()) << r.status();
    r = b.Submit(Meta(*task_b, absl::StrCat("max-b-", round)), top);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(WaitForRounds(round, absl::Seconds(30))) << coordinator->Log();
    if (round == 1) {
      ASSERT_TRUE(WaitFor([&] { return a.Status().model_version() == 1; },
                          absl::Seconds(30)));
      v1_sha = a.Status().model_sha256();
    }
  }
  // Round 2's aggregate (FLT_MAX + FLT_MAX) was refused: version 1 stays.
  EXPECT_EQ(a.Status().model_version(), 1);
  EXPECT_EQ(a.Status().model_sha256(), v1_sha);
  EXPECT_THAT(coordinator->Log(), HasSubstr("the aggregate is not finite"));
  EXPECT_EQ(History()[1]["num_agents"], "2");
  const std::string ckpt_dir = dir_ + "/coordinator/checkpoints";
  std::vector<int64_t> versions = FiniteCheckpoints(ckpt_dir);
  EXPECT_THAT(versions, ::testing::Not(::testing::Contains(2)));
  coordinator->Signal(SIGTERM);
  ASSERT_TRUE(coordinator->Wait(absl::Seconds(30)).has_value());

  // A checkpoint that is not finite, newest on disk (as an earlier fedge
  // wrote it): skipped on restart.
  absl::StatusOr<Checkpoint> good =
      CheckpointStore::ReadFile(ckpt_dir + "/ckpt-00000001.fedge");
  ASSERT_TRUE(good.ok()) << good.status();
  Checkpoint bad;
  bad.extra = good->extra;
  bad.model = Filled(good->model, std::numeric_limits<float>::infinity());
  bad.model_version = 9;
  bad.next_round = 10;
  bad.completed_rounds = good->completed_rounds;
  auto store = CheckpointStore::Create({ckpt_dir, 5});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Save(bad).ok());

  auto restarted = StartCoordinator(flags, &port, "coordinator-restarted");
  RawClient c(port, ClientTls(certs, ""), OperatorTokenPath());
  ASSERT_TRUE(c.Join("raw-c", 100).ok());
  const v1::GetStatusResponse resumed = c.Status();
  EXPECT_EQ(resumed.model_version(), 1) << restarted->Log();
  EXPECT_EQ(resumed.model_sha256(), v1_sha);
  auto model = c.Fetch(-1);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(CheckFinite(*model), absl::OkStatus());
  EXPECT_THAT(restarted->Log(),
              HasSubstr("ckpt-00000009.fedge: the model is not finite"));
}

TEST_F(ProtocolTest, HundredMegabyteModel_TransfersIntact) {
  int port;
  // 784-5000-5000-10: 28.9M parameters, 116 MB in fp32.
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--strategy.count=1", "--strategy.min_available_agents=1",
       "--strategy.min_fit_agents=1", "--model.architecture=mlp",
       "--model.hidden_units=5000,5000",
       "--eval_data.synthetic_test_examples=100"},
      &port);
  RawClient a(port, ClientTls(CertDir(), ""), OperatorTokenPath());
  ASSERT_TRUE(a.Join("big").ok());
  auto task = a.WaitForTask();
  ASSERT_TRUE(task.has_value()) << coordinator->Log();
  EXPECT_GE(task->model_size_bytes(), 100'000'000);
  auto model = a.Fetch(task->model_version());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(ToHex(ModelDigest(*model)), task->model_sha256());
  auto r = a.Submit(Meta(*task, "big-1"), EncodeModel(Filled(*model, 0.001f)));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(coordinator->Wait(absl::Seconds(120)), 0) << coordinator->Log();
  auto rows = History();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_GE(std::stoll(rows[0]["bytes_received"]), 100'000'000);
}

// A download resumed at any byte: the rest of the same encoding, in chunks
// of at most 1 MiB whose offsets follow on, the first carrying the size and
// hash; outside the model, INVALID_ARGUMENT.
TEST_F(ProtocolTest, FetchModel_FromAnyOffset_TheRestInChunks) {
  int port;
  // 784-1000-10: 795k parameters, about 3.2 MB: four chunks.
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--strategy.count=1", "--strategy.min_available_agents=1",
       "--strategy.min_fit_agents=1", "--model.architecture=mlp",
       "--model.hidden_units=1000", "--eval_data.synthetic_test_examples=100"},
      &port);
  RawClient a(port, ClientTls(CertDir(), ""), OperatorTokenPath());
  ASSERT_TRUE(a.Join("resumer").ok());
  auto task = a.WaitForTask();
  ASSERT_TRUE(task.has_value()) << coordinator->Log();
  auto model = a.Fetch(task->model_version());
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string whole = EncodeModel(*model);
  ASSERT_EQ(ToHex(Sha256Of(whole)), task->model_sha256());
  const int64_t total = static_cast<int64_t>(whole.size());
  ASSERT_GT(total, 3 << 20);
  for (int64_t offset : {int64_t{0}, int64_t{1}, int64_t{1} << 20,
                         (int64_t{1} << 20) + 5, total - 1, total}) {
    SCOPED_TRACE(absl::StrCat("offset ", offset));
    auto chunks = a.FetchChunks(task->model_version(), offset);
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    std::string rest;
    for (size_t i = 0; i < chunks->size(); ++i) {
      const v1::ModelChunk& c = (*chunks)[i];
      EXPECT_EQ(c.version(), task->model_version());
      EXPECT_EQ(c.offset(), offset + static_cast<int64_t>(rest.size()));
      EXPECT_GE(c.data().size(), 1u);
      EXPECT_LE(c.data().size(), 1u << 20);
      EXPECT_EQ(c.total_size_bytes(), i == 0 ? total : 0);
      EXPECT_EQ(c.sha256(), i == 0 ? task->model_sha256() : "");
      rest += c.data();
    }
    EXPECT_TRUE(rest == whole.substr(static_cast<size_t>(offset)));
  }
  auto beyond = a.FetchChunks(task->model_version(), total + 1);
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kInvalidArgument)
      << beyond.status();
}

TEST_F(ProtocolTest, MutualTls_RefusesClientsWithoutValidCertificate) {
  const std::string certs = CertDir();
  int port;
  auto coordinator =
      StartCoordinator({"--rounds=1", "--tls.require_client_cert=true",
                        "--tls.ca_path=" + certs + "/ca.pem"},
                       &port);
  RawClient none(port, ClientTls(certs, ""), OperatorTokenPath());
  EXPECT_EQ(none.Join("x").code(), absl::StatusCode::kUnavailable);
  v1::TlsConfig foreign = ClientTls(certs, "");
  foreign.set_cert_path(certs + "/foreign/agent-1.pem");
  foreign.set_key_path(certs + "/foreign/agent-1.key");
  RawClient intruder(port, foreign);
  EXPECT_EQ(intruder.Join("agent-1").code(), absl::StatusCode::kUnavailable);
  RawClient valid(port, ClientTls(certs, "agent-2"), OperatorTokenPath());
  EXPECT_TRUE(valid.Join("whoever").ok());
  EXPECT_THAT(coordinator->Log(), HasSubstr("agent agent-2 joined"));
}

// --- Identity and access (docs/security.md) ---

v1::JoinRequest JoinReq(const std::string& id, const std::string& token,
                        const std::string& key = "") {
  v1::JoinRequest r;
  r.set_agent_id(id);
  r.set_join_token(token);
  r.set_agent_key(key);
  return r;
}

TEST_F(ProtocolTest, JoinTokens_EnrollRefuseAndRevoke) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=1000", "--require_join_token=true", "--strategy.count=1",
       "--strategy.min_available_agents=1", "--strategy.min_fit_agents=1"},
      &port);
  auto [code, out] = RunFedge(port, {"token", "create", "--label=lab fleet"});
  ASSERT_EQ(code, 0) << out;
  const std::string fleet = JoinTokenFrom(out);
  ASSERT_FALSE(fleet.empty()) << out;
  std::tie(code, out) = RunFedge(port, {"token", "create", "--agent=agent-2"});
  const std::string personal = JoinTokenFrom(out);
  std::tie(code, out) = RunFedge(port, {"token", "create", "--ttl_seconds=1"});
  const std::string short_lived = JoinTokenFrom(out);
  ASSERT_FALSE(personal.empty() || short_lived.empty()) << out;

  RawClient c(port, ClientTls(CertDir(), ""), OperatorTokenPath());
  // No token, a forged one, one made for another agent: refused.
  absl::Status s = c.JoinWith(JoinReq("raw-1", ""));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(s.message(), HasSubstr("requires a join token"));
  std::string forged = fleet;
  forged.back() = forged.back() == 'a' ? 'b' : 'a';
  EXPECT_EQ(c.JoinWith(JoinReq("raw-1", forged)).code(),
            absl::StatusCode::kUnauthenticated);
  s = c.JoinWith(JoinReq("raw-1", personal));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  // Expired.
  absl::SleepFor(absl::Milliseconds(1500));
  s = c.JoinWith(JoinReq("raw-1", short_lived));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(s.message(), HasSubstr("expired"));
  EXPECT_EQ(c.Status().num_agents(), 0) << "a refused join added an agent";

  // A real agent enrolls with the fleet token and trains.
  const std::string token_file = dir_ + "/fleet.token";
  std::ofstream(token_file) << fleet << "\n";
  auto agent = StartAgent(1, port, {"--join_token_path=" + token_file});
  ASSERT_TRUE(WaitForRounds(2, absl::Seconds(120))) << coordinator->Log();
  const std::string key_path = dir_ + "/agent-1/agent_key";
  ASSERT_TRUE(fs::exists(key_path));
  EXPECT_EQ(fs::status(key_path).permissions() & fs::perms::others_read,
            fs::perms::none);
  // The fleet token cannot take the enrolled id over.
  s = c.JoinWith(JoinReq("agent-1", fleet));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;

  // Revoking the token ends the agent's enrollment and session: it is
  // refused at its next call and stops; the model stops changing.
  std::tie(code, out) = RunFedge(port, {"token", "list"});
  EXPECT_THAT(out,
              HasSubstr(absl::StrCat("token_id: \"", fleet.substr(0, 19))));
  EXPECT_THAT(out, HasSubstr("label: \"lab fleet\""));
  EXPECT_THAT(out, HasSubstr("enrollments: 1"));
  std::tie(code, out) =
      RunFedge(port, {"token", "revoke", fleet.substr(0, 19)});
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("1 enrollments made with it revoked"));
  ASSERT_TRUE(agent->Wait(absl::Seconds(60)).has_value()) << agent->Log();
  EXPECT_THAT(agent->Log(), HasSubstr("revoked"));
  const int64_t version = c.Status().model_version();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(c.Status().model_version(), version);

  const std::string audit = ReadFileOrEmpty(dir_ + "/coordinator/audit.log");
  EXPECT_THAT(audit, HasSubstr("\"event\":\"join\",\"agent\":\"agent-1\""));
  EXPECT_THAT(audit, HasSubstr("\"event\":\"join_refused\""));
  EXPECT_THAT(audit, HasSubstr("\"action\":\"token_revoke\""));
  EXPECT_EQ(audit.find(fleet.substr(20)), std::string::npos)
      << "a token secret reached the audit log";
}

TEST_F(ProtocolTest, MutualTls_AnotherAgentsSession_PermissionDenied) {
  const std::string certs = CertDir();
  int port;
  auto coordinator =
      StartCoordinator({"--rounds=1", "--tls.require_client_cert=true",
                        "--tls.ca_path=" + certs + "/ca.pem",
                        "--strategy.min_available_agents=3"},
                       &port);
  RawClient one(port, ClientTls(certs, "agent-1"));
  RawClient two(port, ClientTls(certs, "agent-2"));
  ASSERT_TRUE(one.Join("agent-1").ok());
  ASSERT_TRUE(two.Join("agent-2").ok());
  two.UseSession(one.session());  // agent-2 replays agent-1's token.
  absl::Status s = two.Heartbeat();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_EQ(two.PollNow().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(one.Heartbeat().ok());  // The owner is unaffected.
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/coordinator/audit.log"),
              HasSubstr("another agent's session"));
}

TEST_F(ProtocolTest, JoinRateMaxAgentsAndSessionExpiry) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=1", "--strategy.min_available_agents=50",
       "--join_rate_per_source=0.5", "--join_burst_per_source=3",
       "--max_agents=2", "--session_lifetime_ms=1500"},
      &port);
  RawClient c(port, ClientTls(CertDir(), ""), OperatorTokenPath());
  ASSERT_TRUE(c.Join("a-1").ok());
  ASSERT_TRUE(c.Join("a-2").ok());
  const std::string a2_session = c.session();
  absl::Status s = c.Join("a-3");  // Third id: over max_agents.
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), HasSubstr("max_agents = 2"));
  s = c.Join("a-1");  // Fourth join from this address: over the rate.
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), HasSubstr("join_rate_per_source"));
  // The session of a-2 expires 1.5 s after its join.
  c.UseSession(a2_session);
  EXPECT_TRUE(c.Heartbeat().ok());
  absl::SleepFor(absl::Milliseconds(1700));
  s = c.Heartbeat();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(s.message(), HasSubstr("expired"));
}

}  // namespace
}  // namespace fedge::testing
