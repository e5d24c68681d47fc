// End-to-end: the real programs' answers to mistaken command lines (a wrong
// file for a flag, a value out of range, a misspelt flag), each refused
// before any work with an error naming the flag and the fix. No coordinator
// is started: every case fails before a connection.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/process.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kBin = FEDGE_BINARY_DIR;
const std::string kFedge = kBin + "/server/fedge";

class CliE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/fedge_cli_e2e.", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs `argv`; its exit code (128 + the signal when killed, -1 when it
  // hangs), output in *log.
  int Run(const std::vector<std::string>& argv, std::string* log) {
    Process p(argv, absl::StrCat(dir_, "/log", runs_++));
    const std::optional<int> rc = p.Wait(absl::Seconds(60));
    *log = p.Log();
    return rc.value_or(-1);
  }
  // `fedge ARGS...` against a port nobody listens on.
  int Fedge(std::vector<std::string> args, std::string* log) {
    args.insert(args.begin(), kFedge);
    args.push_back("--coordinator=127.0.0.1:1");
    return Run(args, log);
  }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
  int runs_ = 0;
};

TEST_F(CliE2eTest, Fedge_OperatorTokenPathAtAKey_RefusedWithoutPrintingIt) {
  const std::string key = Write(
      "operator-1.key",
      "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0w\n"
      "-----END PRIVATE KEY-----\n");
  std::string log;
  EXPECT_EQ(
      Fedge({"status", "--insecure", "--operator_token_path=" + key}, &log), 2)
      << log;
  EXPECT_THAT(log, HasSubstr("--operator_token_path: the operator token in " +
                             key + " is not a token: it has 3 lines"));
  EXPECT_THAT(log, Not(HasSubstr("PRIVATE KEY")));
  EXPECT_THAT(log, Not(HasSubstr("MIGH")));
  EXPECT_THAT(log, Not(HasSubstr("assertion failed")));
  // A token file with a trailing newline is still read: the call is made
  // (and fails, nobody listening).
  const std::string token = Write("operator_token", "ot-0123456789abcdef\n");
  EXPECT_EQ(Fedge({"status", "--insecure", "--timeout_seconds=1",
                   "--operator_token_path=" + token},
                  &log),
            1)
      << log;
  EXPECT_THAT(log, HasSubstr("127.0.0.1:1: "));
  EXPECT_THAT(log, Not(HasSubstr("not a token")));
}

TEST_F(CliE2eTest, Fedge_TimeoutNotPositive_RefusedNamingTheField) {
  for (const char* timeout : {"0", "-1"}) {
    std::string log;
    EXPECT_EQ(
        Fedge({"status", "--insecure", "--timeout_seconds", timeout}, &log), 2)
        << log;
    EXPECT_THAT(log, HasSubstr("config field 'timeout_seconds' must be >= 1, "
                               "got " +
                               std::string(timeout)));
    EXPECT_THAT(log, Not(HasSubstr("DEADLINE_EXCEEDED")));
  }
}

TEST_F(CliE2eTest, Fedge_CertificateWithoutKey_FixNamesTheKeyBesideIt) {
  const std::string ca = Write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
  std::string log;
  EXPECT_EQ(Fedge({"status", "--tls.ca_path", ca, "--tls.cert_path",
                   "certs/operator-1.pem"},
                  &log),
            2)
      << log;
  EXPECT_THAT(log, HasSubstr("tls.key_path is required for mutual TLS"));
  EXPECT_THAT(log, HasSubstr("--tls.key_path=certs/operator-1.key"));
  EXPECT_THAT(log, Not(HasSubstr("agent-<i>")));
}

TEST_F(CliE2eTest, Coordinator_ConfigIsADirectory_Refused) {
  std::string log;
  EXPECT_EQ(Run({kBin + "/server/fedge-coordinator", "--config", dir_}, &log),
            2)
      << log;
  EXPECT_THAT(log, HasSubstr("config file '" + dir_ + "' is a directory"));
}

// A bool field's flag alone means true; a flag that names no field is
// unknown, with or without a value.
TEST_F(CliE2eTest, BareBoolFlagsAccepted_UnknownFlagNamed) {
  std::string log;
  // The config directory is refused only after the command line parsed.
  EXPECT_EQ(Run({kBin + "/server/fedge-coordinator", "--exit_when_done",
                 "--rounds", "2", "--tls.insecure", "--tls.require_client_cert",
                 "--config", dir_},
                &log),
            2)
      << log;
  EXPECT_THAT(log, HasSubstr("is a directory"));
  EXPECT_EQ(Fedge({"status", "--version"}, &log), 2) << log;
  EXPECT_THAT(log, HasSubstr("flag --version: unknown config field"));
  EXPECT_THAT(log, HasSubstr("fedge.v1.ToolConfig's fields (coordinator, "));
}

// --insecure is --tls.insecure in every program, alone or with a value.
TEST_F(CliE2eTest, Insecure_SameSpellingsInEveryProgram) {
  std::string log;
  const std::string missing = dir_ + "/no_state";
  for (const char* insecure :
       {"--insecure", "--insecure=true", "--tls.insecure"}) {
    EXPECT_EQ(Run({kBin + "/server/fedge-coordinator", insecure,
                   "--exit_when_done", "--config", dir_},
                  &log),
              2)
        << log;
    EXPECT_THAT(log, HasSubstr("is a directory"));
    EXPECT_EQ(Run({kBin + "/edge_agent/fedge-agent", insecure, "predict",
                   "--state_dir", missing},
                  &log),
              1)
        << log;
    EXPECT_THAT(log, HasSubstr(missing + " does not exist"));
    // fedge fails only at the call (nobody listens on port 1).
    EXPECT_EQ(Fedge({insecure, "status", "--timeout_seconds=1"}, &log), 1)
        << log;
    EXPECT_THAT(log, HasSubstr("127.0.0.1:1: "));
  }
}

// A file the configuration names that does not exist is a configuration
// error (exit 2, as --help says), not a runtime failure (1), in the agent
// and the coordinator alike; the coordinator writes nothing first.
TEST_F(CliE2eTest, MissingTlsFile_ExitsTwoNamingTheField) {
  std::string log;
  const std::string missing = dir_ + "/missing.pem";
  EXPECT_EQ(Run({kBin + "/edge_agent/fedge-agent", "--coordinator",
                 "127.0.0.1:1", "--tls.ca_path", missing, "--state_dir",
                 dir_ + "/agent", "--data.source", "synthetic"},
                &log),
            2)
      << log;
  EXPECT_THAT(log, HasSubstr("cannot read tls.ca_path \"" + missing + "\""));
  const std::string state = dir_ + "/coordinator";
  EXPECT_EQ(Run({kBin + "/server/fedge-coordinator", "--state_dir", state,
                 "--listen_address", "127.0.0.1:0", "--tls.cert_path", missing,
                 "--tls.key_path", dir_ + "/missing.key"},
                &log),
            2)
      << log;
  EXPECT_THAT(log, HasSubstr("cannot read tls.cert_path"));
  EXPECT_FALSE(std::filesystem::exists(state));
}

// num_threads has an upper bound in every program that takes it: 1000
// threads is a typo, not a plan.
TEST_F(CliE2eTest, NumThreadsTooMany_RefusedNamingTheRange) {
  std::string log;
  EXPECT_EQ(
      Run({kBin + "/server/sim/fedge-sim", "--num_threads", "1000"}, &log), 2)
      << log;
  EXPECT_THAT(log, HasSubstr("'num_threads' must be in [0, 256], got 1000"));
  EXPECT_EQ(Run({kBin + "/edge_agent/fedge-agent", "--insecure", "--state_dir",
                 dir_ + "/agent", "--num_threads", "1000"},
                &log),
            2)
      << log;
  EXPECT_THAT(log, HasSubstr("'num_threads' must be in [1, 256], got 1000"));
  EXPECT_EQ(Run({kBin + "/edge_agent/fedge-agent", "predict", "--state_dir",
                 dir_, "--num_threads", "0"},
                &log),
            2)
      << log;
  EXPECT_THAT(log, HasSubstr("'num_threads' must be in [1, 256], got 0"));
}

// fedge-sim's agents are all there is: a count it cannot select is refused,
// not lowered in silence.
TEST_F(CliE2eTest, Sim_CountAboveNumAgents_Refused) {
  std::string log;
  EXPECT_EQ(Run({kBin + "/server/sim/fedge-sim", "--num_agents", "5",
                 "--strategy.count", "20", "--data.source", "synthetic"},
                &log),
            2)
      << log;
  EXPECT_THAT(log,
              HasSubstr("'strategy.count' must be <= num_agents (5), got 20"));
}

// fedge --help lists the commands fedge hands to fedge-export and
// fedge-agent (README and docs/deploy.md teach them as fedge's) beside its
// own, and `fedge VERB --help` is the running program's help.
TEST_F(CliE2eTest, Fedge_Help_ListsTheDelegatedCommandsToo) {
  std::string log;
  EXPECT_EQ(Run({kFedge, "--help"}, &log), 0) << log;
  for (const char* verb : {"export", "prune", "finetune", "quantize", "distill",
                           "evaluate", "predict"}) {
    EXPECT_THAT(log, HasSubstr(absl::StrCat(" fedge ", verb, " "))) << verb;
  }
  EXPECT_THAT(log, HasSubstr("fedge export MODEL.fedge --format "
                             "onnx|torchscript -o OUT\n"));
  EXPECT_THAT(log, HasSubstr("(run by fedge-export "
                             "model|prune|finetune|quantize|distill|"
                             "evaluate)\n"));
  EXPECT_THAT(log, HasSubstr("(run by fedge-agent predict)\n"));
  EXPECT_THAT(log, HasSubstr("fedge status|agents|rounds"));
  EXPECT_THAT(log, HasSubstr("--coordinator"));  // The flags, still.

  EXPECT_EQ(Run({kFedge, "predict", "--help"}, &log), 0) << log;
  EXPECT_THAT(log, HasSubstr("fedge-agent predict --state_dir DIR"));
}

TEST_F(CliE2eTest, Evaluator_Help_PrintsUsage) {
  std::string log;
  EXPECT_EQ(Run({kBin + "/server/fedge-evaluator", "--help"}, &log), 0) << log;
  EXPECT_THAT(log, HasSubstr("usage: fedge-evaluator CONFIG.binpb"));
  EXPECT_THAT(log, Not(HasSubstr("error")));
}

TEST_F(CliE2eTest, AgentPredict_StateDirIsAFile_SaysNotADirectory) {
  const std::string file = Write("state", "not a directory");
  std::string log;
  EXPECT_EQ(
      Run({kBin + "/edge_agent/fedge-agent", "predict", "--state_dir", file},
          &log),
      1)
      << log;
  EXPECT_THAT(log,
              HasSubstr("state directory " + file + " is not a directory"));
  EXPECT_THAT(log, Not(HasSubstr("does not exist")));
}

}  // namespace
}  // namespace fedge::testing
