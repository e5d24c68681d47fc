// libFuzzer entry point for the wire protocol (proto/fedge/v1/
// federation.proto): what the coordinator and the agent do with messages a
// peer sent. No gRPC: the Coordinator core (server/coordinator.h) is driven
// directly, as the gRPC adapters of server/federation_service.cc would, and
// the agent loop (edge_agent/agent.h) through a scripted CoordinatorClient.
//
// Every input is first parsed (ParseFromString) as each message either side
// receives. Then the first byte picks a session:
//
// Even: a coordinator (FakeClock, fresh state_dir, small model; strategy
// picked by the input) with agents "agent-1" and "agent-2" joined and round
// 1 started, then up to kMaxOps calls, each an op byte and its fields:
//   Join      record JoinRequest, record peer identity
//   Poll      token byte, record PollRequest
//   GetModel  token byte, record FetchModelRequest; then the model is
//             streamed from the requested offset as FederationService does
//   Heartbeat token byte, record HeartbeatRequest
//   Leave     token byte, record LeaveRequest
//   Upload    fix-up byte, record UpdateChunk (the metadata), a count, and
//             that many records (UpdateChunk, or raw data with fix-up bit
//             5), fed as UpdateReader does: BeginUpload, FeedUpload per
//             data chunk, FinishUpload
//   Tick      U16: the FakeClock advances that many 10 ms, then Tick()
//   Operator  a byte picks Pause / Resume / StopAfterRound / SetRounds /
//             EvictAgent / AllowAgent, with a byte or record argument
//   SecAgg    token byte, fix-up byte, record SecAggStepRequest: bit 0 of
//             the fix-up sets the current round; bit 1 replaces the
//             request by the next step of the agent's real SecAggClient
//             (keys, shares, its masked input uploaded as UpdateReader
//             would, the unmasking answer), so a secure round (the
//             strategy "fedavg+secagg") can get through its stages
// A token byte with bit 0 set replaces the request's session token by a
// live one (bits 1-3 pick which); the upload fix-ups make a message pass
// the checks the fuzzer cannot guess: bit 0 a live token, bit 2 the current
// round and base version, bit 3 total_size_bytes, bit 4 the checksum of the
// data (XXH3-128, or with bit 6 SHA-256 as older agents sent). Then the operator views are read, and the coordinator shuts down.
//
// Odd: an agent (Agent::Run) whose coordinator answers from the input: a
// flags byte, a JoinResponse record, a count and that many PollResponse
// records, a count and that many (status byte, SubmitUpdateResponse
// record), a count and that many FetchModel status bytes, then the bytes of
// a model it serves (as version 0 .. 3 when they decode). Scripts are
// finite and the defaults then say "finished", so Run() returns. The
// trainer factory checks the JoinResponse's model spec and lists its
// layers and cost (common/ml/model_cost.h) as the LibTorch one would
// before building it.
//
// A crash, a sanitizer report, a hang or a broken property (abort) is a
// bug.
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/checksum.h"
#include "common/clock.h"
#include "common/fl_config.h"
#include "common/ml/model_cost.h"
#include "common/ml/model_spec.h"
#include "common/model_codec.h"
#include "common/secagg/client.h"
#include "common/secagg_update.h"
#include "common/sha256.h"
#include "edge_agent/agent.h"
#include "edge_agent/model_cache.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.pb.h"
#include "server/coordinator.h"
#include "tests/edge_agent/fake_coordinator_client.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

constexpr int kMaxOps = 24;
constexpr int kMaxChunks = 16;
constexpr int kChunkBytes = 64;  // Of the model streams.

// Strategies the coordinator session runs: plain, with extras (SCAFFOLD's
// control variates), with state, robust.
// "fedavg+secagg": fedavg with secure aggregation (the SecAgg op).
const char* const kStrategies[] = {"fedavg", "scaffold", "fedadam", "median",
                                   "fedavg+secagg"};
constexpr int kNumStrategies = 5;

enum Op : uint8_t {
  kJoin,
  kPoll,
  kGetModel,
  kHeartbeat,
  kLeave,
  kUpload,
  kTick,
  kOperator,
  kSecAgg,
  kNumOps
};

// Every message a coordinator or an agent parses from the network.
void ParseAll(absl::string_view bytes) {
  const std::string s(bytes);
  v1::JoinRequest().ParseFromString(s);
  v1::JoinResponse().ParseFromString(s);
  v1::PollRequest().ParseFromString(s);
  v1::PollResponse().ParseFromString(s);
  v1::FetchModelRequest().ParseFromString(s);
  v1::ModelChunk().ParseFromString(s);
  v1::UpdateChunk().ParseFromString(s);
  v1::UpdateMetadata().ParseFromString(s);
  v1::SubmitUpdateResponse().ParseFromString(s);
  v1::LeaveRequest().ParseFromString(s);
  v1::HeartbeatRequest().ParseFromString(s);
  v1::SetRoundsRequest().ParseFromString(s);
  v1::EvictAgentRequest().ParseFromString(s);
  v1::AllowAgentRequest().ParseFromString(s);
  v1::GetStatusResponse().ParseFromString(s);
  v1::SecAggStepRequest().ParseFromString(s);
  v1::SecAggStepResponse().ParseFromString(s);
  v1::ListAgentsResponse().ParseFromString(s);
  v1::ListRoundsResponse().ParseFromString(s);
}

// ---------------------------------------------------------------------------
// The coordinator session.

class CoordinatorSession {
 public:
  CoordinatorSession(const fuzz::ScratchDir& dir, absl::string_view strategy) {
    const bool secure = absl::ConsumeSuffix(&strategy, "+secagg");
    CoordinatorOptions options;
    v1::CoordinatorConfig& c = options.config;
    c.set_state_dir(dir.path());
    c.set_rounds(3);
    c.set_seed(11);
    c.set_heartbeat_interval_ms(1000);
    c.set_agent_timeout_ms(60000);
    c.set_poll_wait_ms(1000);
    v1::StrategyConfig* s = c.mutable_strategy();
    s->set_name(std::string(strategy));
    s->set_fraction(1.0);
    s->set_min_available_agents(2);
    s->set_min_fit_agents(1);
    s->set_round_deadline_ms(10000);
    s->mutable_secure_aggregation()->set_enabled(secure);
    options.model_spec.set_architecture("logreg");
    options.initial_model = fuzz::SmallModel();
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<Coordinator>> created =
        Coordinator::Create(std::move(options));
    fuzz::Trace("Coordinator::Create", created.status());
    Check(created.ok(), "Coordinator::Create");
    coordinator_ = *std::move(created);
    for (const char* id : {"agent-1", "agent-2"}) {
      v1::JoinRequest join;
      join.set_agent_id(id);
      join.set_num_examples(10);
      absl::StatusOr<v1::JoinResponse> joined = coordinator_->Join(join, "");
      Check(joined.ok(), "Join");
      tokens_.push_back(joined->session_token());
    }
    Check(coordinator_->Tick().ok(), "Tick");
    if (secure) StartClients();
  }

  ~CoordinatorSession() {
    coordinator_->ListAgents();
    coordinator_->ListRounds();
    coordinator_->Snapshot();
    coordinator_->BeginShutdown();
    coordinator_->Flush().IgnoreError();
    fuzz::Trace(absl::StrCat("model version ",
                             coordinator_->GetStatus().model_version()),
                absl::OkStatus());
  }

  void Run(InputReader& in) {
    for (int i = 0; i < kMaxOps && !in.empty(); ++i) {
      switch (in.Byte() % kNumOps) {
        case kJoin:
          Join(in);
          break;
        case kPoll:
          Poll(in);
          break;
        case kGetModel:
          GetModel(in);
          break;
        case kHeartbeat: {
          v1::HeartbeatRequest r = WithToken<v1::HeartbeatRequest>(in);
          coordinator_->Heartbeat(r).IgnoreError();
          break;
        }
        case kLeave: {
          v1::LeaveRequest r = WithToken<v1::LeaveRequest>(in);
          coordinator_->Leave(r).IgnoreError();
          break;
        }
        case kUpload:
          Upload(in);
          break;
        case kTick:
          clock_.Advance(absl::Milliseconds(10 * int64_t{in.U16()}));
          fuzz::Trace("Tick", coordinator_->Tick());
          break;
        case kOperator:
          Operator(in);
          break;
        case kSecAgg:
          SecAgg(in);
          break;
      }
    }
  }

 private:
  // A token byte, then the request; bit 0 swaps in a live token.
  template <typename Message>
  Message WithToken(InputReader& in) {
    const uint8_t token = in.Byte();
    Message r;
    r.ParseFromString(std::string(in.Record()));
    if ((token & 1) != 0) {
      r.set_session_token(tokens_[(token >> 1) % tokens_.size()]);
    }
    return r;
  }

  void Join(InputReader& in) {
    v1::JoinRequest request;
    request.ParseFromString(std::string(in.Record()));
    const std::string peer(in.Record());
    absl::StatusOr<v1::JoinResponse> joined = coordinator_->Join(request, peer);
    if (joined.ok()) tokens_.push_back(joined->session_token());
  }

  void Poll(InputReader& in) {
    v1::PollRequest request = WithToken<v1::PollRequest>(in);
    // A parked poll is answered by a later Tick or at shutdown; the
    // callback may run on the coordinator's thread.
    coordinator_->Poll(request, [](absl::StatusOr<v1::PollResponse> r) {
      if (r.ok()) r->SerializeAsString();
    });
  }

  void GetModel(InputReader& in) {
    v1::FetchModelRequest request = WithToken<v1::FetchModelRequest>(in);
    absl::StatusOr<std::shared_ptr<const PublishedModel>> model =
        coordinator_->GetModel(request);
    if (!model.ok()) return;
    // As FederationService's ModelWriter streams it.
    const ModelState& download = (*model)->download();
    ModelEncoder encoder(download, kChunkBytes);
    encoder.Seek(request.offset());
    std::string streamed, chunk;
    while (encoder.Next(&chunk)) streamed += chunk;
    Check(streamed == EncodeModel(download).substr(request.offset()),
          "the model streamed from an offset");
  }

  // UpdateReader's order: metadata first, then data only.
  void Upload(InputReader& in) {
    const uint8_t fix = in.Byte();
    v1::UpdateChunk first;
    const bool parsed = first.ParseFromString(std::string(in.Record()));
    const int count = in.Byte() % (kMaxChunks + 1);
    std::vector<v1::UpdateChunk> chunks(count);
    std::string data;
    bool well_formed = parsed;
    for (v1::UpdateChunk& chunk : chunks) {
      const absl::string_view record = in.Record();
      if ((fix & 32) != 0) {
        chunk.set_data(std::string(record));
      } else {
        well_formed &= chunk.ParseFromString(std::string(record));
      }
      if (chunk.part_case() == v1::UpdateChunk::kData) data += chunk.data();
    }
    if (!well_formed || first.part_case() != v1::UpdateChunk::kMetadata) {
      return;  // The stream fails before the core sees it.
    }
    v1::UpdateMetadata metadata = first.metadata();
    FixUp(fix, data, metadata);
    std::unique_ptr<fedge::Upload> upload = Begin(metadata, "BeginUpload");
    if (upload == nullptr) return;
    for (const v1::UpdateChunk& chunk : chunks) {
      if (chunk.part_case() != v1::UpdateChunk::kData) return;
      absl::Status fed = coordinator_->FeedUpload(*upload, chunk.data());
      fuzz::Trace("FeedUpload", fed);
      if (!fed.ok()) return;
    }
    absl::StatusOr<v1::SubmitUpdateResponse> finished =
        coordinator_->FinishUpload(std::move(upload));
    fuzz::Trace("FinishUpload", finished.status());
  }

  // BeginUpload, which answers at once (uploads finish before the next op:
  // a slot is always free); null when it refused.
  std::unique_ptr<fedge::Upload> Begin(const v1::UpdateMetadata& m,
                                       absl::string_view what) {
    std::optional<absl::StatusOr<std::unique_ptr<fedge::Upload>>> begun;
    coordinator_->BeginUpload(
        m, [&begun](absl::StatusOr<std::unique_ptr<fedge::Upload>> u) {
          begun = std::move(u);
        });
    Check(begun.has_value(), "BeginUpload did not answer at once");
    fuzz::Trace(what, begun->status());
    return begun->ok() ? **std::move(begun) : nullptr;
  }

  void FixUp(uint8_t fix, const std::string& data, v1::UpdateMetadata& m) {
    if ((fix & 1) != 0) {
      m.set_session_token(tokens_[(fix >> 1) % 2]);
    }
    if ((fix & 4) != 0) {
      const v1::GetStatusResponse status = coordinator_->GetStatus();
      m.set_round(status.current_round());
      m.set_base_version(status.model_version());
    }
    if ((fix & 8) != 0) m.set_total_size_bytes(data.size());
    if ((fix & 16) != 0 && (fix & 64) == 0) {  // As agents do.
      m.clear_sha256();
      m.set_xxh3_128(ToHex(Xxh3_128Of(data)));
    } else if ((fix & 16) != 0) {  // As older agents did.
      m.clear_xxh3_128();
      m.set_sha256(ToHex(Sha256Of(data)));
    }
  }

  void Operator(InputReader& in) {
    const uint8_t action = in.Byte();
    const std::string who = "fuzz";
    switch (action % 6) {
      case 0:
        coordinator_->Pause(who).IgnoreError();
        break;
      case 1:
        coordinator_->Resume(who).IgnoreError();
        break;
      case 2:
        coordinator_->StopAfterRound(who).IgnoreError();
        break;
      case 3:
        coordinator_->SetRounds(static_cast<int8_t>(in.Byte()), who)
            .IgnoreError();
        break;
      case 4:
        coordinator_->EvictAgent(std::string(in.Record()), who).IgnoreError();
        break;
      case 5:
        coordinator_->AllowAgent(std::string(in.Record()), who).IgnoreError();
        break;
    }
  }

  // Secure aggregation: agent-1's and agent-2's clients, from their tasks.
  struct SecureAgent {
    std::unique_ptr<secagg::SecAggClient> client;
    SecAggAssignment assignment;
    int64_t round = 0;
    // The coordinator's last answers: key directory, shares, unmasking
    // request.
    std::string directory, shares, unmask;
  };

  void StartClients() {
    for (size_t i = 0; i < 2; ++i) {
      v1::PollRequest poll;
      poll.set_session_token(tokens_[i]);
      poll.set_no_wait(true);
      std::optional<v1::TrainTask> task;
      coordinator_->Poll(poll, [&task](absl::StatusOr<v1::PollResponse> r) {
        if (r.ok() && r->has_train()) task = r->train();
      });
      Check(task.has_value() && task->has_secure_aggregation(),
            "a selected agent's task names its secure-aggregation part");
      absl::StatusOr<SecAggAssignment> a =
          FromSecAggTask(task->secure_aggregation());
      Check(a.ok(), "FromSecAggTask of the coordinator's own task");
      secagg::SecAggClient::Options o;
      o.config = a->config;
      o.client_id = a->client_id;
      absl::StatusOr<std::unique_ptr<secagg::SecAggClient>> c =
          secagg::SecAggClient::Create(o);
      Check(c.ok(), "SecAggClient::Create");
      secure_[i].client = *std::move(c);
      secure_[i].assignment = *std::move(a);
      secure_[i].round = task->round();
    }
  }

  void SecAgg(InputReader& in) {
    fuzz::Trace(
        absl::StrCat("secure aggregation stage '",
                     coordinator_->GetStatus().secure_aggregation_stage(), "'"),
        absl::OkStatus());
    const uint8_t token = in.Byte();
    const uint8_t fix = in.Byte();
    v1::SecAggStepRequest request;
    request.ParseFromString(std::string(in.Record()));
    const size_t who = (token >> 1) % tokens_.size();
    if ((token & 1) != 0) request.set_session_token(tokens_[who]);
    if ((fix & 1) != 0) {
      request.set_round(coordinator_->GetStatus().current_round());
    }
    if ((fix & 2) != 0 && who < 2 && secure_[who].client != nullptr &&
        !NextStep(secure_[who], request)) {
      return;  // Nothing to send now (or the input went as an upload).
    }
    std::string* answer_to = nullptr;
    if (who < 2) {
      switch (request.stage()) {
        case v1::SECAGG_STAGE_ADVERTISE_KEYS:
          answer_to = &secure_[who].directory;
          break;
        case v1::SECAGG_STAGE_SHARE_KEYS:
          answer_to = &secure_[who].shares;
          break;
        case v1::SECAGG_STAGE_UNMASKING_REQUEST:
          answer_to = &secure_[who].unmask;
          break;
        default:
          break;
      }
    }
    // A parked step is answered by a later Tick or at shutdown.
    coordinator_->SecAggStep(
        request, [answer_to](absl::StatusOr<v1::SecAggStepResponse> r) {
          fuzz::Trace("SecAggStep", r.status());
          if (r.ok() && !r->pending() && answer_to != nullptr) {
            *answer_to = r->message();
          }
        });
  }

  // The agent's next step as fedge-agent takes it; false when it has none
  // to send as a SecAggStep (its masked input is uploaded here).
  bool NextStep(SecureAgent& a, v1::SecAggStepRequest& request) {
    request.set_round(a.round);
    request.clear_message();
    absl::StatusOr<std::string> m;
    switch (a.client->state()) {
      case secagg::ClientState::kNew:
        request.set_stage(v1::SECAGG_STAGE_ADVERTISE_KEYS);
        m = a.client->AdvertiseKeys();
        break;
      case secagg::ClientState::kKeysAdvertised:
        if (a.directory.empty()) {
          request.set_stage(v1::SECAGG_STAGE_ADVERTISE_KEYS);  // Waits.
          return true;
        }
        request.set_stage(v1::SECAGG_STAGE_SHARE_KEYS);
        m = a.client->ShareKeys(a.directory);
        break;
      case secagg::ClientState::kKeysShared: {
        if (a.shares.empty()) {
          request.set_stage(v1::SECAGG_STAGE_SHARE_KEYS);  // Waits.
          return true;
        }
        // An update of 10 examples, as fedge-agent masks it.
        ModelState delta = fuzz::SmallModel();
        FitResult result;
        result.num_examples = 10;
        result.num_steps = 1;
        result.delta = &delta;
        StrategyOptions strategy;
        strategy.name = a.assignment.strategy_name;
        absl::StatusOr<SecAggInput> input =
            SecAggInput::Prepare(a.assignment.options, strategy, result);
        Check(input.ok(), "SecAggInput::Prepare of a valid update");
        absl::StatusOr<std::string> masked =
            a.client->MaskInputPieces(a.shares, input->pieces());
        if (masked.ok()) UploadMasked(request.session_token(), a, *masked);
        return false;
      }
      case secagg::ClientState::kInputSent:
        if (a.unmask.empty()) {
          request.set_stage(v1::SECAGG_STAGE_UNMASKING_REQUEST);
          return true;
        }
        request.set_stage(v1::SECAGG_STAGE_UNMASKING_RESPONSE);
        m = a.client->Unmask(a.unmask);
        break;
      case secagg::ClientState::kDone:
        return false;
    }
    if (!m.ok()) return false;
    request.set_message(*std::move(m));
    return true;
  }

  void UploadMasked(const std::string& token, const SecureAgent& a,
                    const std::string& masked) {
    v1::UpdateMetadata m;
    m.set_session_token(token);
    m.set_round(a.round);
    m.set_base_version(coordinator_->GetStatus().model_version());
    m.set_upload_id("masked-1");
    m.set_masked(true);
    m.set_total_size_bytes(static_cast<int64_t>(masked.size()));
    m.set_xxh3_128(ToHex(Xxh3_128Of(masked)));
    std::unique_ptr<fedge::Upload> upload = Begin(m, "BeginUpload (masked)");
    if (upload == nullptr) return;
    if (!coordinator_->FeedUpload(*upload, masked).ok()) return;
    fuzz::Trace("FinishUpload (masked)",
                coordinator_->FinishUpload(std::move(upload)).status());
  }

  FakeClock clock_;
  std::unique_ptr<Coordinator> coordinator_;
  std::vector<std::string> tokens_;  // Live sessions; [0], [1] selected.
  SecureAgent secure_[2];
};

// ---------------------------------------------------------------------------
// The agent session.

absl::Status StatusFrom(int code) {
  // 0 is OK; the rest cycle through the codes the agent distinguishes.
  static constexpr absl::StatusCode kCodes[] = {
      absl::StatusCode::kOk,
      absl::StatusCode::kUnavailable,
      absl::StatusCode::kDeadlineExceeded,
      absl::StatusCode::kUnauthenticated,
      absl::StatusCode::kFailedPrecondition,
      absl::StatusCode::kAborted,
      absl::StatusCode::kInvalidArgument,
      absl::StatusCode::kNotFound,
      absl::StatusCode::kDataLoss,
      absl::StatusCode::kPermissionDenied,
      absl::StatusCode::kInternal,
  };
  return absl::Status(kCodes[code % std::size(kCodes)], "fuzz");
}

void RunAgent(const fuzz::ScratchDir& dir, InputReader& in) {
  const uint8_t flags = in.Byte();
  FakeCoordinatorClient client;
  v1::JoinResponse join;
  join.ParseFromString(std::string(in.Record()));
  client.join_results.push_back(join);
  for (int n = in.Byte() % 9; n > 0; --n) {
    v1::PollResponse poll;
    poll.ParseFromString(std::string(in.Record()));
    client.poll_results.push_back(poll);
  }
  for (int n = in.Byte() % 5; n > 0; --n) {
    const absl::Status status = StatusFrom(in.Byte());
    v1::SubmitUpdateResponse response;
    response.ParseFromString(std::string(in.Record()));
    client.submit_results.push_back(
        status.ok() ? absl::StatusOr<v1::SubmitUpdateResponse>(response)
                    : status);
  }
  for (int n = in.Byte() % 4; n > 0; --n) {
    client.fetch_errors.push_back(StatusFrom(1 + in.Byte() % 10));
  }
  absl::StatusOr<ModelState> served = DecodeModel(in.Rest());
  for (int64_t version = 0; version < 4; ++version) {
    client.models[version] = served.ok() ? served->Clone() : fuzz::SmallModel();
  }

  ModelCacheOptions cache_options;
  cache_options.state_dir = dir.Path("agent");
  // The agent's 1 MiB I/O buffer would be allocated and poisoned by ASan
  // for every cached model read or written; the cache's code is the same
  // (model_cache_fuzz).
  cache_options.io_chunk_bytes = 1 << 10;
  absl::StatusOr<std::unique_ptr<ModelCache>> cache =
      ModelCache::Open(cache_options);
  Check(cache.ok(), "ModelCache::Open");
  FakeClock clock;
  TrainerLog log;
  AgentOptions options;
  options.agent_id = "agent-1";
  options.architectures = {"logreg", "2nn"};
  options.keep_latest_model = (flags & 1) != 0;
  options.heartbeat_while_busy = false;  // No threads: reproducible.
  options.dropout_probability = (flags & 2) != 0 ? 0.5 : 0.0;
  options.compute_slowdown = (flags & 4) != 0 ? 2.0 : 1.0;
  options.give_up_after = absl::Minutes(10);
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Create(
      options, &client,
      [&log](const v1::JoinResponse& response)
          -> absl::StatusOr<std::unique_ptr<LocalTrainer>> {
        // What the LibTorch factory derives from the announced spec before
        // it builds the network (torch-free here).
        const ml::ModelSpec spec = ml::SpecFromProto(response.model());
        if (ml::CheckModelSpec(spec).ok()) {
          fuzz::Trace("ModelLayers", ml::ModelLayers(spec).status());
          fuzz::Trace("ComputeModelCost", ml::ComputeModelCost(spec).status());
        }
        return std::make_unique<FakeTrainer>(&log);
      },
      cache->get(), &clock,
      [&clock](absl::Duration d) {
        Check(d >= absl::ZeroDuration(), "the agent slept a negative time");
        clock.Advance(d);
      });
  Check(agent.ok(), "Agent::Create");
  const absl::Status ran = (*agent)->Run();
  const AgentStats& stats = (*agent)->stats();
  fuzz::Trace(
      absl::StrCat("Agent::Run: joins ", stats.joins, ", trained ",
                   stats.rounds_trained, ", submitted ",
                   stats.updates_submitted, ", fetched ", stats.models_fetched),
      ran);
  Check((*agent)->state() == AgentState::kDone, "Run() returned undone");
}

void FuzzOne(absl::string_view input) {
  static const fuzz::ScratchDir dir;
  ParseAll(input);
  InputReader in(input);
  const uint8_t session = in.Byte();
  dir.Clear();
  if ((session & 1) == 0) {
    CoordinatorSession(dir, kStrategies[(session >> 1) % kNumStrategies])
        .Run(in);
  } else {
    RunAgent(dir, in);
  }
}

// ---------------------------------------------------------------------------
// Seeds: a well-formed exchange of each kind.

std::string Serialized(const google::protobuf::Message& m) {
  return m.SerializeAsString();
}

// An upload of a zero delta (with SCAFFOLD's control-variate delta when
// `scaffold`), in chunks of 16 bytes, fixed up to pass every check.
void AppendUpload(InputWriter& w, bool scaffold, bool raw_chunks) {
  ModelState delta = fuzz::SmallModel();
  if (scaffold) {
    delta.Add(*TensorBuffer::FromFloats("scaffold.dc/w", {2}, {0.5f, 0.25f}));
    delta.Add(*TensorBuffer::FromFloats("scaffold.dc/b", {1}, {0.5f}));
  }
  const std::string bytes = EncodeModel(delta);
  v1::UpdateChunk first;
  v1::UpdateMetadata* m = first.mutable_metadata();
  m->set_upload_id("upload-1");
  m->set_num_examples(10);
  m->set_num_steps(3);
  m->mutable_metrics()->set_loss(0.5);
  w.Byte(kUpload).Byte(raw_chunks ? 1 | 4 | 8 | 16 | 32 : 1 | 4 | 8 | 16);
  w.Record(Serialized(first));
  const size_t n = (bytes.size() + 15) / 16;
  w.Byte(static_cast<uint8_t>(n));
  for (size_t i = 0; i < n; ++i) {
    v1::UpdateChunk chunk;
    chunk.set_data(bytes.substr(16 * i, 16));
    w.Record(raw_chunks ? chunk.data() : Serialized(chunk));
  }
}

// A secure round through its stages: both agents' clients play every step
// (SecAgg op, fix-ups 1 | 2), with ticks that close the stages.
std::string SecureSeed() {
  InputWriter w;
  w.Byte(static_cast<uint8_t>(4 << 1));  // "fedavg+secagg".
  for (int step = 0; step < 4; ++step) {
    for (uint8_t agent : {1, 3}) {  // Live token 0 and 1.
      w.Byte(kSecAgg).Byte(agent).Byte(1 | 2).Record("");
    }
    w.Byte(kTick).U16(1);
  }
  for (uint8_t agent : {1, 3})
    w.Byte(kSecAgg).Byte(agent).Byte(1 | 2).Record("");
  w.Byte(kTick).U16(1);
  return w.str();
}

std::vector<std::string> CoordinatorSeeds() {
  std::vector<std::string> seeds = {SecureSeed()};
  for (uint8_t strategy = 0; strategy < 4; ++strategy) {
    InputWriter w;
    w.Byte(static_cast<uint8_t>(strategy << 1));
    v1::JoinRequest join;
    join.set_agent_id("agent-3");
    join.set_num_examples(100);
    join.add_architectures("logreg");
    join.set_device_class("phone");
    join.set_examples_per_second(250);
    w.Byte(kJoin).Record(Serialized(join)).Record("");
    v1::PollRequest poll;
    poll.set_cached_model_version(-1);
    poll.set_no_wait(true);
    w.Byte(kPoll).Byte(1).Record(Serialized(poll));
    v1::FetchModelRequest fetch;
    fetch.set_version(-1);
    fetch.set_offset(5);
    w.Byte(kGetModel).Byte(1).Record(Serialized(fetch));
    w.Byte(kHeartbeat).Byte(3).Record("");
    AppendUpload(w, strategy == 1, strategy % 2 == 0);
    w.Byte(kUpload).Byte(1 | 4 | 8 | 16);     // The same upload again: a
    w.Record(Serialized(v1::UpdateChunk()));  // retry, then malformed.
    w.Byte(0);
    w.Byte(kTick).U16(1100);  // Past the round's deadline.
    w.Byte(kPoll).Byte(3).Record("");
    w.Byte(kOperator).Byte(3).Byte(5);
    w.Byte(kOperator).Byte(4).Record("agent-2");
    w.Byte(kLeave).Byte(1).Record("");
    w.Byte(kTick).U16(10);
    seeds.push_back(w.str());
  }
  return seeds;
}

std::vector<std::string> AgentSeeds() {
  const ModelState model = fuzz::SmallModel();
  const std::string sha = ToHex(Sha256Of(EncodeModel(model)));
  v1::JoinResponse join;
  join.set_session_token("session-1");
  join.set_agent_id("agent-1");
  join.set_heartbeat_interval_ms(1000);
  join.mutable_model()->set_architecture("logreg");
  join.set_partition_index(-1);
  v1::PollResponse wait;
  wait.set_wait_retry_after_ms(500);
  wait.set_latest_model_version(0);
  wait.set_latest_model_sha256(sha);
  v1::PollResponse train;
  v1::TrainTask* task = train.mutable_train();
  task->set_round(1);
  task->set_model_version(0);
  task->set_model_sha256(sha);
  task->set_model_size_bytes(EncodeModel(model).size());
  task->mutable_plan()->set_epochs(1);
  task->mutable_plan()->set_batch_size(16);
  task->mutable_plan()->set_learning_rate(0.1);
  task->mutable_plan()->set_seed(9);
  task->set_deadline_remaining_ms(60000);
  v1::SubmitUpdateResponse duplicate;
  duplicate.set_duplicate(true);
  std::vector<std::string> seeds;
  for (uint8_t flags : {0, 1, 7}) {
    InputWriter w;
    w.Byte(1).Byte(flags).Record(Serialized(join));
    w.Byte(3)
        .Record(Serialized(wait))
        .Record(Serialized(train))
        .Record(Serialized(train));
    w.Byte(2).Byte(1).Record("").Byte(0).Record(Serialized(duplicate));
    w.Byte(1).Byte(1);
    w.Bytes(EncodeModel(model));
    seeds.push_back(w.str());
  }
  return seeds;
}

std::vector<std::string> Seeds() {
  std::vector<std::string> seeds = CoordinatorSeeds();
  for (std::string& s : AgentSeeds()) seeds.push_back(std::move(s));
  return seeds;
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
