// End-to-end: a two-level federation, an upstream coordinator with 2 edge
// aggregators (fedge-coordinator --upstream.address=...) of 3 agents each,
// ends with the same global model, within float tolerance, as a flat
// federation of the same 6 agents with the same seeds, plans and data
// partitions (FedAvg: the upstream's weighted mean of the edges' means,
// weighted by their examples, is the flat weighted mean). The real
// binaries on 127.0.0.1, TLS on every link (agents -> edge aggregators ->
// upstream), synthetic data. docs/hierarchy.md.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/model_codec.h"
#include "gmock/gmock.h"
#include "server/checkpoint_store.h"
#include "tests/e2e/federation_fixture.h"
#include "tests/e2e/model_diff.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kRounds = 3;
constexpr int kEdges = 2;
constexpr int kAgentsPerEdge = 3;
constexpr int kAgents = kEdges * kAgentsPerEdge;
// Largest |difference| allowed between the tree's and the flat model: the
// two sum the same float32 updates in another order (and the edges send
// their mean as aggregate minus base), a few ulps of weights of order 0.1
// per round. The model is logistic regression, which is smooth: with the
// 2NN a difference of 1e-8 can flip a ReLU of one example in the next
// round's training, a jump of about 1e-4 however small the difference was
// (measured: 3e-8, 9e-8, then 2e-4 in round 3; docs/hierarchy.md).
constexpr double kTolerance = 1e-5;

// The models of round `round`'s checkpoints in two state dirs.
ModelDifference CompareCheckpoints(const std::string& a, const std::string& b,
                                   int round) {
  const std::string name =
      absl::StrFormat("/checkpoints/ckpt-%08d.fedge", round);
  absl::StatusOr<Checkpoint> ca = CheckpointStore::ReadFile(a + name);
  absl::StatusOr<Checkpoint> cb = CheckpointStore::ReadFile(b + name);
  if (!ca.ok() || !cb.ok()) return ModelDifference();
  return CompareModels(ca->model, cb->model);
}

class HierarchyTest : public FederationTest {
 protected:
  // A coordinator (flat, upstream or edge aggregator) of `agents` agents,
  // all of which train every round.
  static std::vector<std::string> Flags(int agents) {
    return {absl::StrCat("--rounds=", kRounds),
            "--simulation.enabled=false",
            absl::StrCat("--strategy.count=", agents),
            absl::StrCat("--strategy.min_available_agents=", agents),
            absl::StrCat("--strategy.min_fit_agents=", agents),
            "--strategy.round_deadline_ms=120000",
            "--model.architecture=logreg",
            "--agent_timeout_ms=30000"};
  }

  // Agent i (1-based) holds partition i - 1 of 6, whichever coordinator
  // it reports to.
  std::unique_ptr<Process> Agent(int i, int port) {
    return StartAgent(i, port,
                      {absl::StrCat("--partition_index=", i - 1),
                       absl::StrCat("--num_partitions=", kAgents)});
  }
};

TEST_F(HierarchyTest, TwoEdgeAggregatorsOfThree_EqualsFlatFederationOfSix) {
  // Flat: one coordinator, 6 agents.
  ASSERT_NO_FATAL_FAILURE(UseRunDir("flat"));
  int flat_port;
  auto flat = StartCoordinator(Flags(kAgents), &flat_port);
  ASSERT_GT(flat_port, 0);
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= kAgents; ++i) agents.push_back(Agent(i, flat_port));
  ASSERT_EQ(flat->Wait(absl::Seconds(240)), 0) << flat->Log();
  for (auto& a : agents) EXPECT_EQ(a->Wait(absl::Seconds(60)), 0) << a->Log();
  agents.clear();
  const std::string flat_model =
      ReadFileOrEmpty(dir_ + "/coordinator/final_model.fedge");
  ASSERT_FALSE(flat_model.empty()) << flat->Log();
  ASSERT_EQ(History().size(), static_cast<size_t>(kRounds));

  // Two tiers: the upstream sees 2 agents (the edge aggregators), each of
  // which federates 3 of the same agents. TLS on both links.
  ASSERT_NO_FATAL_FAILURE(UseRunDir("tree"));
  int up_port;
  auto upstream = StartCoordinator(Flags(kEdges), &up_port, "upstream");
  ASSERT_GT(up_port, 0);
  std::vector<std::unique_ptr<Process>> edges;
  for (int e = 1; e <= kEdges; ++e) {
    std::vector<std::string> flags = Flags(kAgentsPerEdge);
    flags.push_back(absl::StrCat("--state_dir=", dir_, "/edge-", e));
    flags.push_back(absl::StrCat("--upstream.address=127.0.0.1:", up_port));
    flags.push_back(absl::StrCat("--upstream.agent_id=edge-", e));
    flags.push_back("--upstream.tls.ca_path=" + CertDir() + "/ca.pem");
    int edge_port;
    edges.push_back(
        StartCoordinator(flags, &edge_port, "edge-" + std::to_string(e)));
    ASSERT_GT(edge_port, 0) << edges.back()->Log();
    for (int k = 1; k <= kAgentsPerEdge; ++k) {
      agents.push_back(Agent((e - 1) * kAgentsPerEdge + k, edge_port));
    }
  }
  ASSERT_EQ(upstream->Wait(absl::Seconds(240)), 0) << upstream->Log();
  const std::string tree_model =
      ReadFileOrEmpty(dir_ + "/coordinator/final_model.fedge");
  ASSERT_FALSE(tree_model.empty()) << upstream->Log();
  // The upstream saw one agent per edge aggregator, each weighted by its
  // agents' examples: the same total as the flat federation.
  const auto tree_history = History();
  ASSERT_EQ(tree_history.size(), static_cast<size_t>(kRounds));
  const auto flat_history = History(base_dir_ + "/flat/coordinator");
  for (int r = 0; r < kRounds; ++r) {
    EXPECT_EQ(tree_history[r].at("num_agents"), std::to_string(kEdges));
    EXPECT_EQ(tree_history[r].at("num_examples"),
              flat_history[r].at("num_examples"));
  }
  // The edge aggregators finish with the upstream's final model, and so
  // do their agents.
  for (int e = 1; e <= kEdges; ++e) {
    Process& edge = *edges[e - 1];
    EXPECT_EQ(edge.Wait(absl::Seconds(60)), 0) << edge.Log();
    EXPECT_THAT(edge.Log(), HasSubstr("the upstream federation finished"));
    EXPECT_EQ(
        ReadFileOrEmpty(absl::StrCat(dir_, "/edge-", e, "/final_model.fedge")),
        tree_model)
        << edge.Log();
  }
  for (auto& a : agents) EXPECT_EQ(a->Wait(absl::Seconds(60)), 0) << a->Log();

  // Tensor by tensor, round by round (the checkpoints), then the final
  // models.
  std::string rounds;
  for (int r = 1; r <= kRounds; ++r) {
    const ModelDifference d = CompareCheckpoints(
        base_dir_ + "/flat/coordinator", dir_ + "/coordinator", r);
    absl::StrAppend(&rounds, "  round ", r, ": ", Describe(d), "\n");
    EXPECT_GE(d.max_abs, 0) << "round " << r << ": no comparable checkpoints";
    EXPECT_LE(d.max_abs, kTolerance) << "round " << r << ": " << Describe(d);
  }
  absl::StatusOr<ModelState> flat_final = DecodeModel(flat_model);
  absl::StatusOr<ModelState> tree_final = DecodeModel(tree_model);
  ASSERT_TRUE(flat_final.ok() && tree_final.ok());
  const ModelDifference d = CompareModels(*flat_final, *tree_final);
  ASSERT_GE(d.max_abs, 0) << "the models do not have the same schema";
  EXPECT_LE(d.max_abs, kTolerance) << "final models: " << Describe(d);
  std::printf("tree vs flat, by round:\n%s  final: %s\n", rounds.c_str(),
              Describe(d).c_str());
}

// An edge aggregator towards an upstream that requires join tokens: it
// enrolls with the token the operator made for it
// (--upstream.join_token_path), keeps the agent key it was given, and its
// federation trains through the upstream's rounds.
TEST_F(HierarchyTest, EdgeAggregator_EnrollsUpstreamWithAJoinToken) {
  int up_port;
  std::vector<std::string> up_flags = Flags(1);
  up_flags.push_back("--require_join_token=true");
  auto upstream = StartCoordinator(up_flags, &up_port, "upstream");
  ASSERT_GT(up_port, 0);
  const auto [code, out] = RunFedge(
      up_port,
      {"token", "create", "--agent=edge-1", "--label=edge aggregator 1"});
  ASSERT_EQ(code, 0) << out;
  const std::string token = JoinTokenFrom(out);
  ASSERT_FALSE(token.empty()) << out;
  const std::string token_file = dir_ + "/edge-1.token";
  std::ofstream(token_file) << token << "\n";

  std::vector<std::string> flags = Flags(1);
  flags.push_back(absl::StrCat("--state_dir=", dir_, "/edge-1"));
  flags.push_back(absl::StrCat("--upstream.address=127.0.0.1:", up_port));
  flags.push_back("--upstream.agent_id=edge-1");
  flags.push_back("--upstream.tls.ca_path=" + CertDir() + "/ca.pem");
  flags.push_back("--upstream.join_token_path=" + token_file);
  int edge_port;
  auto edge = StartCoordinator(flags, &edge_port, "edge-1");
  ASSERT_GT(edge_port, 0) << edge->Log();
  auto agent = Agent(1, edge_port);
  ASSERT_EQ(upstream->Wait(absl::Seconds(240)), 0) << upstream->Log();
  EXPECT_EQ(History().size(), static_cast<size_t>(kRounds));
  const std::string key = dir_ + "/edge-1/upstream_agent_key";
  ASSERT_TRUE(std::filesystem::exists(key)) << edge->Log();
  EXPECT_EQ(std::filesystem::status(key).permissions() &
                std::filesystem::perms::others_read,
            std::filesystem::perms::none);
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/coordinator/audit.log"),
              HasSubstr(absl::StrCat("\"event\":\"join\",\"agent\":\"edge-1\"")));
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/coordinator/audit.log"),
              HasSubstr(absl::StrCat("join token ", token.substr(0, 19),
                                     " (enrolled now)")));
}

}  // namespace
}  // namespace fedge::testing
