#include "common/config_loader.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "fedge/v1/config.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::fedge::v1::SimConfig;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Writes `text` to a file in the test's temporary folder named after the
// running test and returns its path.
std::string WriteTempFile(const std::string& text,
                          const std::string& suffix = ".textproto") {
  const ::testing::TestInfo* info =
      ::testing::UnitTest::GetInstance()->current_test_info();
  std::string path = absl::StrCat(::testing::TempDir(), "config_loader_test_",
                                  info->name(), "_", getpid(), suffix);
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  EXPECT_TRUE(out.good()) << path;
  return path;
}

absl::StatusOr<CommandLine> Parse(std::vector<const char*> args,
                                  const CommandLineSpec& spec = {}) {
  return ParseCommandLine(static_cast<int>(args.size()), args.data(), spec);
}

// The DescribeFlags line that mentions `flag`, or "" when none does.
std::string LineFor(const std::string& description, const std::string& flag) {
  for (absl::string_view line : absl::StrSplit(description, '\n')) {
    if (absl::StrContains(line, absl::StrCat(flag, "="))) {
      return std::string(line);
    }
  }
  return "";
}

constexpr char kSimTextProto[] = R"pb(
  # A small simulation.
  num_agents: 20
  rounds: 5
  model { architecture: "mlp" hidden_units: 64 hidden_units: 32 }
  data { source: "synthetic" synthetic_train_examples: 1000 }
  train { epochs: 2 batch_size: 20 learning_rate: 0.05 }
  strategy { count: 4 }
)pb";

// ---------------------------------------------------------------------------
// LoadTextProtoFile.

TEST(LoadTextProtoFileTest, LoadsFieldsAndKeepsDefaults) {
  const std::string path = WriteTempFile(kSimTextProto);
  SimConfig config;
  absl::Status s = LoadTextProtoFile(path, &config);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(config.num_agents(), 20);
  EXPECT_EQ(config.rounds(), 5);
  EXPECT_EQ(config.model().architecture(), "mlp");
  EXPECT_THAT(config.model().hidden_units(), ElementsAre(64, 32));
  EXPECT_EQ(config.data().source(), "synthetic");
  EXPECT_EQ(config.data().synthetic_train_examples(), 1000);
  EXPECT_EQ(config.train().epochs(), 2);
  EXPECT_EQ(config.train().batch_size(), 20);
  EXPECT_DOUBLE_EQ(config.train().learning_rate(), 0.05);
  EXPECT_EQ(config.strategy().count(), 4);
  // Untouched fields keep their declared defaults and stay unset.
  EXPECT_EQ(config.seed(), 1u);
  EXPECT_FALSE(config.has_seed());
  EXPECT_EQ(config.data().data_dir(), "data/mnist");
  EXPECT_DOUBLE_EQ(config.strategy().fraction(), 0.1);
  EXPECT_FALSE(config.has_partition());
  std::remove(path.c_str());
}

TEST(LoadTextProtoFileTest, EmptyFile_IsOkWithDefaults) {
  const std::string path = WriteTempFile("");
  SimConfig config;
  ASSERT_TRUE(LoadTextProtoFile(path, &config).ok());
  EXPECT_EQ(config.num_agents(), 100);
  EXPECT_EQ(config.ByteSizeLong(), 0u);
  std::remove(path.c_str());
}

TEST(LoadTextProtoFileTest, MissingFile_IsNotFoundNamingPath) {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "config_loader_test_no_such_file_",
                   getpid(), ".textproto");
  SimConfig config;
  absl::Status s = LoadTextProtoFile(path, &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
}

TEST(LoadTextProtoFileTest, ParseError_IsInvalidArgumentWithFileAndLine) {
  const std::string path = WriteTempFile(
      "num_agents: 20\n"
      "rounds: 5\n"
      "train { batch_size: abc }\n");
  SimConfig config;
  absl::Status s = LoadTextProtoFile(path, &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_THAT(std::string(s.message()), HasSubstr("line 3"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("column"));
  std::remove(path.c_str());
}

TEST(LoadTextProtoFileTest, UnknownFieldInFile_IsInvalidArgumentWithLine) {
  const std::string path = WriteTempFile(
      "num_agents: 20\n"
      "\n"
      "\n"
      "num_agentz: 3\n");
  SimConfig config;
  absl::Status s = LoadTextProtoFile(path, &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("line 4"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("num_agentz"));
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------
// SetFieldByPath.

TEST(SetFieldByPathTest, TopLevelAndNestedScalars) {
  SimConfig config;
  ASSERT_TRUE(SetFieldByPath("rounds", "50", &config).ok());
  ASSERT_TRUE(SetFieldByPath("train.batch_size", "32", &config).ok());
  ASSERT_TRUE(SetFieldByPath("train.learning_rate", "0.05", &config).ok());
  ASSERT_TRUE(SetFieldByPath("seed", "18446744073709551615", &config).ok());
  ASSERT_TRUE(SetFieldByPath("data.csv_label_column", "-2", &config).ok());
  EXPECT_EQ(config.rounds(), 50);
  EXPECT_EQ(config.train().batch_size(), 32);
  EXPECT_DOUBLE_EQ(config.train().learning_rate(), 0.05);
  EXPECT_EQ(config.seed(), 18446744073709551615u);
  EXPECT_EQ(config.data().csv_label_column(), -2);
  // Siblings keep their defaults.
  EXPECT_EQ(config.train().epochs(), 1);
}

TEST(SetFieldByPathTest, OverridesLoadedValue) {
  const std::string path = WriteTempFile(kSimTextProto);
  SimConfig config;
  ASSERT_TRUE(LoadTextProtoFile(path, &config).ok());
  ASSERT_TRUE(SetFieldByPath("train.batch_size", "32", &config).ok());
  EXPECT_EQ(config.train().batch_size(), 32);
  EXPECT_EQ(config.train().epochs(), 2);  // From the file.
  std::remove(path.c_str());
}

TEST(SetFieldByPathTest, StringFieldIsTakenVerbatim) {
  SimConfig config;
  ASSERT_TRUE(
      SetFieldByPath("data.data_dir", "../shared/data/mnist", &config).ok());
  EXPECT_EQ(config.data().data_dir(), "../shared/data/mnist");
  // Quotes, backslashes, spaces and text-format syntax stay literal.
  const std::string tricky = R"(C:\dir "x" y: 1 # not a comment)";
  ASSERT_TRUE(SetFieldByPath("history_out", tricky, &config).ok());
  EXPECT_EQ(config.history_out(), tricky);
  ASSERT_TRUE(SetFieldByPath("model_out", "", &config).ok());
  EXPECT_TRUE(config.has_model_out());
  EXPECT_EQ(config.model_out(), "");
}

TEST(SetFieldByPathTest, BoolField) {
  SimConfig config;
  ASSERT_TRUE(config.data().synthetic_fallback());
  ASSERT_TRUE(SetFieldByPath("data.synthetic_fallback", "false", &config).ok());
  EXPECT_FALSE(config.data().synthetic_fallback());
  ASSERT_TRUE(SetFieldByPath("data.synthetic_fallback", "true", &config).ok());
  EXPECT_TRUE(config.data().synthetic_fallback());
  absl::Status s = SetFieldByPath("data.synthetic_fallback", "maybe", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("data.synthetic_fallback"));
}

TEST(SetFieldByPathTest, RepeatedFieldListReplacesOldList) {
  const std::string path = WriteTempFile(kSimTextProto);
  SimConfig config;
  ASSERT_TRUE(LoadTextProtoFile(path, &config).ok());
  ASSERT_THAT(config.model().hidden_units(), ElementsAre(64, 32));
  ASSERT_TRUE(SetFieldByPath("model.hidden_units", "100,50", &config).ok());
  EXPECT_THAT(config.model().hidden_units(), ElementsAre(100, 50));
  ASSERT_TRUE(SetFieldByPath("model.hidden_units", "7", &config).ok());
  EXPECT_THAT(config.model().hidden_units(), ElementsAre(7));
  ASSERT_TRUE(SetFieldByPath("model.input_shape", "1,28,28", &config).ok());
  EXPECT_THAT(config.model().input_shape(), ElementsAre(1, 28, 28));
  std::remove(path.c_str());
}

TEST(SetFieldByPathTest, RepeatedFieldBadItem_IsInvalidArgumentAndKeepsList) {
  SimConfig config;
  config.mutable_model()->add_hidden_units(64);
  config.mutable_model()->add_hidden_units(32);
  absl::Status s = SetFieldByPath("model.hidden_units", "100,abc", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.hidden_units"));
  EXPECT_THAT(config.model().hidden_units(), ElementsAre(64, 32));
}

TEST(SetFieldByPathTest, RepeatedFieldEmptyValue_ClearsList) {
  SimConfig config;
  config.mutable_model()->add_hidden_units(64);
  ASSERT_TRUE(SetFieldByPath("model.hidden_units", "", &config).ok());
  EXPECT_THAT(config.model().hidden_units(), IsEmpty());
}

TEST(SetFieldByPathTest, UnknownField_NamesItAndListsValidOnes) {
  SimConfig config;
  absl::Status s = SetFieldByPath("train.batchsize", "32", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(s.message());
  EXPECT_THAT(msg, HasSubstr("train.batchsize"));
  EXPECT_THAT(msg, HasSubstr("batch_size"));
  EXPECT_THAT(msg, HasSubstr("epochs"));
  EXPECT_THAT(msg, HasSubstr("learning_rate"));

  s = SetFieldByPath("roundz", "3", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("roundz"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("num_agents"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("rounds"));

  s = SetFieldByPath("trian.batch_size", "3", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("trian"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("train"));
}

TEST(SetFieldByPathTest, BadValue_NamesTheField) {
  SimConfig config;
  for (const auto& [field, value] :
       std::vector<std::pair<std::string, std::string>>{
           {"train.batch_size", "abc"},
           {"train.batch_size", "3.5"},
           {"train.batch_size", "3000000000"},  // Over int32.
           {"train.batch_size", ""},
           {"seed", "-1"},  // uint64.
           {"train.learning_rate", "fast"},
       }) {
    absl::Status s = SetFieldByPath(field, value, &config);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
        << field << "=" << value;
    EXPECT_THAT(std::string(s.message()), HasSubstr(field));
  }
  EXPECT_EQ(config.train().batch_size(), 10);
}

// A value must be exactly one value of the field's type: text-format syntax
// after it must not set other fields.
TEST(SetFieldByPathTest, ValueWithTrailingText_IsInvalidArgument) {
  SimConfig config;
  absl::Status s = SetFieldByPath("train.batch_size", "32 epochs: 7", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config.train().epochs(), 1);
  EXPECT_FALSE(config.train().has_epochs());

  s = SetFieldByPath("model.hidden_units", "100,50 num_classes: 3", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config.model().num_classes(), 10);
}

TEST(SetFieldByPathTest, MessageOrScalarMisuse_IsInvalidArgument) {
  SimConfig config;
  absl::Status s = SetFieldByPath("train", "5", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("batch_size"));
  s = SetFieldByPath("rounds.x", "5", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("rounds"));
  EXPECT_EQ(SetFieldByPath("", "5", &config).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SetFieldByPathTest, MessageInTextFormat_SetsItAndRepeatedOnesList) {
  SimConfig config;
  ASSERT_EQ(SetFieldByPath("train", "{batch_size: 32 epochs: 2}", &config),
            absl::OkStatus());
  EXPECT_EQ(config.train().batch_size(), 32);
  EXPECT_EQ(config.train().epochs(), 2);
  ASSERT_EQ(SetFieldByPath("strategy.device_plans",
                           "{device_class: 'a}{' epochs: 1} "
                           "{device_class: \"b\" update_encoding: 'topk'}",
                           &config),
            absl::OkStatus());
  ASSERT_EQ(config.strategy().device_plans_size(), 2);
  EXPECT_EQ(config.strategy().device_plans(0).device_class(), "a}{");
  EXPECT_EQ(config.strategy().device_plans(1).update_encoding(), "topk");
  // A bad element changes nothing.
  absl::Status s =
      SetFieldByPath("strategy.device_plans", "{epochs: 'x'}", &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("strategy.device_plans"));
  EXPECT_EQ(config.strategy().device_plans_size(), 2);
  // Two values for a single message.
  EXPECT_EQ(SetFieldByPath("train", "{epochs: 1} {epochs: 2}", &config).code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// ParseCommandLine.

TEST(ParseCommandLineTest, EqualsAndSpaceForms) {
  absl::StatusOr<CommandLine> cmd =
      Parse({"--train.batch_size=32", "--rounds", "50", "--data.data_dir=a=b"});
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_THAT(cmd->overrides,
              ElementsAre(Pair("train.batch_size", "32"), Pair("rounds", "50"),
                          Pair("data.data_dir", "a=b")));
  EXPECT_FALSE(cmd->help);
  EXPECT_TRUE(cmd->config_path.empty());
  EXPECT_THAT(cmd->positional, IsEmpty());
}

TEST(ParseCommandLineTest, ConfigAliasesOwnFlagsAndPositional) {
  CommandLineSpec spec;
  spec.own_flags = {"port_file", "log_level"};
  spec.aliases = {{"data_dir", "data.data_dir"}, {"lr", "train.learning_rate"}};
  absl::StatusOr<CommandLine> cmd =
      Parse({"run", "--config", "configs/sim/a.textproto", "--data_dir",
             "../shared/data/mnist", "--lr=0.05", "--port_file=/tmp/p",
             "--log_level", "WARNING", "--rounds=3", "extra"},
            spec);
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_EQ(cmd->config_path, "configs/sim/a.textproto");
  EXPECT_THAT(
      cmd->overrides,
      ElementsAre(Pair("data.data_dir", "../shared/data/mnist"),
                  Pair("train.learning_rate", "0.05"), Pair("rounds", "3")));
  EXPECT_THAT(cmd->flags, UnorderedElementsAre(Pair("port_file", "/tmp/p"),
                                               Pair("log_level", "WARNING")));
  EXPECT_THAT(cmd->positional, ElementsAre("run", "extra"));
  EXPECT_FALSE(cmd->help);
}

TEST(ParseCommandLineTest, ConfigEqualsForm) {
  absl::StatusOr<CommandLine> cmd = Parse({"--config=x.textproto"});
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_EQ(cmd->config_path, "x.textproto");
  EXPECT_THAT(cmd->overrides, IsEmpty());
}

TEST(ParseCommandLineTest, Help) {
  for (const char* flag : {"--help", "-h", "--helpfull"}) {
    absl::StatusOr<CommandLine> cmd = Parse({"--rounds=3", flag});
    ASSERT_TRUE(cmd.ok()) << cmd.status();
    EXPECT_TRUE(cmd->help) << flag;
    EXPECT_THAT(cmd->overrides, ElementsAre(Pair("rounds", "3")));
  }
}

TEST(ParseCommandLineTest, Empty) {
  absl::StatusOr<CommandLine> cmd = Parse({});
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_FALSE(cmd->help);
  EXPECT_TRUE(cmd->config_path.empty());
  EXPECT_THAT(cmd->overrides, IsEmpty());
  EXPECT_THAT(cmd->flags, IsEmpty());
  EXPECT_THAT(cmd->positional, IsEmpty());
}

TEST(ParseCommandLineTest, FlagWithoutValue_IsInvalidArgumentNamingIt) {
  absl::StatusOr<CommandLine> cmd = Parse({"--rounds=3", "--train.epochs"});
  EXPECT_EQ(cmd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cmd.status().message()), HasSubstr("--train.epochs"));
}

// With the config's descriptor a bool field's flag may stand alone.
TEST(ParseCommandLineTest, BareBoolFlag_MeansTrue) {
  CommandLineSpec spec;
  spec.config = v1::CoordinatorConfig::descriptor();
  spec.aliases = {{"insecure", "tls.insecure"}};
  absl::StatusOr<CommandLine> cmd = Parse(
      {"--exit_when_done", "--rounds", "2", "--tls.insecure", "--insecure",
       "--listen_address", "x:1", "--tls.require_client_cert"},
      spec);
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_THAT(
      cmd->overrides,
      ElementsAre(Pair("exit_when_done", "true"), Pair("rounds", "2"),
                  Pair("tls.insecure", "true"), Pair("tls.insecure", "true"),
                  Pair("listen_address", "x:1"),
                  Pair("tls.require_client_cert", "true")));
  EXPECT_THAT(cmd->positional, IsEmpty());
  v1::CoordinatorConfig config;
  config.set_exit_when_done(false);
  ASSERT_TRUE(BuildConfig(*cmd, &config).ok());
  EXPECT_TRUE(config.exit_when_done());
  EXPECT_TRUE(config.tls().insecure());
  EXPECT_EQ(config.rounds(), 2);
}

TEST(ParseCommandLineTest, BoolFlagWithValue_StillReadsIt) {
  CommandLineSpec spec;
  spec.config = v1::CoordinatorConfig::descriptor();
  spec.aliases = {{"insecure", "tls.insecure"}};
  absl::StatusOr<CommandLine> cmd =
      Parse({"--exit_when_done", "false", "--tls.insecure=false", "--insecure",
             "true", "--tls.require_client_cert", "0", "status"},
            spec);
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_THAT(
      cmd->overrides,
      ElementsAre(Pair("exit_when_done", "false"),
                  Pair("tls.insecure", "false"), Pair("tls.insecure", "true"),
                  Pair("tls.require_client_cert", "0")));
  EXPECT_THAT(cmd->positional, ElementsAre("status"));
  // A word that is not a bool after a bare bool flag is positional.
  cmd = Parse({"--insecure", "status"}, spec);
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  EXPECT_THAT(cmd->overrides, ElementsAre(Pair("tls.insecure", "true")));
  EXPECT_THAT(cmd->positional, ElementsAre("status"));
}

TEST(ParseCommandLineTest, UnknownFlag_IsNamedAsUnknownWithOrWithoutValue) {
  CommandLineSpec spec;
  spec.config = SimConfig::descriptor();
  const std::pair<std::vector<const char*>, std::string> cases[] = {
      {{"--bogus"}, "--bogus"},
      {{"--version", "--rounds=2"}, "--version"},
      {{"--bogus=1"}, "--bogus"},
      {{"--train.bogus", "3"}, "--train.bogus"}};
  for (const auto& [args, flag] : cases) {
    absl::StatusOr<CommandLine> cmd = Parse(args, spec);
    EXPECT_EQ(cmd.status().code(), absl::StatusCode::kInvalidArgument) << flag;
    const std::string message(cmd.status().message());
    EXPECT_THAT(message, HasSubstr("flag " + flag + ": unknown config field"));
    EXPECT_THAT(message, HasSubstr("'s fields ("));
    EXPECT_THAT(message, Not(HasSubstr("needs a value")));
  }
}

TEST(ParseCommandLineTest, KnownFlagWithoutValue_NeedsAValue) {
  CommandLineSpec spec;
  spec.config = SimConfig::descriptor();
  spec.own_flags = {"history_out"};
  for (const char* flag : {"--rounds", "--history_out", "--config"}) {
    absl::StatusOr<CommandLine> cmd = Parse({"--train.epochs=2", flag}, spec);
    EXPECT_EQ(cmd.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(cmd.status().message()),
                HasSubstr(absl::StrCat("flag ", flag, " needs a value")));
  }
}

// ---------------------------------------------------------------------------
// BuildConfig.

TEST(BuildConfigTest, FileThenOverridesInOrder) {
  const std::string path = WriteTempFile(kSimTextProto);
  const std::string config_flag = "--config=" + path;
  CommandLineSpec spec;
  spec.aliases = {{"data_dir", "data.data_dir"}};
  absl::StatusOr<CommandLine> cmd =
      Parse({config_flag.c_str(), "--train.batch_size=32", "--rounds", "7",
             "--data_dir", "/data/mnist", "--model.hidden_units=100,50",
             "--data.synthetic_fallback=false", "--rounds=9"},
            spec);
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  SimConfig config;
  absl::Status s = BuildConfig(*cmd, &config);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(config.num_agents(), 20);                  // File.
  EXPECT_EQ(config.train().epochs(), 2);               // File.
  EXPECT_EQ(config.train().batch_size(), 32);          // Flag over file.
  EXPECT_EQ(config.rounds(), 9);                       // Last flag wins.
  EXPECT_EQ(config.data().data_dir(), "/data/mnist");  // Alias.
  EXPECT_EQ(config.data().source(), "synthetic");      // File.
  EXPECT_FALSE(config.data().synthetic_fallback());
  EXPECT_THAT(config.model().hidden_units(), ElementsAre(100, 50));
  std::remove(path.c_str());
}

TEST(BuildConfigTest, NoConfigFile_OverridesDefaults) {
  absl::StatusOr<CommandLine> cmd = Parse({"--train.batch_size", "64"});
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  SimConfig config;
  ASSERT_TRUE(BuildConfig(*cmd, &config).ok());
  EXPECT_EQ(config.train().batch_size(), 64);
  EXPECT_EQ(config.num_agents(), 100);
}

TEST(BuildConfigTest, MissingConfigFile_IsNotFound) {
  CommandLine cmd;
  cmd.config_path = absl::StrCat(::testing::TempDir(),
                                 "config_loader_test_missing_", getpid());
  SimConfig config;
  absl::Status s = BuildConfig(cmd, &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(cmd.config_path));
}

TEST(BuildConfigTest, ConfigFileIsADirectory_IsInvalidArgumentNamingIt) {
  CommandLine cmd;
  cmd.config_path = ::testing::TempDir();
  SimConfig config;
  absl::Status s = BuildConfig(cmd, &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(
      std::string(s.message()),
      HasSubstr("config file '" + cmd.config_path + "' is a directory"));
}

TEST(BuildConfigTest, BadFile_IsInvalidArgumentWithLine) {
  CommandLine cmd;
  cmd.config_path =
      WriteTempFile("rounds: 3\nmodel {\n  architecture: 2nn\n}\n");
  SimConfig config;
  absl::Status s = BuildConfig(cmd, &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("line 3"));
  std::remove(cmd.config_path.c_str());
}

TEST(BuildConfigTest, BadOverride_NamesTheFlag) {
  absl::StatusOr<CommandLine> cmd = Parse({"--train.batch_sise=32"});
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  SimConfig config;
  absl::Status s = BuildConfig(*cmd, &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--train.batch_sise"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("batch_size"));

  cmd = Parse({"--rounds=many"});
  ASSERT_TRUE(cmd.ok()) << cmd.status();
  s = BuildConfig(*cmd, &config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--rounds"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("many"));
}

// ---------------------------------------------------------------------------
// DescribeFlags and ToTextProto.

TEST(DescribeFlagsTest, ListsNestedFieldsWithTypesAndDefaults) {
  const std::string d = DescribeFlags(SimConfig::descriptor());
  const std::string batch = LineFor(d, "--train.batch_size");
  EXPECT_THAT(batch, HasSubstr("--train.batch_size=<int32>"));
  EXPECT_THAT(batch, HasSubstr("(default 10)"));
  EXPECT_THAT(LineFor(d, "--train.learning_rate"), HasSubstr("(default 0.1)"));
  EXPECT_THAT(LineFor(d, "--num_agents"), HasSubstr("(default 100)"));
  EXPECT_THAT(LineFor(d, "--data.data_dir"),
              HasSubstr("(default \"data/mnist\")"));
  EXPECT_THAT(LineFor(d, "--data.synthetic_fallback"),
              HasSubstr("(default true)"));
  EXPECT_THAT(LineFor(d, "--model.hidden_units"),
              HasSubstr("--model.hidden_units=<int32,...>"));
  EXPECT_THAT(LineFor(d, "--model.hidden_units"), Not(HasSubstr("default")));
  EXPECT_THAT(LineFor(d, "--strategy.round_deadline_ms"),
              HasSubstr("(default 600000)"));
  // Messages themselves are not flags.
  EXPECT_EQ(LineFor(d, "--train"), "");
  EXPECT_EQ(LineFor(d, "--model"), "");
}

TEST(ToTextProtoTest, RoundTripsThroughLoad) {
  SimConfig config;
  config.set_rounds(12);
  config.mutable_train()->set_batch_size(32);
  config.mutable_model()->add_hidden_units(100);
  config.mutable_model()->add_hidden_units(50);
  config.mutable_data()->set_data_dir("a \"quoted\" dir");
  const std::string text = ToTextProto(config);
  EXPECT_THAT(text, HasSubstr("rounds: 12"));
  EXPECT_EQ(text.find('\n'), std::string::npos);  // One line, for logs.

  const std::string path = WriteTempFile(text);
  SimConfig loaded;
  ASSERT_TRUE(LoadTextProtoFile(path, &loaded).ok());
  EXPECT_EQ(loaded.SerializeAsString(), config.SerializeAsString());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace fedge
