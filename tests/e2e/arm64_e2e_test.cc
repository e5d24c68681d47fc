// End-to-end on two architectures: the native (x86-64) fedge-coordinator
// with the cross-built arm64 fedge-agent (scripts/build-arm64.sh) running
// under qemu-aarch64-static -L <arm64 sysroot>, TLS on, 127.0.0.1, synthetic
// data, every wait bounded.
//
// - An arm64 agent and an x86-64 agent in one federation: both updates are
//   accepted.
// - The same 1-agent, 1-round federation once with the x86-64 agent and once
//   with the arm64 agent (same initial model, same agent id, hence the same
//   plan seed and partition): the two global models, i.e. what each agent
//   trained, agree within a float tolerance. Bit equality is not expected:
//   OpenBLAS and LibTorch kernels differ by architecture (summation order,
//   fused multiply-add, vectorized exp), so the results differ by rounding.
//
// Registered with CTest only with -DFEDGE_ARM64_E2E=ON (label "arm64"); it
// fails, saying to run scripts/build-arm64.sh, when the cross-built agent,
// its sysroot or qemu-aarch64-static is missing.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/model_codec.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

std::string FromEnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

const std::string& Arm64Agent() {
  static const std::string path =
      FromEnvOr("FEDGE_ARM64_BUILD_DIR", FEDGE_ARM64_BUILD_DIR) +
      "/edge_agent/fedge-agent";
  return path;
}

const std::string& Arm64Sysroot() {
  static const std::string path =
      FromEnvOr("FEDGE_ARM64_SYSROOT", FEDGE_ARM64_SYSROOT);
  return path;
}

// qemu-aarch64-static on PATH, or "".
std::string Qemu() {
  const std::string path = FromEnvOr("PATH", "/usr/bin:/bin");
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find(':', start), path.size());
    const std::string candidate =
        path.substr(start, end - start) + "/qemu-aarch64-static";
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// e_machine of an ELF file (183 = EM_AARCH64), or -1.
int ElfMachine(const std::string& path) {
  const std::string head = ReadFileOrEmpty(path).substr(0, 20);
  if (head.size() < 20 || head.compare(0, 4, "\177ELF") != 0) return -1;
  return static_cast<unsigned char>(head[18]) |
         static_cast<unsigned char>(head[19]) << 8;
}

// Largest |a - b| over all elements; fails the test (and returns infinity)
// unless both models have the same float32 tensors in the same order.
double MaxAbsDiff(const ModelState& a, const ModelState& b) {
  EXPECT_EQ(a.size(), b.size());
  if (a.size() != b.size()) return INFINITY;
  double max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const TensorBuffer& x = a.tensor(i);
    const TensorBuffer& y = b.tensor(i);
    EXPECT_EQ(x.name(), y.name());
    EXPECT_EQ(x.shape(), y.shape()) << x.name();
    if (x.shape() != y.shape() || x.dtype() != DType::kFloat32 ||
        y.dtype() != DType::kFloat32) {
      return INFINITY;
    }
    for (int64_t j = 0; j < x.num_elements(); ++j) {
      max_diff =
          std::max(max_diff, std::fabs(static_cast<double>(x.floats()[j]) -
                                       static_cast<double>(y.floats()[j])));
    }
  }
  return max_diff;
}

ModelState DecodeFile(const std::string& path) {
  auto model = DecodeModel(ReadFileOrEmpty(path));
  EXPECT_TRUE(model.ok()) << path << ": " << model.status();
  return model.ok() ? std::move(*model) : ModelState();
}

class Arm64FederationTest : public FederationTest {
 protected:
  void SetUp() override {
    FederationTest::SetUp();
    qemu_ = Qemu();
    ASSERT_EQ(ElfMachine(Arm64Agent()), 183)
        << "no cross-built arm64 agent at " << Arm64Agent()
        << ": run scripts/build-arm64.sh first (or set FEDGE_ARM64_BUILD_DIR)";
    ASSERT_EQ(
        access((Arm64Sysroot() + "/lib/ld-linux-aarch64.so.1").c_str(), R_OK),
        0)
        << "no arm64 sysroot at " << Arm64Sysroot()
        << ": run scripts/build-arm64.sh first (or set FEDGE_ARM64_SYSROOT)";
    ASSERT_FALSE(qemu_.empty())
        << "qemu-aarch64-static is not on PATH: run scripts/build-arm64.sh "
           "first (it installs qemu-user-static)";
  }

  // The coordinator flags of a small, quick federation: `agents` agents,
  // one round, everyone on the one partition of the synthetic set. Agents
  // under emulation get a generous silence timeout.
  std::vector<std::string> SmallFederation(int agents, const std::string& arch,
                                           const std::string& state_dir) {
    return {"--rounds=1",
            "--model.architecture=" + arch,
            absl::StrCat("--strategy.count=", agents),
            absl::StrCat("--strategy.min_available_agents=", agents),
            absl::StrCat("--strategy.min_fit_agents=", agents),
            "--simulation.num_partitions=1",
            "--eval_data.synthetic_test_examples=200",
            "--agent_timeout_ms=30000",
            "--state_dir=" + state_dir};
  }

  // fedge-agent (native, or arm64 under qemu) as `agent_id` against `port`.
  std::unique_ptr<Process> StartAgentOn(bool arm64, const std::string& id,
                                        int port, const std::string& name) {
    std::vector<std::string> argv;
    if (arm64) {
      argv = {qemu_, "-L", Arm64Sysroot(), Arm64Agent()};
    } else {
      argv = {kBinaryDir + "/edge_agent/fedge-agent"};
    }
    const std::vector<std::string> flags = {
        "--config=" + kSourceDir + "/configs/agent/mnist.textproto",
        absl::StrCat("--coordinator=127.0.0.1:", port),
        "--agent_id=" + id,
        "--state_dir=" + dir_ + "/" + name,
        "--data.source=synthetic",
        "--data.synthetic_train_examples=300",
        "--data.synthetic_test_examples=100",
        "--tls.ca_path=" + CertDir() + "/ca.pem",
        "--initial_backoff_ms=100",
        "--max_backoff_ms=500"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return std::make_unique<Process>(argv, dir_ + "/" + name + ".log");
  }

  // Runs a 1-agent, 1-round federation of `arch` with the x86-64 or the
  // arm64 agent (id "agent-1"); its state is in dir_/<name>-coordinator
  // and dir_/<name>-agent.
  void RunOneAgentFederation(const std::string& arch, bool arm64,
                             const std::string& name) {
    const std::string state_dir = dir_ + "/" + name + "-coordinator";
    int port = 0;
    auto coordinator = StartCoordinator(SmallFederation(1, arch, state_dir),
                                        &port, name + "-coordinator");
    ASSERT_GT(port, 0) << coordinator->Log();
    auto agent = StartAgentOn(arm64, "agent-1", port, name + "-agent");
    ASSERT_EQ(coordinator->Wait(absl::Seconds(180)), 0)
        << coordinator->Log() << agent->Log();
    EXPECT_EQ(agent->Wait(absl::Seconds(30)), 0) << agent->Log();
    EXPECT_THAT(agent->Log(), HasSubstr("submitted"));
    auto rows = History(state_dir);
    ASSERT_EQ(rows.size(), 1u) << coordinator->Log();
    EXPECT_EQ(Number(rows[0], "num_agents"), 1) << coordinator->Log();
  }

  // Both agents' trained models (the global models of the two 1-agent
  // federations) agree within `tolerance`, while training moved the model
  // by far more than that; prints the observed difference.
  void ExpectSameTraining(const std::string& arch, double tolerance) {
    RunOneAgentFederation(arch, /*arm64=*/false, "x86");
    if (HasFatalFailure()) return;
    RunOneAgentFederation(arch, /*arm64=*/true, "arm64");
    if (HasFatalFailure()) return;
    // Same start: the model both agents downloaded (the agent's cache
    // layout, edge_agent/model_cache.h) is the same, bit for bit.
    const std::string x86_initial =
        ReadFileOrEmpty(dir_ + "/x86-agent/models/model-0.fedge");
    ASSERT_FALSE(x86_initial.empty());
    EXPECT_EQ(x86_initial,
              ReadFileOrEmpty(dir_ + "/arm64-agent/models/model-0.fedge"));
    const ModelState initial =
        DecodeFile(dir_ + "/x86-agent/models/model-0.fedge");
    const ModelState x86 =
        DecodeFile(dir_ + "/x86-coordinator/final_model.fedge");
    const ModelState arm64 =
        DecodeFile(dir_ + "/arm64-coordinator/final_model.fedge");
    const double diff = MaxAbsDiff(x86, arm64);
    const double moved = MaxAbsDiff(initial, x86);
    std::cout << arch << ": max |arm64 - x86-64| = " << diff
              << ", max |trained - initial| = " << moved << ", tolerance "
              << tolerance << std::endl;
    RecordProperty("max_abs_diff_" + arch, absl::StrCat(diff));
    EXPECT_LE(diff, tolerance);
    EXPECT_GE(moved, 10 * tolerance) << "training barely moved the model";
  }

  std::string qemu_;
};

TEST_F(Arm64FederationTest, Arm64AndX86AgentsInOneFederation_BothAccepted) {
  const std::string state_dir = dir_ + "/coordinator";
  int port = 0;
  auto coordinator =
      StartCoordinator(SmallFederation(2, "2nn", state_dir), &port);
  ASSERT_GT(port, 0) << coordinator->Log();
  auto x86 = StartAgentOn(false, "agent-x86", port, "agent-x86");
  auto arm64 = StartAgentOn(true, "agent-arm64", port, "agent-arm64");
  ASSERT_EQ(coordinator->Wait(absl::Seconds(180)), 0)
      << coordinator->Log() << arm64->Log();
  EXPECT_EQ(arm64->Wait(absl::Seconds(30)), 0) << arm64->Log();
  EXPECT_EQ(x86->Wait(absl::Seconds(30)), 0) << x86->Log();
  auto rows = History(state_dir);
  ASSERT_EQ(rows.size(), 1u) << coordinator->Log();
  EXPECT_EQ(Number(rows[0], "num_agents"), 2) << coordinator->Log();
  EXPECT_EQ(Number(rows[0], "num_failed"), 0);
  EXPECT_EQ(Number(rows[0], "num_examples"), 600);
  EXPECT_THAT(coordinator->Log(), HasSubstr("agent agent-arm64 joined"));
  EXPECT_THAT(arm64->Log(), HasSubstr("round 1: "));
  EXPECT_THAT(arm64->Log(), HasSubstr("submitted"));
  EXPECT_THAT(x86->Log(), HasSubstr("submitted"));
}

// Logistic regression (one matrix product per step): the architectures
// differ by a few float32 rounding steps only (about 6e-8 here), so a tight
// bound.
TEST_F(Arm64FederationTest, LogReg_Arm64TrainsWhatX86Trains) {
  ExpectSameTraining("logreg", 1e-5);
}

// The FedAvg paper's 2NN (784-200-200-10, ReLU): a rounding difference can
// flip a near-zero activation and so switch a unit's gradient on or off for
// an example; 30 SGD steps amplify that to about 7e-5 (0.5% of the largest
// update) here, hence a looser bound, still well below what training moved.
TEST_F(Arm64FederationTest, TwoLayerNet_Arm64TrainsWhatX86Trains) {
  ExpectSameTraining("2nn", 5e-4);
}

}  // namespace
}  // namespace fedge::testing
