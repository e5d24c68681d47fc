// Shared set-up for end-to-end tests of the real fedge-coordinator and
// fedge-agent binaries on 127.0.0.1 (ephemeral ports): a temporary working
// folder (removed when the test passed, kept for its logs when it failed),
// certificates from deploy/make-certs.sh, helpers to start the binaries and
// to read the coordinator's history.
#ifndef FEDGE_TESTS_E2E_FEDERATION_FIXTURE_H_
#define FEDGE_TESTS_E2E_FEDERATION_FIXTURE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/common/scratch_dir.h"
#include "tests/e2e/process.h"

namespace fedge::testing {

inline const std::string kSourceDir = FEDGE_SOURCE_DIR;
inline const std::string kBinaryDir = FEDGE_BINARY_DIR;

// The number in `column` of a history row (-1 when missing or not a
// number).
double Number(const std::map<std::string, std::string>& row,
              const std::string& column);

// The token `fedge token create` printed in `output` ("" when none).
std::string JoinTokenFrom(const std::string& output);

class FederationTest : public ::testing::Test {
 protected:
  void SetUp() override;

  // Certificates made once per test binary: ca.pem, coordinator.{pem,key},
  // agent-1..3.{pem,key}, operator-1.{pem,key} (the Operator service's
  // client certificate under mutual TLS), and foreign/ (another CA with
  // agent-1).
  static std::string CertDir();

  // Starts fedge-coordinator with the test defaults (synthetic data, 2NN,
  // simulation mode, TLS) plus `flags`, waits for its port. state_dir is
  // dir_/coordinator unless given in flags.
  std::unique_ptr<Process> StartCoordinator(
      const std::vector<std::string>& flags, int* port,
      const std::string& name = "coordinator");
  // The command line StartCoordinator runs (binary, test defaults, flags).
  std::vector<std::string> CoordinatorArgv(
      const std::vector<std::string>& flags) const;
  // Runs `argv` (e.g. CoordinatorArgv() behind a wrapper) and waits for the
  // port file in `state_dir` (the last --state_dir= of argv when empty).
  std::unique_ptr<Process> StartCoordinatorProcess(
      const std::vector<std::string>& argv, int* port, const std::string& name,
      const std::string& state_dir = "");
  // Starts fedge-agent number `i` against `port` with `flags`.
  std::unique_ptr<Process> StartAgent(
      int i, int port, const std::vector<std::string>& flags = {});

  // Rows of <state_dir>/history.csv as column -> value maps.
  std::vector<std::map<std::string, std::string>> History(
      const std::string& state_dir = "") const;
  bool WaitForRounds(size_t n, absl::Duration timeout,
                     const std::string& state_dir = "") const;
  // The port of the coordinator's HTTP listener (metrics, status page),
  // from <state_dir>/http_port (or another port file, e.g. an agent's
  // metrics_port), waiting up to 60 s; 0 when it never appears.
  int WaitForHttpPort(const std::string& state_dir = "",
                      const std::string& file = "http_port") const;

  // The coordinator's operator token file (made at its first start; the
  // Operator service needs it without mutual TLS).
  std::string OperatorTokenPath(const std::string& state_dir = "") const {
    return (state_dir.empty() ? dir_ + "/coordinator" : state_dir) +
           "/operator_token";
  }
  // --operator_token_path=... for the fedge tool.
  std::string OperatorTokenFlag(const std::string& state_dir = "") const {
    return "--operator_token_path=" + OperatorTokenPath(state_dir);
  }
  // Runs `fedge ARGS` against the coordinator on 127.0.0.1:`port` (TLS with
  // the test CA, the operator token of `state_dir`, default
  // dir_/coordinator), waiting up to 60 s: its exit code (-1 when it did not
  // end) and output. Logs in dir_/fedge-<n>.log.
  std::pair<int, std::string> RunFedge(int port, std::vector<std::string> args,
                                       const std::string& state_dir = "");

  // Tests that compare runs keep each run's processes, logs and state dirs
  // in a sub-folder of the test's folder: dir_ becomes base_dir_/name.
  void UseRunDir(const std::string& name);

  std::string dir_;       // Fresh per test (or the run's: UseRunDir).
  int fedge_runs_ = 0;    // RunFedge's log files.
  std::string base_dir_;  // The test's folder.

 private:
  // The test's folder, removed if it passed. A member of this base class:
  // it goes after the derived fixtures' members (their processes).
  std::optional<ScratchDir> scratch_;
};

}  // namespace fedge::testing

#endif  // FEDGE_TESTS_E2E_FEDERATION_FIXTURE_H_
