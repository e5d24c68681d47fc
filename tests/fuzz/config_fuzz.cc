// libFuzzer entry point for configuration (common/config_loader.h,
// common/fl_config.h, edge_agent/agent_config.h): textproto files and
// command-line overrides, as fedge-sim, fedge-coordinator and fedge-agent
// read them, then the validators and what each binary builds from a config
// they accept.
//
// The input is a kind byte (SimConfig, CoordinatorConfig, AgentConfig), a
// record with the textproto file, then the command line: one argument per
// line (at most 32). The harness writes the file, parses the command line
// with the binary's CommandLineSpec, loads the file as --config, applies
// the overrides (BuildConfig) and validates. For a valid config:
//   - the strategy (CreateStrategy) and the round engine
//     (RoundEngine::Create) of the sim or coordinator must build, and the
//     agent (Agent::Create with ToAgentOptions) too: a validator that lets
//     a bad value through is a bug;
//   - the model spec (SpecFromConfig, CheckModelSpec, ComputeModelCost,
//     and InitialModelState for models under a million parameters, once
//     per distinct spec: it is a pure function of the spec, see
//     FirstInitOf);
//   - ToTextProto must parse back to the same config.
// Also DescribeFlags once. A crash, a sanitizer report or a broken
// property (abort) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/config_loader.h"
#include "common/fl_config.h"
#include "common/ml/model_cost.h"
#include "common/ml/model_init.h"
#include "common/ml/model_spec.h"
#include "common/strategy.h"
#include "edge_agent/agent.h"
#include "edge_agent/agent_config.h"
#include "edge_agent/model_cache.h"
#include "fedge/v1/config.pb.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"
#include "server/engine_config.h"
#include "server/round_engine.h"
#include "tests/edge_agent/fake_coordinator_client.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

constexpr int kMaxArgs = 32;
constexpr int64_t kMaxInitParameters = 1 << 20;

enum Kind : uint8_t { kSim, kCoordinator, kAgent, kNumKinds };

// The binaries' specs (server/sim/main.cc, server/coordinator_main.cc,
// edge_agent/main.cc).
CommandLineSpec SpecFor(Kind kind) {
  CommandLineSpec spec;
  switch (kind) {
    case kCoordinator:
      spec.aliases = {{"insecure", "tls.insecure"}};
      spec.config = v1::CoordinatorConfig::descriptor();
      break;
    case kAgent:
      spec.own_flags = {"limit", "split"};
      spec.aliases = {{"data_dir", "data.data_dir"},
                      {"insecure", "tls.insecure"}};
      spec.config = v1::AgentConfig::descriptor();
      break;
    default:
      spec.aliases = {{"data_dir", "data.data_dir"}};
      spec.config = v1::SimConfig::descriptor();
      break;
  }
  return spec;
}

// Every field of `spec`, exactly (the width multiplier's bits), each
// length-prefixed.
std::string SpecKey(const ml::ModelSpec& spec) {
  uint64_t width_bits = 0;
  static_assert(sizeof(width_bits) == sizeof(spec.width_multiplier));
  std::memcpy(&width_bits, &spec.width_multiplier, sizeof(width_bits));
  std::string key;
  for (const std::string& field :
       {spec.architecture, absl::StrJoin(spec.input_shape, ","),
        absl::StrCat(spec.num_classes), absl::StrJoin(spec.hidden_units, ","),
        absl::StrCat(spec.init_seed), absl::StrCat(width_bits),
        spec.torchscript_path, spec.torchscript_sha256,
        absl::StrCat(spec.torchscript_size_bytes)}) {
    absl::StrAppend(&key, field.size(), ":", field, ";");
  }
  return key;
}

// True the first time `spec` is seen since the memo was last emptied
// (bounded: emptied at kInitMemoSize specs). InitialModelState is a pure
// function of the spec (ModelLayers, then a generator seeded by init_seed),
// and most inputs carry one of the seeds' model sections while the fuzzer
// changes the rest of the config; running it again for a spec it already
// ran on finds nothing new but cost up to a million random draws per input
// (most of this target's time).
bool FirstInitOf(const ml::ModelSpec& spec) {
  constexpr size_t kInitMemoSize = 1024;
  static std::set<std::string>* const seen = new std::set<std::string>();
  if (seen->size() >= kInitMemoSize) seen->clear();
  return seen->insert(SpecKey(spec)).second;
}

void CheckModel(const v1::ModelConfig& config) {
  const ml::ModelSpec spec = ml::SpecFromConfig(config);
  if (!ml::CheckModelSpec(spec).ok()) return;
  ml::SpecFromProto(ml::SpecToProto(spec));
  absl::StatusOr<ml::ModelCost> cost = ml::ComputeModelCost(spec);
  Check(cost.ok(), "ComputeModelCost of a spec CheckModelSpec accepts");
  if (cost->parameters >= 0 && cost->parameters <= kMaxInitParameters &&
      FirstInitOf(spec)) {
    fuzz::Trace("InitialModelState", ml::InitialModelState(spec).status());
  }
}

void CheckRounds(const v1::StrategyConfig& strategy,
                 const v1::TrainPlanConfig& train, uint64_t seed, int rounds) {
  absl::StatusOr<std::unique_ptr<Strategy>> created = CreateStrategy(
      ToStrategyOptions(strategy, train, seed), fuzz::SmallModel());
  fuzz::Trace("CreateStrategy", created.status());
  Check(created.ok(), "CreateStrategy refused a validated config");
  FakeClock clock;
  absl::StatusOr<std::unique_ptr<RoundEngine>> engine =
      RoundEngine::Create(ToRoundEngineOptions(strategy, rounds), &clock);
  fuzz::Trace("RoundEngine::Create", engine.status());
  Check(engine.ok(), "RoundEngine::Create refused a validated config");
}

void CheckAgent(const v1::AgentConfig& config) {
  static const fuzz::ScratchDir dir;
  static ModelCache* const cache = [] {
    ModelCacheOptions options;
    options.state_dir = dir.path();
    absl::StatusOr<std::unique_ptr<ModelCache>> c = ModelCache::Open(options);
    Check(c.ok(), "ModelCache::Open");
    return c->release();
  }();
  FakeCoordinatorClient client;
  FakeClock clock;
  AgentOptions options = ToAgentOptions(config);
  options.agent_id = "agent-1";
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Create(
      options, &client,
      [](const v1::JoinResponse&)
          -> absl::StatusOr<std::unique_ptr<LocalTrainer>> {
        return absl::UnimplementedError("no trainer");
      },
      cache, &clock, [](absl::Duration) {});
  fuzz::Trace("Agent::Create", agent.status());
  Check(agent.ok(), "Agent::Create refused a validated config");
  ToLinkProfile(config.profile());
}

// Validates `config` and, when valid, builds what its binary builds.
void Use(const v1::SimConfig& c) {
  if (!ValidateSimConfig(c).ok()) return;
  CheckRounds(c.strategy(), c.train(), c.seed(), c.rounds());
  CheckModel(c.model());
}
void Use(const v1::CoordinatorConfig& c) {
  if (!ValidateCoordinatorConfig(c).ok()) return;
  CheckRounds(c.strategy(), c.train(), c.seed(), c.rounds());
  CheckModel(c.model());
}
void Use(const v1::AgentConfig& c) {
  const absl::Status valid = ValidateAgentConfig(c);
  fuzz::Trace("ValidateAgentConfig", valid);
  if (!valid.ok()) return;
  CheckAgent(c);
}

template <typename Config>
void Load(const fuzz::ScratchDir& dir, const CommandLine& cmd) {
  Config config;
  const absl::Status built = BuildConfig(cmd, &config);
  fuzz::Trace("BuildConfig", built);
  if (!built.ok()) return;
  Use(config);
  // The effective configuration, as logged, reads back as itself.
  Config again;
  const std::string path =
      dir.WriteFile("again.textproto", ToTextProto(config));
  Check(LoadTextProtoFile(path, &again).ok(), "ToTextProto does not parse");
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  Check(differencer.Compare(config, again),
        "ToTextProto does not read back as the same config");
}

void FuzzOne(absl::string_view input) {
  static const fuzz::ScratchDir dir;
  static const bool described = [] {
    DescribeFlags(v1::SimConfig::descriptor());
    DescribeFlags(v1::CoordinatorConfig::descriptor());
    DescribeFlags(v1::AgentConfig::descriptor());
    return true;
  }();
  (void)described;
  InputReader in(input);
  const Kind kind = static_cast<Kind>(in.Byte() % kNumKinds);
  const std::string path = dir.WriteFile("config.textproto", in.Record());
  std::vector<std::string> args = absl::StrSplit(in.Rest(), '\n');
  if (args.size() > kMaxArgs) args.resize(kMaxArgs);
  if (args.size() == 1 && args[0].empty()) args.clear();
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  absl::StatusOr<CommandLine> cmd = ParseCommandLine(
      static_cast<int>(argv.size()), argv.data(), SpecFor(kind));
  fuzz::Trace("ParseCommandLine", cmd.status());
  if (!cmd.ok()) return;
  cmd->config_path = path;  // Never a path from the input.
  switch (kind) {
    case kSim:
      Load<v1::SimConfig>(dir, *cmd);
      break;
    case kCoordinator:
      Load<v1::CoordinatorConfig>(dir, *cmd);
      break;
    default:
      Load<v1::AgentConfig>(dir, *cmd);
      break;
  }
}

// Seeds: every config in the source tree's configs/<sim|coordinator|agent>/
// (FEDGE_SOURCE_DIR), alone and with a few overrides of each binary.
std::vector<std::string> Seeds() {
  const std::pair<Kind, const char*> kDirs[] = {
      {kSim, "sim"}, {kCoordinator, "coordinator"}, {kAgent, "agent"}};
  const char* const kOverrides[] = {
      "--rounds=7\n--train.learning_rate\n0.01\n--data_dir=/x\n"
      "--strategy.name=krum\n--strategy.min_fit_agents=5\n"
      "--model.architecture=mlp\n--model.hidden_units=1,2,3",
      "--insecure=true\n--strategy.name=scaffold\n--model.input_shape=3,32,32"
      "\n--help",
      "--tls.insecure=true\n--limit=100\n--split\ntest\n"
      "--profile.dropout_probability=0.5\npositional",
  };
  std::vector<std::string> seeds;
  for (const auto& [kind, name] : kDirs) {
    const std::filesystem::path dir =
        std::filesystem::path(FEDGE_SOURCE_DIR) / "configs" / name;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      std::ifstream in(entry.path());
      const std::string text((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
      seeds.push_back(InputWriter().Byte(kind).Record(text).str());
      seeds.push_back(
          InputWriter().Byte(kind).Record(text).Bytes(kOverrides[kind]).str());
    }
  }
  Check(seeds.size() >= 6, "no configs found under FEDGE_SOURCE_DIR");
  return seeds;
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
