// Runs the real fedge-sim binary on synthetic data.
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/ml/model_files.h"
#include "common/model_codec.h"
#include "common/privacy_accountant.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

const std::string kSim =
    std::string(FEDGE_BINARY_DIR) + "/server/sim/fedge-sim";
const std::string kConfigs = std::string(FEDGE_SOURCE_DIR) + "/configs/sim/";
const std::string kFedge = std::string(FEDGE_BINARY_DIR) + "/server/fedge";
const std::string kExport =
    std::string(FEDGE_BINARY_DIR) + "/server/fedge-export";
const std::string kExample =
    std::string(FEDGE_SOURCE_DIR) + "/examples/torchscript_cnn";

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr.
};

Result RunCommand(const std::string& command) {
  Result r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

Result RunSim(const std::string& args) { return RunCommand(kSim + " " + args); }

std::vector<std::vector<std::string>> ReadCsv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    rows.push_back(absl::StrSplit(line, ','));
  }
  return rows;
}

TEST(FedgeSimE2eTest, SyntheticRun_AccuracyRises) {
  const std::string history = testing::TempDir() + "/sim_history.csv";
  std::remove(history.c_str());
  Result r = RunSim(absl::StrCat("--config ", kConfigs,
                                 "synthetic_smoke.textproto --rounds 6 "
                                 "--num_threads 2 --history_out ",
                                 history));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, testing::HasSubstr("round    6/6"));
  auto rows = ReadCsv(history);
  ASSERT_EQ(rows.size(), 7u) << r.output;
  const std::vector<std::string>& header = rows[0];
  for (const char* col : {"round", "num_agents", "num_examples", "train_loss",
                          "test_loss", "test_accuracy", "round_seconds"}) {
    EXPECT_THAT(header, testing::Contains(col));
  }
  const size_t acc_col =
      std::find(header.begin(), header.end(), "test_accuracy") - header.begin();
  double first, last;
  ASSERT_TRUE(absl::SimpleAtod(rows[1][acc_col], &first));
  ASSERT_TRUE(absl::SimpleAtod(rows[6][acc_col], &last));
  EXPECT_GT(last, first + 0.05) << r.output;
  EXPECT_GT(last, 0.5) << r.output;
}

// Column `name` of `rows` (after the header) as numbers.
std::vector<double> Column(const std::vector<std::vector<std::string>>& rows,
                           const std::string& name) {
  std::vector<double> out;
  if (rows.empty()) return out;
  const size_t col =
      std::find(rows[0].begin(), rows[0].end(), name) - rows[0].begin();
  for (size_t i = 1; i < rows.size(); ++i) {
    double v = -1;
    if (col < rows[i].size()) (void)absl::SimpleAtod(rows[i][col], &v);
    out.push_back(v);
  }
  return out;
}

// Compressed updates: the history counts the bytes as encoded, and the
// federation still learns (top-k with error feedback, int8).
TEST(FedgeSimE2eTest, UpdateEncodings_FewerBytesStillLearns) {
  std::map<std::string, std::vector<std::vector<std::string>>> runs;
  for (const char* encoding : {"fp32", "int8", "topk"}) {
    const std::string history =
        absl::StrCat(testing::TempDir(), "/sim_", encoding, ".csv");
    std::remove(history.c_str());
    Result r = RunSim(absl::StrCat(
        "--config ", kConfigs, "synthetic_smoke.textproto --rounds 6 ",
        "--num_threads 2 --strategy.update_encoding=", encoding,
        " --strategy.topk_fraction=0.1 --history_out ", history));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    runs[encoding] = ReadCsv(history);
    ASSERT_EQ(runs[encoding].size(), 7u) << r.output;
    const std::vector<double> acc = Column(runs[encoding], "test_accuracy");
    EXPECT_GT(acc.back(), acc.front() + 0.05) << encoding << r.output;
  }
  const double fp32 = Column(runs["fp32"], "bytes_received")[0];
  const double int8 = Column(runs["int8"], "bytes_received")[0];
  const double topk = Column(runs["topk"], "bytes_received")[0];
  ASSERT_GT(fp32, 0);
  // int8: a quarter of the floats plus a header per tensor; top-k 10%:
  // 8 bytes (index, value) per sent entry, a fifth of fp32's.
  EXPECT_LT(int8, 0.3 * fp32);
  EXPECT_GT(int8, 0.2 * fp32);
  EXPECT_LT(topk, 0.25 * fp32);
  EXPECT_EQ(Column(runs["fp32"], "bytes_sent")[0],
            Column(runs["topk"], "bytes_sent")[0]);
}

TEST(FedgeSimE2eTest, MissingMnist_FallsBackToSyntheticAndSaysSo) {
  Result r = RunSim(absl::StrCat(
      "--config ", kConfigs, "quickstart.textproto --rounds 1 ",
      "--data_dir /nonexistent/mnist --data.synthetic_train_examples=2000 "
      "--num_agents 10"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, testing::HasSubstr("MNIST not found"));
  EXPECT_THAT(r.output, testing::HasSubstr("synthetic"));
}

TEST(FedgeSimE2eTest, BadValue_NamesTheField) {
  Result r = RunSim(absl::StrCat(
      "--config ", kConfigs, "synthetic_smoke.textproto --train.batch_size=0"));
  EXPECT_EQ(r.exit_code, 2);  // Bad configuration.
  EXPECT_THAT(r.output, testing::HasSubstr("train.batch_size"));
}

// A split the data cannot give names the config fields the user sets.
TEST(FedgeSimE2eTest, TooManyAgentsForTheData_NamesTheConfigFields) {
  Result iid =
      RunSim(absl::StrCat("--config ", kConfigs,
                          "synthetic_smoke.textproto --num_agents=5000 "
                          "--data.synthetic_train_examples=100"));
  EXPECT_EQ(iid.exit_code, 2);
  EXPECT_THAT(iid.output, testing::HasSubstr("num_agents = 5000 exceeds the "
                                             "100 examples to split"));
  Result shards = RunSim(absl::StrCat(
      "--config ", kConfigs,
      "synthetic_smoke.textproto --num_agents=7 --partition.method=shards"));
  EXPECT_EQ(shards.exit_code, 2);
  EXPECT_THAT(shards.output,
              testing::HasSubstr("num_agents * partition.shards_per_agent = "
                                 "7 * 2 = 14"));
  EXPECT_THAT(shards.output + iid.output,
              testing::Not(testing::HasSubstr("num_clients")));
}

TEST(FedgeSimE2eTest, UnknownFlag_NamesIt) {
  Result r = RunSim(absl::StrCat("--config ", kConfigs,
                                 "synthetic_smoke.textproto --trian.epochs=2"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, testing::HasSubstr("trian"));
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The same run (same seeds) with and without secure aggregation: the final
// models agree within the fixed-point precision (5 agents per round of ~200
// examples, clip range 10: a mean is off by ~1e-7 per round).
TEST(FedgeSimE2eTest, SecureAggregation_FinalModelEqualsPlainWithinPrecision) {
  std::map<bool, ModelState> models;
  std::map<bool, std::vector<std::vector<std::string>>> histories;
  for (bool secure : {false, true}) {
    const std::string out =
        absl::StrCat(testing::TempDir(), "/sim_secagg_", secure, ".fedge");
    const std::string history =
        absl::StrCat(testing::TempDir(), "/sim_secagg_", secure, ".csv");
    std::remove(out.c_str());
    std::remove(history.c_str());
    Result r = RunSim(
        absl::StrCat("--config ", kConfigs,
                     "synthetic_smoke.textproto --rounds 3 --num_threads 2 "
                     "--strategy.secure_aggregation.enabled=",
                     secure ? "true" : "false", " --model_out ", out,
                     " --history_out ", history));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    absl::StatusOr<ModelState> m = DecodeModel(ReadAll(out));
    ASSERT_TRUE(m.ok()) << m.status();
    models[secure] = *std::move(m);
    histories[secure] = ReadCsv(history);
  }
  const ModelState& plain = models[false];
  const ModelState& secure = models[true];
  ASSERT_EQ(plain.size(), secure.size());
  double worst = 0, largest = 0;
  for (size_t t = 0; t < plain.size(); ++t) {
    if (plain.tensor(t).dtype() != DType::kFloat32) continue;
    for (size_t j = 0; j < plain.tensor(t).floats().size(); ++j) {
      const double a = plain.tensor(t).floats()[j];
      worst = std::max(worst, std::fabs(a - secure.tensor(t).floats()[j]));
      largest = std::max(largest, std::fabs(a));
    }
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(largest, 1e-2);  // It trained.
  // Same agents and examples every round.
  ASSERT_EQ(histories[false].size(), 4u);
  ASSERT_EQ(histories[true].size(), 4u);
  for (size_t i = 1; i < 4; ++i) {
    for (size_t c : {1, 2, 3}) {  // num_agents, num_failed, num_examples.
      EXPECT_EQ(histories[true][i][c], histories[false][i][c])
          << histories[false][0][c] << " in round " << i;
    }
  }
}

TEST(FedgeSimE2eTest, SecureAggregation_WithMedian_RefusedNamingTheField) {
  Result r =
      RunSim(absl::StrCat("--config ", kConfigs,
                          "synthetic_smoke.textproto --strategy.name=median "
                          "--strategy.secure_aggregation.enabled=true"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output,
              testing::HasSubstr("strategy.secure_aggregation.enabled"));
  EXPECT_THAT(r.output, testing::HasSubstr("choose fedavg"));
}

// --model_out writes the model's spec beside it, as the coordinator's
// final_model.spec: `fedge inspect` (and fedge export) read the pair.
TEST(FedgeSimE2eTest, ModelOut_SpecBesideIt_InspectShowsTheCost) {
  const std::string model = testing::TempDir() + "/sim_model_out.fedge";
  const std::string spec = testing::TempDir() + "/sim_model_out.spec";
  std::remove(model.c_str());
  std::remove(spec.c_str());
  Result r = RunSim(absl::StrCat("--config ", kConfigs,
                                 "synthetic_smoke.textproto --rounds 1 "
                                 "--num_threads 2 --model_out ",
                                 model));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output,
              testing::HasSubstr(absl::StrCat("final model written to ", model,
                                              " (spec ", spec, ")")));
  absl::StatusOr<ml::ModelSpec> read = ml::ReadSpecFile(spec);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->architecture, "logreg");
  EXPECT_EQ(read->num_classes, 10);
  Result inspect = RunCommand(absl::StrCat(kFedge, " inspect ", model));
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_THAT(inspect.output,
              testing::HasSubstr("model logreg, input 1,28,28, 10 classes: "
                                 "7850 parameters"));
}

// A TorchScript model's --model_out spec names its archive by SHA-256 and
// size, as the coordinator's final_model.spec does: fedge-export refuses
// another archive of the same schema (other weights) and takes this one.
TEST(FedgeSimE2eTest, ModelOutTorchScript_SpecPinsTheArchive) {
  const std::string dir = testing::TempDir() + "/sim_torchscript_model_out";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const char* seed : {"1", "2"}) {
    // The example CNN (Debian's python3-torch), weights seeded.
    Result made = RunCommand(absl::StrCat("/usr/bin/python3 ", kExample,
                                          "/make_model.py --out ", dir, "/seed",
                                          seed, ".pt --seed ", seed));
    ASSERT_EQ(made.exit_code, 0) << made.output;
  }
  const std::string archive = dir + "/seed1.pt";
  const std::string other = dir + "/seed2.pt";
  Result r = RunSim(
      absl::StrCat("--config ", kConfigs,
                   "synthetic_smoke.textproto --rounds 1 --num_threads 2 "
                   "--model.architecture=torchscript --model.torchscript_path=",
                   archive, " --model_out ", dir, "/m.fedge"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  absl::StatusOr<ml::ModelSpec> spec = ml::ReadSpecFile(dir + "/m.spec");
  ASSERT_TRUE(spec.ok()) << spec.status();
  std::ifstream in(archive, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  EXPECT_EQ(spec->torchscript_sha256, ToHex(Sha256Of(bytes)));
  EXPECT_EQ(spec->torchscript_size_bytes, static_cast<int64_t>(bytes.size()));

  const std::string export_model =
      absl::StrCat(kExport, " model ", dir, "/m.fedge --format torchscript -o ",
                   dir, "/out.pt --archive ");
  Result refused = RunCommand(export_model + other);
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output,
              testing::HasSubstr(
                  absl::StrCat("torchscript archive ", other, " has sha256 ")));
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.pt"));
  Result exported = RunCommand(export_model + archive);
  EXPECT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/out.pt"));
  std::filesystem::remove_all(dir);
}

// A --model_out whose folder does not exist fails before the first round,
// not after the last.
TEST(FedgeSimE2eTest, ModelOutInMissingFolder_RefusedBeforeTraining) {
  Result r = RunSim(absl::StrCat("--config ", kConfigs,
                                 "synthetic_smoke.textproto --rounds 50 "
                                 "--num_threads 2 --model_out "
                                 "/nonexistent/m.fedge"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output,
              testing::HasSubstr("model_out: cannot create /nonexistent/"
                                 "m.fedge in folder /nonexistent: "));
  EXPECT_THAT(r.output, testing::Not(testing::HasSubstr("round ")));
}

// Abandoned rounds (no agent reported) do not count toward --rounds: the
// progress lines say how many rounds completed rather than "round 3/2".
TEST(FedgeSimE2eTest, AbandonedRounds_ProgressCountsCompletedRounds) {
  Result r = RunSim(absl::StrCat("--config ", kConfigs,
                                 "synthetic_smoke.textproto --rounds 2 "
                                 "--num_threads 2 "
                                 "--agent_dropout_probability=0.9"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // This seed abandons rounds 1 and 2 (every selected agent drops out).
  EXPECT_THAT(r.output, testing::HasSubstr(
                            "round    1 (abandoned, 0/2 completed)  agents   "
                            "0  examples      0  train_loss      -  "));
  EXPECT_THAT(r.output, testing::HasSubstr("round    4 (2/2 completed)"));
  EXPECT_THAT(r.output, testing::Not(testing::HasSubstr("/2  agents")));
  EXPECT_THAT(r.output, testing::Not(testing::HasSubstr("train_loss 0.0000")));
  EXPECT_THAT(r.output, testing::HasSubstr("done: 2 rounds completed of 4 "
                                           "attempted (2 abandoned)"));
}

// When no agent ever reports, the run stops after max_abandoned_rounds
// attempts and says why (not that the model diverged).
TEST(FedgeSimE2eTest, EveryAgentDropsOut_StopsSayingNoAgentReported) {
  Result r = RunSim(absl::StrCat("--config ", kConfigs,
                                 "synthetic_smoke.textproto --rounds 2 "
                                 "--num_threads 2 "
                                 "--agent_dropout_probability=1.0"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output,
              testing::HasSubstr("the last 10 attempted rounds (1 to 10) were "
                                 "abandoned: no agent reported (all 50 "
                                 "selected agents dropped out"));
  EXPECT_THAT(r.output, testing::HasSubstr("0 of 2 rounds completed"));
  EXPECT_THAT(r.output, testing::HasSubstr("round   10 (abandoned"));
  EXPECT_THAT(r.output, testing::Not(testing::HasSubstr("round   11")));
  EXPECT_THAT(r.output, testing::Not(testing::HasSubstr("diverged")));
}

TEST(FedgeSimE2eTest, Help_ListsFields) {
  Result r = RunSim("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, testing::HasSubstr("--train.learning_rate"));
}

// Differential privacy in fedge-sim: epsilon in the progress lines and the
// history after every round, and the run stops before the round that would
// exceed the budget (docs/privacy.md).
double SimEpsilon(double q, double sigma, int rounds) {
  auto a = RdpAccountant::Create({});
  EXPECT_TRUE(a.ok() && (*a)->Compose(q, sigma, rounds).ok());
  return (*a)->GetEpsilon(1e-5)->epsilon;
}

TEST(FedgeSimE2eTest, CentralDp_EpsilonEveryRound_StopsAtTheBudget) {
  // 5 of 20 agents per round: q = 0.25; the budget fits 3 rounds.
  const double e3 = SimEpsilon(0.25, 1.0, 3), e4 = SimEpsilon(0.25, 1.0, 4);
  const std::string history = testing::TempDir() + "/sim_dp_history.csv";
  std::remove(history.c_str());
  Result r = RunSim(absl::StrCat(
      "--config ", kConfigs, "synthetic_smoke.textproto --rounds 10 ",
      "--num_threads 2 --strategy.dp.mode=central ",
      "--strategy.dp.clip_norm=0.5 --strategy.dp.noise_multiplier=1.0 ",
      "--strategy.dp.max_epsilon=", (e3 + e4) / 2, " --history_out ", history));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, testing::HasSubstr("round    3/10"));
  EXPECT_THAT(r.output, testing::Not(testing::HasSubstr("round    4/10")));
  EXPECT_THAT(r.output, testing::HasSubstr("epsilon "));
  EXPECT_THAT(r.output,
              testing::HasSubstr("stopped before round 4: privacy budget "
                                 "reached: after 3 rounds"));
  auto rows = ReadCsv(history);
  ASSERT_EQ(rows.size(), 4u) << r.output;
  const std::vector<double> eps = Column(rows, "epsilon");
  ASSERT_EQ(eps.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(eps[i], SimEpsilon(0.25, 1.0, i + 1), 1e-5) << i;
  }
  EXPECT_EQ(Column(rows, "delta"), std::vector<double>(3, 1e-5));
}

TEST(FedgeSimE2eTest, LocalDp_AgentsNoise_AccountedPerAgent) {
  const std::string history = testing::TempDir() + "/sim_ldp_history.csv";
  std::remove(history.c_str());
  Result r = RunSim(absl::StrCat(
      "--config ", kConfigs, "synthetic_smoke.textproto --rounds 2 ",
      "--num_threads 2 --strategy.dp.mode=local ",
      "--strategy.dp.clip_norm=0.5 --strategy.dp.noise_multiplier=8 ",
      "--history_out ", history));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, testing::HasSubstr("privacy: local DP"));
  const std::vector<double> eps = Column(ReadCsv(history), "epsilon");
  ASSERT_EQ(eps.size(), 2u) << r.output;
  EXPECT_NEAR(eps[1], SimEpsilon(1.0, 4.0, 2), 1e-5);
}

}  // namespace
}  // namespace fedge
