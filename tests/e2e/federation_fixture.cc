#include "tests/e2e/federation_fixture.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace fedge::testing {

std::string JoinTokenFrom(const std::string& output) {
  const size_t at = output.find("token: \"");
  if (at == std::string::npos) return "";
  const size_t start = at + 8;
  const size_t end = output.find('"', start);
  return end == std::string::npos ? "" : output.substr(start, end - start);
}

double Number(const std::map<std::string, std::string>& row,
              const std::string& column) {
  double v = -1;
  auto it = row.find(column);
  if (it == row.end() || !absl::SimpleAtod(it->second, &v)) return -1;
  return v;
}
namespace {

std::string Shell(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << command << "\n" << out;
  return out;
}

}  // namespace

std::string FederationTest::CertDir() {
  static const std::string dir = [] {
    const std::string d =
        absl::StrCat(::testing::TempDir(), "/fedge_e2e_certs_", getpid());
    const std::string script = kSourceDir + "/deploy/make-certs.sh";
    Shell(absl::StrCat(script, " ", d, " --agents 3 --operators 1"));
    Shell(absl::StrCat(script, " ", d, "/foreign --agents 1"));
    RemoveAtExit(d);
    return d;
  }();
  return dir;
}

void FederationTest::SetUp() {
  scratch_.emplace(ScratchDir::NameForCurrentTest("fedge_e2e"));
  dir_ = scratch_->path();
  base_dir_ = dir_;
}

void FederationTest::UseRunDir(const std::string& name) {
  dir_ = base_dir_ + "/" + name;
  ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0) << dir_;
}

std::vector<std::string> FederationTest::CoordinatorArgv(
    const std::vector<std::string>& flags) const {
  const std::string certs = CertDir();
  std::vector<std::string> argv = {
      kBinaryDir + "/server/fedge-coordinator",
      "--config=" + kSourceDir + "/configs/coordinator/mnist_2nn.textproto",
      "--listen_address=127.0.0.1:0",
      "--state_dir=" + dir_ + "/coordinator",
      "--eval_data.source=synthetic",
      "--tls.cert_path=" + certs + "/coordinator.pem",
      "--tls.key_path=" + certs + "/coordinator.key",
      "--heartbeat_interval_ms=200",
      "--agent_timeout_ms=3000",
      "--poll_wait_ms=200"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return argv;
}

std::unique_ptr<Process> FederationTest::StartCoordinator(
    const std::vector<std::string>& flags, int* port, const std::string& name) {
  return StartCoordinatorProcess(CoordinatorArgv(flags), port, name);
}

std::unique_ptr<Process> FederationTest::StartCoordinatorProcess(
    const std::vector<std::string>& argv, int* port, const std::string& name,
    const std::string& state_dir_arg) {
  std::string state_dir = state_dir_arg;
  if (state_dir.empty()) {
    for (const std::string& f : argv) {
      absl::string_view v = f;
      if (absl::ConsumePrefix(&v, "--state_dir=")) state_dir = std::string(v);
    }
  }
  std::remove((state_dir + "/port").c_str());
  std::remove((state_dir + "/http_port").c_str());
  auto p = std::make_unique<Process>(argv, dir_ + "/" + name + ".log");
  const bool up = WaitFor(
      [&] {
        return !ReadFileOrEmpty(state_dir + "/port").empty() || !p->running();
      },
      absl::Seconds(60));
  EXPECT_TRUE(up && p->running()) << p->Log();
  *port = 0;
  absl::SimpleAtoi(
      absl::StripAsciiWhitespace(ReadFileOrEmpty(state_dir + "/port")), port);
  return p;
}

std::unique_ptr<Process> FederationTest::StartAgent(
    int i, int port, const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {
      kBinaryDir + "/edge_agent/fedge-agent",
      "--config=" + kSourceDir + "/configs/agent/mnist.textproto",
      absl::StrCat("--coordinator=127.0.0.1:", port),
      absl::StrCat("--agent_id=agent-", i),
      absl::StrCat("--state_dir=", dir_, "/agent-", i),
      "--data.source=synthetic",
      "--tls.ca_path=" + CertDir() + "/ca.pem",
      "--initial_backoff_ms=100",
      "--max_backoff_ms=500"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return std::make_unique<Process>(argv,
                                   absl::StrCat(dir_, "/agent-", i, ".log"));
}

std::vector<std::map<std::string, std::string>> FederationTest::History(
    const std::string& state_dir) const {
  const std::string path =
      (state_dir.empty() ? dir_ + "/coordinator" : state_dir) + "/history.csv";
  std::vector<std::string> lines =
      absl::StrSplit(ReadFileOrEmpty(path), '\n', absl::SkipEmpty());
  std::vector<std::map<std::string, std::string>> rows;
  if (lines.empty()) return rows;
  std::vector<std::string> header = absl::StrSplit(lines[0], ',');
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> cells = absl::StrSplit(lines[i], ',');
    std::map<std::string, std::string> row;
    for (size_t c = 0; c < header.size() && c < cells.size(); ++c) {
      row[header[c]] = cells[c];
    }
    rows.push_back(row);
  }
  return rows;
}

bool FederationTest::WaitForRounds(size_t n, absl::Duration timeout,
                                   const std::string& state_dir) const {
  return WaitFor([&] { return History(state_dir).size() >= n; }, timeout);
}

int FederationTest::WaitForHttpPort(const std::string& state_dir,
                                    const std::string& file) const {
  const std::string path =
      (state_dir.empty() ? dir_ + "/coordinator" : state_dir) + "/" + file;
  int port = 0;
  WaitFor(
      [&] {
        return absl::SimpleAtoi(
                   absl::StripAsciiWhitespace(ReadFileOrEmpty(path)), &port) &&
               port > 0;
      },
      absl::Seconds(60));
  return port;
}

std::pair<int, std::string> FederationTest::RunFedge(
    int port, std::vector<std::string> args, const std::string& state_dir) {
  args.insert(args.begin(), kBinaryDir + "/server/fedge");
  args.push_back(absl::StrCat("--coordinator=127.0.0.1:", port));
  args.push_back("--tls.ca_path=" + CertDir() + "/ca.pem");
  args.push_back(OperatorTokenFlag(state_dir));
  Process p(args, absl::StrCat(dir_, "/fedge-", ++fedge_runs_, ".log"));
  const std::optional<int> code = p.Wait(absl::Seconds(60));
  return {code.value_or(-1), p.Log()};
}

}  // namespace fedge::testing
