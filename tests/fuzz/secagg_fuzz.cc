// libFuzzer entry point for secure aggregation (common/secagg/): every
// message decoder of messages.h, and the server's and the clients' steps
// fed a fuzzed message in the middle of an otherwise honest session.
//
// The input is a flags byte (bit 0: the SecAgg+ graph, n = 5, k = 2, t = 2,
// else the complete graph, n = 3, t = 2; bit 1: the harness prepends the
// 37-byte header the message at that step would carry, so the fuzzer works
// on the body), a step byte, a client byte (the victim, 1..n), then the
// message. The session (deterministic randomness, 4-element inputs) runs
// round by round, the server and only the client under test for real (the
// victim at a client step; the other clients' messages are replayed from
// an honest session recorded once: three times the inputs per second); at
// the chosen step the victim's message is replaced:
//   0-3  the server receives it as the victim's AdvertiseKeys, ShareKeys,
//        MaskedInput or UnmaskingResponse;
//   4-6  the victim's client receives it as its KeyDirectory,
//        EncryptedShares or UnmaskingRequest;
//   7    nothing is replaced (the decoders only).
// Every decoder also parses the message. Properties (server.h, client.h):
// a fuzzed message is refused with INVALID_ARGUMENT or accepted; a refused
// message changes nothing: the honest one is delivered next and must be
// accepted, and the session must then end with the exact sum of every
// client's input. A
// crash, a sanitizer report or a broken property (abort) is a bug.
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/random.h"
#include "common/secagg/client.h"
#include "common/secagg/config.h"
#include "common/secagg/messages.h"
#include "common/secagg/quantization.h"
#include "common/secagg/server.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge::secagg {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

enum Step : uint8_t {
  kServerAdvertiseKeys,
  kServerShareKeys,
  kServerMaskedInput,
  kServerUnmaskingResponse,
  kClientKeyDirectory,
  kClientEncryptedShares,
  kClientUnmaskingRequest,
  kNoStep,
  kNumSteps
};

SecAggConfig Config(bool sparse) {
  SecAggConfig c;
  c.session_id = sparse ? "fuzz-secagg-plus" : "fuzz-secagg";
  c.num_clients = sparse ? 5 : 3;
  c.neighbors = sparse ? 2 : 0;
  c.threshold = 2;
  c.vector_length = 4;
  c.max_abs_value = 1.0;
  return c;
}

RandomSource SeededRandom(uint64_t seed) {
  auto rng = std::make_shared<DeterministicRng>(seed);
  return [rng](absl::Span<uint8_t> out) {
    for (uint8_t& b : out) b = static_cast<uint8_t>(rng->NextBits());
  };
}

void DecodeAll(const MessageContext& ctx, absl::string_view bytes) {
  DecodeAdvertiseKeys(ctx, bytes).status().IgnoreError();
  DecodeKeyDirectory(ctx, bytes).status().IgnoreError();
  DecodeShareKeys(ctx, bytes).status().IgnoreError();
  DecodeEncryptedShares(ctx, bytes).status().IgnoreError();
  DecodeMaskedInput(ctx, bytes).status().IgnoreError();
  DecodeUnmaskingRequest(ctx, bytes).status().IgnoreError();
  DecodeUnmaskingResponse(ctx, bytes).status().IgnoreError();
}

// What each client sends at each stage (0-3) of an honest session, by
// client id. Clients draw deterministic randomness, so every session of a
// graph sends the same until a fuzzed message is accepted.
using Transcript = std::map<int, std::array<std::string, 4>>;

bool IsClientStep(Step step) {
  return step == kClientKeyDirectory || step == kClientEncryptedShares ||
         step == kClientUnmaskingRequest;
}

// One session. At step `step` the victim's message is `fuzzed` (with the
// honest message's header first when `add_header`); `honest` collects the
// honest message of that step (for seeds). With `replay`, only the client
// under test (the victim at a client step) runs: the others' messages are
// the honest transcript's, which is what they would send, at a fraction of
// the cost (the clients' key agreements and encryptions are most of a
// session's). After an accepted fuzzed message the replayed clients stay
// honest, as real ones would until the server's answers change. Without
// `replay` every client runs, and their messages go to `record` (if set).
class Session {
 public:
  Session(bool sparse, Step step, int victim, absl::string_view fuzzed,
          bool add_header, const Transcript* replay,
          Transcript* record = nullptr)
      : config_(Config(sparse)),
        step_(step),
        victim_(victim),
        fuzzed_(fuzzed),
        add_header_(add_header),
        replay_(replay),
        record_(record) {
    absl::StatusOr<std::unique_ptr<SecAggServer>> server =
        SecAggServer::Create({config_});
    Check(server.ok(), "SecAggServer::Create");
    server_ = *std::move(server);
    DeterministicRng rng(7);
    for (int id = 1; id <= config_.num_clients; ++id) {
      std::vector<float>& x = inputs_[id];
      for (int64_t i = 0; i < config_.vector_length; ++i) {
        x.push_back(static_cast<float>(2 * rng.UniformDouble() - 1));
      }
      if (replay_ != nullptr && !(IsClientStep(step) && id == victim)) {
        continue;
      }
      absl::StatusOr<std::unique_ptr<SecAggClient>> client =
          SecAggClient::Create({config_, id, SeededRandom(100 + id)});
      Check(client.ok(), "SecAggClient::Create");
      clients_[id] = *std::move(client);
    }
  }

  // Runs every round and Finish; checks the property when the fuzzed
  // message was refused (or there was none).
  void Run() {
    if (!Rounds()) return;
    absl::StatusOr<SecAggResult> result = server_->Finish();
    if (accepted_fuzz_) return;
    Check(result.ok(), "a session with the fuzzed message refused failed");
    Check(static_cast<int>(result->clients.size()) == config_.num_clients,
          "a client is missing from the sum");
    Check(result->ring_sum == ExactRingSum(), "wrong sum");
  }

  const std::string& honest() const { return honest_; }

 private:
  // The message delivered instead of `honest` at `step` for `id`.
  bool Replaces(Step step, int id) const {
    return step_ == step && victim_ == id;
  }
  std::string Fuzzed(absl::string_view honest) {
    honest_ = std::string(honest);
    return add_header_ ? absl::StrCat(honest.substr(0, kHeaderBytes), fuzzed_)
                       : std::string(fuzzed_);
  }

  // What client `id` sends at `stage`: `call` on its client, or replayed.
  template <typename Call>
  absl::StatusOr<std::string> FromClient(int stage, int id, Call call) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return replay_->at(id)[stage];
    absl::StatusOr<std::string> out = call(*it->second);
    if (record_ != nullptr && out.ok()) (*record_)[id][stage] = *out;
    return out;
  }

  // The server receives `honest` from `id`, or first the fuzzed message.
  template <typename Receive>
  void Deliver(Step step, int id, const std::string& honest, Receive receive) {
    if (Replaces(step, id)) {
      const absl::Status fuzzed = receive(id, Fuzzed(honest));
      fuzz::Trace("server receives the fuzzed message", fuzzed);
      if (fuzzed.ok()) {
        accepted_fuzz_ = true;
        return;
      }
      Check(absl::IsInvalidArgument(fuzzed),
            "the server refused a message with another code than "
            "INVALID_ARGUMENT");
      const absl::Status again = receive(id, honest);
      fuzz::Trace("server receives the honest message", again);
      Check(again.ok(), "the honest message after a refused one");
      return;
    }
    if (!receive(id, honest).ok()) Check(accepted_fuzz_, "an honest message");
  }

  // The client `id` answers `honest`, or first the fuzzed message.
  template <typename Answer>
  absl::StatusOr<std::string> Ask(Step step, int id, const std::string& honest,
                                  Answer answer) {
    if (Replaces(step, id)) {
      absl::StatusOr<std::string> fuzzed = answer(Fuzzed(honest));
      fuzz::Trace("client answers the fuzzed message", fuzzed.status());
      if (fuzzed.ok()) {
        accepted_fuzz_ = true;
        return fuzzed;
      }
      Check(absl::IsInvalidArgument(fuzzed.status()),
            "a client refused a message with another code than "
            "INVALID_ARGUMENT");
    }
    absl::StatusOr<std::string> out = answer(honest);
    if (!out.ok()) Check(accepted_fuzz_, "an honest client step");
    return out;
  }

  bool Rounds() {
    // Round 0.
    for (int id = 1; id <= config_.num_clients; ++id) {
      absl::StatusOr<std::string> keys =
          FromClient(0, id, [](SecAggClient& c) { return c.AdvertiseKeys(); });
      Check(keys.ok(), "AdvertiseKeys");
      Deliver(kServerAdvertiseKeys, id, *keys, [&](int i, std::string m) {
        return server_->ReceiveAdvertiseKeys(i, m);
      });
    }
    if (!server_->CloseAdvertiseKeys().ok()) return Closed();
    // Round 1.
    for (int id : server_->KeysAdvertised()) {
      absl::StatusOr<std::string> directory = server_->KeyDirectoryFor(id);
      Check(directory.ok(), "KeyDirectoryFor");
      absl::StatusOr<std::string> shares =
          Ask(kClientKeyDirectory, id, *directory, [&](std::string m) {
            return FromClient(1, id,
                              [&](SecAggClient& c) { return c.ShareKeys(m); });
          });
      if (!shares.ok()) continue;
      Deliver(kServerShareKeys, id, *shares, [&](int i, std::string m) {
        return server_->ReceiveShareKeys(i, m);
      });
    }
    if (!server_->CloseShareKeys().ok()) return Closed();
    // Round 2.
    for (int id : server_->SharesReceived()) {
      absl::StatusOr<std::string> encrypted = server_->EncryptedSharesFor(id);
      Check(encrypted.ok(), "EncryptedSharesFor");
      absl::StatusOr<std::string> masked =
          Ask(kClientEncryptedShares, id, *encrypted, [&](std::string m) {
            return FromClient(2, id, [&](SecAggClient& c) {
              return c.MaskInput(m, inputs_[id]);
            });
          });
      if (!masked.ok()) continue;
      Deliver(kServerMaskedInput, id, *masked, [&](int i, std::string m) {
        return server_->ReceiveMaskedInput(i, m);
      });
    }
    if (!server_->CloseMaskedInputs().ok()) return Closed();
    // Round 3.
    for (int id : server_->InputsReceived()) {
      absl::StatusOr<std::string> request = server_->UnmaskingRequestFor(id);
      Check(request.ok(), "UnmaskingRequestFor");
      absl::StatusOr<std::string> response =
          Ask(kClientUnmaskingRequest, id, *request, [&](std::string m) {
            return FromClient(3, id,
                              [&](SecAggClient& c) { return c.Unmask(m); });
          });
      if (!response.ok()) continue;
      Deliver(kServerUnmaskingResponse, id, *response,
              [&](int i, std::string m) {
                return server_->ReceiveUnmaskingResponse(i, m);
              });
    }
    return true;
  }

  // A round could not close: only after an accepted fuzzed message.
  bool Closed() {
    Check(accepted_fuzz_, "an honest session failed a round");
    return false;
  }

  std::vector<uint32_t> ExactRingSum() const {
    absl::StatusOr<Quantizer> q =
        Quantizer::Create({config_.num_clients, config_.max_abs_value});
    Check(q.ok(), "Quantizer::Create");
    std::vector<uint32_t> sum(config_.vector_length, 0);
    for (const auto& [id, x] : inputs_) {
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += q->QuantizeOne(x[i]);
    }
    return sum;
  }

  const SecAggConfig config_;
  const Step step_;
  const int victim_;
  const absl::string_view fuzzed_;
  const bool add_header_;
  const Transcript* const replay_;
  Transcript* const record_;
  std::unique_ptr<SecAggServer> server_;
  std::map<int, std::unique_ptr<SecAggClient>> clients_;
  std::map<int, std::vector<float>> inputs_;
  bool accepted_fuzz_ = false;
  std::string honest_;
};

// The honest transcript of each graph, recorded once from a session of
// real clients (which must end with the exact sum).
const Transcript& HonestTranscript(bool sparse) {
  static const std::array<Transcript, 2> transcripts = [] {
    std::array<Transcript, 2> t;
    for (int g = 0; g < 2; ++g) {
      Session(g == 1, kNoStep, 1, "", false, nullptr, &t[g]).Run();
      const int n = Config(g == 1).num_clients;
      Check(static_cast<int>(t[g].size()) == n, "a client sent nothing");
      for (const auto& [id, sent] : t[g]) {
        for (const std::string& m : sent) {
          Check(!m.empty(), "a client's stage went unrecorded");
        }
      }
    }
    return t;
  }();
  return transcripts[sparse ? 1 : 0];
}

void FuzzOne(absl::string_view input) {
  InputReader in(input);
  const uint8_t flags = in.Byte();
  const bool sparse = (flags & 1) != 0;
  const Step step = static_cast<Step>(in.Byte() % kNumSteps);
  const SecAggConfig config = Config(sparse);
  const int victim = 1 + in.Byte() % config.num_clients;
  const absl::string_view message = in.Rest();
  const MessageContext ctx{ConfigDigest(config), config.num_clients,
                           config.vector_length};
  DecodeAll(ctx, message);
  if (step == kNoStep) return;
  Session(sparse, step, victim, message, (flags & 2) != 0,
          &HonestTranscript(sparse))
      .Run();
}

// Seeds: at every step, for both graphs, the honest message whole and
// without its header (which the harness then adds).
std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  for (uint8_t sparse = 0; sparse < 2; ++sparse) {
    for (uint8_t step = 0; step < kNoStep; ++step) {
      // An empty message is refused: the session records the honest one.
      Session session(sparse, static_cast<Step>(step), 2, "", false,
                      &HonestTranscript(sparse != 0));
      session.Run();
      const std::string& honest = session.honest();
      Check(honest.size() > kHeaderBytes, "no honest message recorded");
      seeds.push_back(
          InputWriter().Byte(sparse).Byte(step).Byte(1).Bytes(honest).str());
      seeds.push_back(InputWriter()
                          .Byte(sparse | 2)
                          .Byte(step)
                          .Byte(1)
                          .Bytes(honest.substr(kHeaderBytes))
                          .str());
    }
  }
  return seeds;
}

}  // namespace
}  // namespace fedge::secagg

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fedge::fuzz::QuietLogs();
  fedge::fuzz::MaybeWriteSeeds(fedge::secagg::Seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fedge::secagg::FuzzOne(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
