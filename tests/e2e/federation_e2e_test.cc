// End-to-end: the real fedge-coordinator and fedge-agent binaries on
// 127.0.0.1, TLS on, synthetic data (fast), bounded in time.
#include <signal.h>

#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(FederationTest, ThreeAgentsThreeRounds_AccuracyRises) {
  int port;
  // A small learning rate, so that three rounds show a clear rise.
  auto coordinator =
      StartCoordinator({"--rounds=3", "--train.learning_rate=0.005"}, &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_EQ(coordinator->Wait(absl::Seconds(120)), 0) << coordinator->Log();
  for (auto& a : agents) {
    EXPECT_EQ(a->Wait(absl::Seconds(30)), 0) << a->Log();
  }
  auto rows = History();
  ASSERT_EQ(rows.size(), 3u) << coordinator->Log();
  for (const auto& row : rows) {
    EXPECT_EQ(Number(row, "num_agents"), 3);
    EXPECT_GT(Number(row, "bytes_received"), 0);
  }
  EXPECT_GT(Number(rows[2], "test_accuracy"), Number(rows[0], "test_accuracy"))
      << coordinator->Log();
  EXPECT_FALSE(
      ReadFileOrEmpty(dir_ + "/coordinator/final_model.fedge").empty());
  // The operator tool reads the final model.
  Process inspect({kBinaryDir + "/server/fedge", "inspect",
                   dir_ + "/coordinator/final_model.fedge"},
                  dir_ + "/inspect.log");
  EXPECT_EQ(inspect.Wait(absl::Seconds(30)), 0) << inspect.Log();
  EXPECT_THAT(inspect.Log(), HasSubstr("fc1.weight float32[200,784]"));
  // A cut-off copy: an error naming the file and what is missing.
  {
    const std::string model =
        ReadFileOrEmpty(dir_ + "/coordinator/final_model.fedge");
    std::ofstream(dir_ + "/cut.fedge", std::ios::binary)
        << model.substr(0, model.size() / 2);
    Process cut({kBinaryDir + "/server/fedge", "inspect", dir_ + "/cut.fedge"},
                dir_ + "/inspect_cut.log");
    EXPECT_EQ(cut.Wait(absl::Seconds(30)), 1) << cut.Log();
    EXPECT_THAT(cut.Log(), HasSubstr(dir_ + "/cut.fedge does not decode as a "
                                            "fedge model (truncated: "));
  }
  // With final_model.spec beside it: parameters and MACs.
  EXPECT_THAT(inspect.Log(),
              HasSubstr("model 2nn, input 1,28,28, 10 classes: 199210 "
                        "parameters, 198800 MACs per example"));
  Process zoo({kBinaryDir + "/server/fedge", "zoo"}, dir_ + "/zoo.log");
  EXPECT_EQ(zoo.Wait(absl::Seconds(30)), 0) << zoo.Log();
  for (const char* line :
       {"model logreg, input 1,28,28, 10 classes: 7850 parameters, 7840 MACs",
        "model mobilenet_v2, input 3,32,32, 10 classes:",
        "model squeezenet, input 1,28,28, 10 classes:"}) {
    EXPECT_THAT(zoo.Log(), HasSubstr(line));
  }
  // The agent keeps the last global model and predicts without a coordinator.
  Process predict({kBinaryDir + "/edge_agent/fedge-agent", "predict",
                   "--state_dir=" + dir_ + "/agent-1",
                   "--data.source=synthetic", "--limit=50"},
                  dir_ + "/predict.log");
  EXPECT_EQ(predict.Wait(absl::Seconds(60)), 0) << predict.Log();
  EXPECT_THAT(predict.Log(), HasSubstr("accuracy"));
  // `fedge predict` runs the same (fedge hands it to fedge-agent).
  Process via_fedge({kBinaryDir + "/server/fedge", "predict",
                     "--state_dir=" + dir_ + "/agent-1",
                     "--data.source=synthetic", "--limit=50"},
                    dir_ + "/fedge_predict.log");
  EXPECT_EQ(via_fedge.Wait(absl::Seconds(60)), 0) << via_fedge.Log();
  const size_t summary = predict.Log().find("# model version");
  ASSERT_NE(summary, std::string::npos) << predict.Log();
  EXPECT_THAT(via_fedge.Log(), HasSubstr(predict.Log().substr(summary)));
}

// FedBuff: agents train whenever they are free, on the newest version;
// every two updates make a version (a row of the history).
TEST_F(FederationTest, FedBuff_ThreeAgentsFourVersions_AccuracyRises) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=4", "--train.learning_rate=0.005", "--strategy.mode=fedbuff",
       "--strategy.fedbuff_buffer_size=2"},
      &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_EQ(coordinator->Wait(absl::Seconds(120)), 0) << coordinator->Log();
  for (auto& a : agents) {
    EXPECT_EQ(a->Wait(absl::Seconds(30)), 0) << a->Log();
  }
  auto rows = History();
  ASSERT_EQ(rows.size(), 4u) << coordinator->Log();
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(Number(rows[i], "round"), static_cast<double>(i + 1));
    EXPECT_EQ(Number(rows[i], "num_agents"), 2);
    EXPECT_GT(Number(rows[i], "bytes_received"), 0);
  }
  EXPECT_GT(Number(rows[3], "test_accuracy"), Number(rows[0], "test_accuracy"))
      << coordinator->Log();
  EXPECT_THAT(coordinator->Log(), HasSubstr("model version 4 published"));
}

// Compressed updates: int8 for every agent, top-k with error feedback for
// the one on a metered link (its device class); fewer bytes arrive and the
// federation learns.
TEST_F(FederationTest, CompressedUpdates_PerDeviceClass_FewerBytesAndLearns) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=3", "--train.learning_rate=0.005",
       "--strategy.update_encoding=int8",
       "--strategy.device_plans={device_class: 'metered' update_encoding: "
       "'topk'}"},
      &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) {
    agents.push_back(
        StartAgent(i, port,
                   i == 3 ? std::vector<std::string>{"--device_class=metered"}
                          : std::vector<std::string>{}));
  }
  ASSERT_EQ(coordinator->Wait(absl::Seconds(120)), 0) << coordinator->Log();
  for (auto& a : agents) {
    EXPECT_EQ(a->Wait(absl::Seconds(30)), 0) << a->Log();
  }
  auto rows = History();
  ASSERT_EQ(rows.size(), 3u) << coordinator->Log();
  for (const auto& row : rows) {
    EXPECT_EQ(Number(row, "num_agents"), 3);
    // Three fp32 updates would be 3x the model (bytes_sent / 3); int8 is
    // about a quarter of it and top-k 10% about a fifth.
    const double model_bytes = Number(row, "bytes_sent") / 3;
    EXPECT_LT(Number(row, "bytes_received"), 0.9 * model_bytes)
        << coordinator->Log();
  }
  EXPECT_GT(Number(rows[2], "test_accuracy"), Number(rows[0], "test_accuracy"))
      << coordinator->Log();
  // The metered agent keeps what it has not sent yet.
  EXPECT_FALSE(
      ReadFileOrEmpty(dir_ + "/agent-3/update_residual.state").empty());
}

TEST_F(FederationTest, Fp16Downloads_HalfTheBytesAndLearns) {
  int port;
  auto coordinator =
      StartCoordinator({"--rounds=3", "--train.learning_rate=0.005",
                        "--strategy.download_encoding=fp16"},
                       &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_EQ(coordinator->Wait(absl::Seconds(120)), 0) << coordinator->Log();
  for (auto& a : agents) {
    EXPECT_EQ(a->Wait(absl::Seconds(30)), 0) << a->Log();
  }
  auto rows = History();
  ASSERT_EQ(rows.size(), 3u) << coordinator->Log();
  // Agents upload fp32 deltas: a round receives 3 model sizes (fp32). Each
  // round's 3 downloads are fp16, half a model size each; an agent may
  // also fetch a new version between rounds, for offline prediction (and
  // then train from its cache). In fp32, 9 downloads would be 9 sizes.
  double sent = 0, model_size = 0;
  for (const auto& row : rows) {
    EXPECT_EQ(Number(row, "num_agents"), 3);
    sent += Number(row, "bytes_sent");
    model_size = Number(row, "bytes_received") / 3;
  }
  EXPECT_GT(sent, 9 * 0.45 * model_size) << coordinator->Log();
  EXPECT_LT(sent, 12 * 0.55 * model_size) << coordinator->Log();
  EXPECT_GT(Number(rows[2], "test_accuracy"), Number(rows[0], "test_accuracy"))
      << coordinator->Log();
  // The agent kept the final model as it downloaded it (fp16), under the
  // hash the coordinator announced, and the file verifies: it predicts
  // without a coordinator.
  EXPECT_THAT(agents[0]->Log(), Not(HasSubstr("could not cache")));
  Process predict({kBinaryDir + "/edge_agent/fedge-agent", "predict",
                   "--state_dir=" + dir_ + "/agent-1",
                   "--data.source=synthetic", "--limit=50"},
                  dir_ + "/predict.log");
  EXPECT_EQ(predict.Wait(absl::Seconds(60)), 0) << predict.Log();
  EXPECT_THAT(predict.Log(), HasSubstr("accuracy"));
}

TEST_F(FederationTest, AgentKilledMidRound_RoundClosesAtDeadlineWithQuorum) {
  int port;
  auto coordinator =
      StartCoordinator({"--rounds=3", "--strategy.round_deadline_ms=3000",
                        "--agent_timeout_ms=10000"},
                       &port);
  auto a1 = StartAgent(1, port);
  auto a2 = StartAgent(2, port);
  // Agent 3 trains slowly, so it is still busy when it is killed.
  auto a3 = StartAgent(3, port, {"--profile.compute_slowdown=1000"});
  ASSERT_TRUE(WaitFor(
      [&] {
        return coordinator->Log().find("round 1 started") != std::string::npos;
      },
      absl::Seconds(60)))
      << coordinator->Log();
  absl::SleepFor(absl::Seconds(1));
  a3->Signal(SIGKILL);
  ASSERT_TRUE(WaitForRounds(1, absl::Seconds(30))) << coordinator->Log();
  auto rows = History();
  // Round 1 closed at its deadline with the two remaining agents.
  EXPECT_EQ(Number(rows[0], "num_agents"), 2) << coordinator->Log();
  EXPECT_EQ(Number(rows[0], "num_failed"), 1);
  EXPECT_GE(Number(rows[0], "round_seconds"), 2.9);
  // The round's log line follows its history row (history_->Append first).
  EXPECT_TRUE(WaitFor(
      [&] {
        return coordinator->Log().find("round 1 completed: 2 agents") !=
               std::string::npos;
      },
      absl::Seconds(30)))
      << coordinator->Log();
  // The device comes back and the federation carries on.
  auto a3_again = StartAgent(3, port);
  ASSERT_EQ(coordinator->Wait(absl::Seconds(120)), 0) << coordinator->Log();
  EXPECT_EQ(History().size(), 3u);
}

TEST_F(FederationTest, CoordinatorKilled_ResumesFromCheckpointAndAgentsReturn) {
  int port;
  auto coordinator = StartCoordinator({"--rounds=4"}, &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_TRUE(WaitForRounds(2, absl::Seconds(90))) << coordinator->Log();
  coordinator->Signal(SIGKILL);
  coordinator->Wait(absl::Seconds(10));
  const std::string log = coordinator->Log();
  const size_t at = log.find("round 2 completed");
  ASSERT_NE(at, std::string::npos) << log;
  const size_t sha_at = log.find("sha256 ", at) + 7;
  const std::string round2_sha = log.substr(sha_at, 12);
  const size_t rounds_before = History().size();

  int port2;
  auto restarted = StartCoordinator(
      {"--rounds=4", absl::StrCat("--listen_address=127.0.0.1:", port)}, &port2,
      "coordinator-restarted");
  ASSERT_EQ(port2, port);
  // The operator tool sees the restarted coordinator (TLS).
  const auto [code, status] = RunFedge(port, {"status"});
  EXPECT_EQ(code, 0) << status;
  EXPECT_THAT(status, HasSubstr("total_rounds: 4"));
  ASSERT_EQ(restarted->Wait(absl::Seconds(120)), 0) << restarted->Log();
  const std::string log2 = restarted->Log();
  EXPECT_THAT(log2, HasSubstr(absl::StrCat("resumed from checkpoint: model "
                                           "version ",
                                           rounds_before, " sha256 ")));
  if (rounds_before == 2) {
    EXPECT_THAT(log2, HasSubstr(round2_sha));
  }
  EXPECT_THAT(
      log2, HasSubstr(absl::StrCat("round ", rounds_before + 1, " completed")));
  auto rows = History();
  ASSERT_EQ(rows.size(), 4u);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(Number(rows[i], "round"), i + 1);
  }
  for (auto& a : agents) EXPECT_EQ(a->Wait(absl::Seconds(30)), 0) << a->Log();
}

TEST_F(FederationTest, MutualTls_AgentsWithCertificatesTrain) {
  const std::string certs = CertDir();
  int port;
  auto coordinator =
      StartCoordinator({"--rounds=1", "--tls.require_client_cert=true",
                        "--tls.ca_path=" + certs + "/ca.pem"},
                       &port);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) {
    agents.push_back(StartAgent(
        i, port,
        {absl::StrCat("--tls.cert_path=", certs, "/agent-", i, ".pem"),
         absl::StrCat("--tls.key_path=", certs, "/agent-", i, ".key"),
         "--agent_id=self-chosen-name"}));
  }
  ASSERT_EQ(coordinator->Wait(absl::Seconds(90)), 0) << coordinator->Log();
  // Identities come from the certificates, not from --agent_id.
  EXPECT_THAT(coordinator->Log(), HasSubstr("agent agent-2 joined"));
  EXPECT_THAT(coordinator->Log(), ::testing::Not(HasSubstr("self-chosen")));
}

// Evaluation data that is not there: the coordinator falls back to the
// synthetic set and names its own flag for the folder (the agents' and
// fedge-sim's is --data_dir).
TEST_F(FederationTest, MissingEvalMnist_FallbackNamesTheCoordinatorsFlag) {
  int port;
  auto coordinator = StartCoordinator(
      {"--eval_data.source=mnist", "--eval_data.data_dir=/nonexistent/mnist"},
      &port);
  ASSERT_TRUE(WaitFor(
      [&] {
        return coordinator->Log().find("central evaluation on") !=
               std::string::npos;
      },
      absl::Seconds(60)))
      << coordinator->Log();
  const std::string log = coordinator->Log();
  EXPECT_THAT(log, HasSubstr("MNIST not found in '/nonexistent/mnist'"));
  EXPECT_THAT(log, HasSubstr("pass --eval_data.data_dir DIR for real data"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("pass --data_dir")));
}

TEST_F(FederationTest, BadConfig_NamesTheField) {
  Process p(
      {kBinaryDir + "/server/fedge-coordinator",
       "--config=" + kSourceDir + "/configs/coordinator/mnist_2nn.textproto",
       "--state_dir=" + dir_ + "/c", "--strategy.min_fit_agents=0"},
      dir_ + "/bad.log");
  EXPECT_EQ(p.Wait(absl::Seconds(30)), 2);
  EXPECT_THAT(p.Log(), HasSubstr("strategy.min_fit_agents"));
  Process no_tls(
      {kBinaryDir + "/server/fedge-coordinator", "--state_dir=" + dir_ + "/c"},
      dir_ + "/notls.log");
  EXPECT_EQ(no_tls.Wait(absl::Seconds(30)), 2);
  EXPECT_THAT(no_tls.Log(), HasSubstr("tls.cert_path"));
}

}  // namespace
}  // namespace fedge::testing
