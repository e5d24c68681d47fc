// End-to-end: a user's own PyTorch model (examples/torchscript_cnn, a small
// CNN with BatchNorm, scripted with torch.jit.script) federated by the real
// fedge-coordinator and three fedge-agent processes, which fetch the archive
// from the coordinator (hash-verified); and the same federation in fedge-sim
// gives the same model (one seed derivation, one round close).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/model_codec.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

double Number(const std::map<std::string, std::string>& row,
              const std::string& column) {
  auto it = row.find(column);
  return it == row.end() || it->second.empty() ? -1 : std::stod(it->second);
}

class TorchScriptFederationTest : public FederationTest {
 protected:
  // Builds the example's archive with Debian's python3-torch.
  std::string MakeArchive() {
    const std::string archive = dir_ + "/model.pt";
    Process make({"/usr/bin/python3",
                  kSourceDir + "/examples/torchscript_cnn/make_model.py",
                  "--out", archive},
                 dir_ + "/make_model.log");
    EXPECT_EQ(make.Wait(absl::Seconds(120)), 0)
        << make.Log() << "\n(needs python3-torch: apt-get install "
        << "python3-torch)";
    return archive;
  }
};

TEST_F(TorchScriptFederationTest, ThreeAgents_FetchTheArchive_AccuracyRises) {
  const std::string archive = MakeArchive();
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=3", "--model.architecture=torchscript",
       "--model.torchscript_path=" + archive, "--train.learning_rate=0.05"},
      &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) {
    agents.push_back(StartAgent(i, port, {"--data.max_train_examples=3000"}));
  }
  ASSERT_EQ(coordinator->Wait(absl::Seconds(300)), 0) << coordinator->Log();
  EXPECT_THAT(coordinator->Log(), HasSubstr("model: TorchScript archive"));
  for (auto& a : agents) {
    EXPECT_EQ(a->Wait(absl::Seconds(60)), 0) << a->Log();
    EXPECT_THAT(a->Log(), HasSubstr("fetching the model archive"));
  }
  auto rows = History();
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& row : rows) EXPECT_EQ(Number(row, "num_agents"), 3);
  EXPECT_GT(Number(rows[2], "test_accuracy"), Number(rows[0], "test_accuracy"))
      << coordinator->Log();
  // The final model holds the BatchNorm statistics, aggregated.
  Process inspect({kBinaryDir + "/server/fedge", "inspect",
                   dir_ + "/coordinator/final_model.fedge"},
                  dir_ + "/inspect.log");
  EXPECT_EQ(inspect.Wait(absl::Seconds(30)), 0) << inspect.Log();
  EXPECT_THAT(inspect.Log(), HasSubstr("running_mean"));
  EXPECT_THAT(inspect.Log(), HasSubstr("num_batches_tracked int64"));
}

TEST_F(TorchScriptFederationTest, SimulatorAndNetwork_GiveTheSameModel) {
  const std::string archive = MakeArchive();
  const std::vector<std::string> common = {
      "--model.architecture=torchscript", "--model.torchscript_path=" + archive,
      "--train.learning_rate=0.05", "--rounds=2", "--seed=5"};
  // fedge-sim: 3 agents, all selected, IID partitions of the synthetic set.
  std::vector<std::string> sim = {
      kBinaryDir + "/server/sim/fedge-sim",
      "--config=" + kSourceDir + "/configs/sim/synthetic_smoke.textproto",
      "--num_agents=3", "--strategy.count=3", "--strategy.fraction=1",
      "--strategy.min_available_agents=3", "--strategy.min_fit_agents=3",
      "--partition.method=iid", "--partition.seed=42",
      // The agents' synthetic set (AgentConfig defaults), the first 3000.
      "--data.synthetic_train_examples=12000",
      "--data.synthetic_test_examples=2000", "--data.max_train_examples=3000",
      "--train.batch_size=10", "--train.epochs=1", "--num_threads=1",
      "--model_out=" + dir_ + "/sim_model.fedge"};
  sim.insert(sim.end(), common.begin(), common.end());
  Process run_sim(sim, dir_ + "/sim.log");
  ASSERT_EQ(run_sim.Wait(absl::Seconds(300)), 0) << run_sim.Log();

  // The same federation over the network: agents named as the simulator
  // names them, each holding the same partition.
  std::vector<std::string> flags = common;
  flags.insert(flags.end(),
               {"--strategy.count=3", "--strategy.min_available_agents=3",
                "--strategy.min_fit_agents=3", "--simulation.enabled=false"});
  int port;
  auto coordinator = StartCoordinator(flags, &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 0; i < 3; ++i) {
    agents.push_back(
        StartAgent(i + 1, port,
                   {absl::StrCat("--agent_id=agent-0000", i),
                    absl::StrCat("--partition_index=", i), "--num_partitions=3",
                    "--partition.method=iid", "--partition.seed=42",
                    "--data.max_train_examples=3000"}));
  }
  ASSERT_EQ(coordinator->Wait(absl::Seconds(300)), 0) << coordinator->Log();
  absl::StatusOr<ModelState> a =
      DecodeModel(ReadFileOrEmpty(dir_ + "/sim_model.fedge"));
  absl::StatusOr<ModelState> b =
      DecodeModel(ReadFileOrEmpty(dir_ + "/coordinator/final_model.fedge"));
  ASSERT_TRUE(a.ok()) << a.status() << run_sim.Log();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(CheckSameSchema(*a, *b).ok());
  double max_diff = 0;
  for (size_t t = 0; t < a->size(); ++t) {
    if (a->tensor(t).dtype() != DType::kFloat32) {
      EXPECT_TRUE(std::equal(a->tensor(t).int64s().begin(),
                             a->tensor(t).int64s().end(),
                             b->tensor(t).int64s().begin()))
          << a->tensor(t).name();
      continue;
    }
    for (size_t j = 0; j < a->tensor(t).floats().size(); ++j) {
      max_diff = std::max<double>(
          max_diff,
          std::fabs(a->tensor(t).floats()[j] - b->tensor(t).floats()[j]));
    }
  }
  // Same seeds, data and plans: only the order of summation may differ.
  EXPECT_LT(max_diff, 1e-5) << "sim and network models differ";
}

}  // namespace
}  // namespace fedge::testing
