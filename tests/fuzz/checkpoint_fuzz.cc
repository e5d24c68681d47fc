// libFuzzer entry point for coordinator checkpoints (server/checkpoint_store.h)
// and what the coordinator does with the one it resumes from.
//
// The input is a mode byte, then the file's contents in one of three forms,
// so that the fuzzer also gets past the SHA-256 that closes every file:
//   mode & 3 == 0:      the file's bytes as they are;
//   mode & 3 == 1:      bytes to which the harness appends their SHA-256;
//   mode & 3 == 2:      U64 model_version, U64 next_round, U64
//                       completed_rounds, a record (U16 length) of extra
//                       state, then the model's encoding: the harness writes
//                       the header with the right sizes and the digest.
//   mode & 3 == 3:      not a file: an RdpAccountant state, and the privacy
//                       ledger's (server/round_privacy.h: "rounds N" then
//                       the accountant's), the text the coordinator
//                       checkpoints for DP-FedAvg: RestoreState, and for a
//                       state it takes, SaveState reads back the same and
//                       the epsilon is answered.
// mode >> 2 picks the strategy the coordinator runs (StrategyNames()); when
// (mode >> 2) / the number of strategies is odd and the strategy supports
// it, the coordinator runs with central DP, so it restores the checkpoint's
// privacy_accountant_state.
//
// The file is written as <dir>/checkpoints/ckpt-00000001.fedge. Then:
//   1. CheckpointStore::ReadFile, and LoadNewest over the directory: both
//      must agree (the same checkpoint, or none for a corrupt file).
//   2. When a checkpoint loads: Coordinator::Create over the directory,
//      which resumes from it: the model's schema, the extra state
//      (CoordinatorCheckpointExtra), the strategy's RestoreState, the
//      engine's progress. It must succeed or fail with a status.
// A crash, a sanitizer report or a broken property (abort) is a bug.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/model_codec.h"
#include "common/privacy_accountant.h"
#include "common/sha256.h"
#include "common/strategy.h"
#include "fedge/v1/config.pb.h"
#include "server/checkpoint_store.h"
#include "server/coordinator.h"
#include "server/round_privacy.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

constexpr char kFileName[] = "checkpoints/ckpt-00000001.fedge";

DecodeLimits Limits() {
  DecodeLimits limits;
  limits.max_total_bytes = 1 << 20;
  limits.max_decoded_bytes = 1 << 22;
  return limits;
}

std::string LittleEndian(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(v >> 8 * i));
  return out;
}

std::string WithDigest(absl::string_view body) {
  const Sha256Digest digest = Sha256Of(body);
  return absl::StrCat(
      body, absl::string_view(reinterpret_cast<const char*>(digest.data()),
                              digest.size()));
}

// The file the input describes (see the header comment).
std::string FileBytes(uint8_t mode, InputReader& in) {
  switch (mode & 3) {
    case 1:
      return WithDigest(in.Rest());
    case 2: {
      const uint64_t version = in.U64();
      const uint64_t next_round = in.U64();
      const uint64_t completed = in.U64();
      const absl::string_view extra = in.Record();
      const absl::string_view model = in.Rest();
      std::string body = absl::StrCat(
          "FEDGECK1", LittleEndian(1, 4), LittleEndian(version, 8),
          LittleEndian(next_round, 8), LittleEndian(completed, 8),
          LittleEndian(extra.size(), 8), LittleEndian(model.size(), 8));
      return WithDigest(absl::StrCat(body, extra, model));
    }
    default:
      return std::string(in.Rest());
  }
}

v1::CoordinatorConfig Config(const std::string& state_dir,
                             const std::string& strategy, bool dp) {
  v1::CoordinatorConfig c;
  if (dp && SupportsDifferentialPrivacy(strategy)) {
    c.mutable_strategy()->mutable_dp()->set_mode("central");
  }
  c.set_state_dir(state_dir);
  c.set_rounds(5);
  c.set_seed(11);
  v1::StrategyConfig* s = c.mutable_strategy();
  s->set_name(strategy);
  s->set_fraction(1.0);
  // Enough for every strategy (krum needs 2f+3 = 5).
  s->set_min_available_agents(5);
  s->set_min_fit_agents(5);
  s->set_round_deadline_ms(10000);
  return c;
}

bool SameCheckpoint(const Checkpoint& a, const Checkpoint& b) {
  return a.model_version == b.model_version && a.next_round == b.next_round &&
         a.completed_rounds == b.completed_rounds && a.extra == b.extra &&
         EncodeModel(a.model) == EncodeModel(b.model);
}

void FuzzAccountantState(absl::string_view state) {
  absl::StatusOr<std::unique_ptr<RdpAccountant>> accountant =
      RdpAccountant::Create({});
  Check(accountant.ok(), "RdpAccountant::Create");
  const absl::Status restored = (*accountant)->RestoreState(state);
  fuzz::Trace("RdpAccountant::RestoreState", restored);
  if (!restored.ok()) {
    Check(absl::IsInvalidArgument(restored),
          "RestoreState: not INVALID_ARGUMENT");
    return;
  }
  absl::StatusOr<std::unique_ptr<RdpAccountant>> again =
      RdpAccountant::Create({});
  Check(again.ok() && (*again)->RestoreState((*accountant)->SaveState()).ok(),
        "SaveState does not restore");
  Check(std::equal((*again)->rdp().begin(), (*again)->rdp().end(),
                   (*accountant)->rdp().begin(), (*accountant)->rdp().end(),
                   [](double a, double b) {
                     return a == b || (std::isnan(a) && std::isnan(b));
                   }),
        "SaveState/RestoreState changed the RDP");
  (*accountant)->GetEpsilon(1e-5).status().IgnoreError();

  StrategyOptions options;
  options.dp = DpFedAvgOptions();
  absl::StatusOr<std::unique_ptr<RoundPrivacy>> ledger =
      RoundPrivacy::Create(options);
  Check(ledger.ok(), "RoundPrivacy::Create");
  const absl::Status taken = (*ledger)->RestoreState(state);
  fuzz::Trace("RoundPrivacy::RestoreState", taken);
  if (!taken.ok()) {
    Check(absl::IsInvalidArgument(taken),
          "RoundPrivacy::RestoreState: not INVALID_ARGUMENT");
    return;
  }
  absl::StatusOr<std::unique_ptr<RoundPrivacy>> copy =
      RoundPrivacy::Create(options);
  Check(copy.ok() && (*copy)->RestoreState((*ledger)->SaveState()).ok() &&
            (*copy)->SaveState() == (*ledger)->SaveState(),
        "RoundPrivacy: SaveState does not restore");
  (*ledger)->Spent();
}

void FuzzOne(absl::string_view input) {
  static const fuzz::ScratchDir dir;
  static const std::vector<std::string> strategies = StrategyNames();
  InputReader in(input);
  const uint8_t mode = in.Byte();
  if ((mode & 3) == 3) return FuzzAccountantState(in.Rest());
  const std::string strategy = strategies[(mode >> 2) % strategies.size()];
  const bool dp = ((mode >> 2) / strategies.size()) % 2 == 1;
  // Every input starts from a directory holding only its file. ReadFile,
  // CheckpointStore::Create and LoadNewest write nothing there, so after
  // them the file is simply replaced; only a Coordinator (history, its own
  // checkpoints) leaves more, and only then is the directory emptied (most
  // inputs stop before: emptying and recreating it every time was a third
  // of this target's time, in the kernel).
  static bool coordinator_wrote = false;
  if (coordinator_wrote) dir.Clear();
  coordinator_wrote = false;
  const std::string path = dir.WriteFile(kFileName, FileBytes(mode, in));

  absl::StatusOr<Checkpoint> read = CheckpointStore::ReadFile(path, Limits());
  CheckpointStoreOptions options;
  options.dir = dir.Path("checkpoints");
  options.limits = Limits();
  absl::StatusOr<std::unique_ptr<CheckpointStore>> store =
      CheckpointStore::Create(options);
  Check(store.ok(), "CheckpointStore::Create");
  std::vector<std::string> skipped;
  absl::StatusOr<std::optional<Checkpoint>> newest =
      (*store)->LoadNewest(&skipped);
  Check(newest.ok(), "LoadNewest failed on a readable directory");
  fuzz::Trace("ReadFile", read.status());
  if (!read.ok()) {
    Check(absl::IsDataLoss(read.status()), "ReadFile: not DATA_LOSS");
    Check(!newest->has_value() && skipped.size() == 1,
          "LoadNewest took a file ReadFile refused");
    return;
  }
  Check(newest->has_value() && SameCheckpoint(*read, **newest),
        "LoadNewest and ReadFile disagree");

  coordinator_wrote = true;
  FakeClock clock;
  CoordinatorOptions coordinator;
  coordinator.config = Config(dir.path(), strategy, dp);
  coordinator.model_spec.set_architecture("logreg");
  coordinator.initial_model = fuzz::SmallModel();
  coordinator.clock = &clock;
  fuzz::Trace("Coordinator::Create",
              Coordinator::Create(std::move(coordinator)).status());
}

// ---------------------------------------------------------------------------
// Seeds: checkpoints as CheckpointStore::Save writes them, with the extra
// state a coordinator running each strategy would save.

std::string ExtraFor(const std::string& strategy) {
  const ModelState model = fuzz::SmallModel();
  StrategyOptions options;
  options.name = strategy;
  options.min_fit_agents = 5;
  absl::StatusOr<std::unique_ptr<Strategy>> s = CreateStrategy(options, model);
  Check(s.ok(), "CreateStrategy");
  v1::CoordinatorCheckpointExtra extra;
  extra.set_strategy_name(strategy);
  // fedavgm saves nothing before its first round: give it a velocity.
  extra.set_strategy_state(strategy == "fedavgm" ? EncodeModel(model)
                                                 : (*s)->SaveState());
  (*extra.mutable_partitions())["agent-1"] = 0;
  extra.add_evicted_agents("evicted-agent");
  extra.set_total_rounds(7);
  if (SupportsDifferentialPrivacy(strategy)) {
    StrategyOptions dp = options;
    dp.dp = DpFedAvgOptions();
    std::unique_ptr<RoundPrivacy> ledger = *RoundPrivacy::Create(dp);
    Check(ledger->ComposeRound(10).ok(), "ComposeRound");
    extra.set_privacy_accountant_state(ledger->SaveState());
  }
  return extra.SerializeAsString();
}

std::vector<std::string> Seeds() {
  const std::vector<std::string> strategies = StrategyNames();
  const ModelState model = fuzz::SmallModel();
  std::vector<std::string> seeds;
  fuzz::ScratchDir dir;
  CheckpointStoreOptions options;
  options.dir = dir.path();
  std::unique_ptr<CheckpointStore> store = *CheckpointStore::Create(options);
  for (size_t i = 0; i < strategies.size(); ++i) {
    Checkpoint ckpt;
    ckpt.model_version = 1;
    ckpt.next_round = 2;
    ckpt.completed_rounds = 1;
    ckpt.extra = ExtraFor(strategies[i]);
    absl::StatusOr<std::string> path = store->Save(ckpt, model);
    Check(path.ok(), "Save");
    absl::StatusOr<Checkpoint> back = CheckpointStore::ReadFile(*path);
    Check(back.ok(), "a saved checkpoint does not read back");
    const uint8_t strategy_bits = static_cast<uint8_t>(i << 2);
    std::ifstream file(*path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(file)),
                            std::istreambuf_iterator<char>());
    seeds.push_back(InputWriter().Byte(strategy_bits).Bytes(bytes).str());
    // The same checkpoint in the structured form.
    seeds.push_back(InputWriter()
                        .Byte(strategy_bits | 2)
                        .U64(1)
                        .U64(2)
                        .U64(1)
                        .Record(ckpt.extra)
                        .Bytes(EncodeModel(model))
                        .str());
  }
  // Accountant states: fresh, and after a few DP-FedAvg rounds.
  for (int64_t steps : {0, 3, 100}) {
    std::unique_ptr<RdpAccountant> accountant = *RdpAccountant::Create({});
    Check(accountant->Compose(0.1, 1.1, steps).ok(), "Compose");
    seeds.push_back(InputWriter().Byte(3).Bytes(accountant->SaveState()).str());
  }
  // A checkpoint with empty extra state, and one of another schema.
  ModelState other;
  other.Add(*TensorBuffer::FromFloats("x", {3}, {1.0f, 2.0f, 3.0f}));
  seeds.push_back(InputWriter()
                      .Byte(2)
                      .U64(1)
                      .U64(1)
                      .U64(0)
                      .Record("")
                      .Bytes(EncodeModel(model))
                      .str());
  seeds.push_back(InputWriter()
                      .Byte(2)
                      .U64(1)
                      .U64(1)
                      .U64(0)
                      .Record("")
                      .Bytes(EncodeModel(other))
                      .str());
  return seeds;
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
