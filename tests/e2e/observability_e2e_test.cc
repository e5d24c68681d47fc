// End-to-end checks of what operators see and do, with the real binaries on
// 127.0.0.1: Debian's Prometheus scraping the coordinator's /metrics over
// HTTPS, the live status page in headless Chromium (and a screenshot of it),
// /metrics read with an HTTPS client (the coordinator's, and an agent's
// under mutual TLS), the plain-HTTP listener of an --insecure coordinator,
// and every operator action through the real `fedge` tool, under TLS and
// under mutual TLS with operator certificates. Bounded in time; every
// process (Prometheus and Chromium included) is stopped by the test. (Past
// 500 lines: seven federations, plus the Prometheus, Chromium and HTTP
// helpers only these tests use.)
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>

#include <fstream>
#include <iostream>
#include <regex>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPrometheus[] = "/usr/bin/prometheus";
constexpr char kChromium[] = "/usr/bin/chromium";

// The first group of `re` in `text` ("" when it does not match).
std::string Capture(const std::string& text, const std::string& re) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(re)) ? m[1].str() : "";
}

// Every first group of `re` in `text`.
std::vector<std::string> CaptureAll(const std::string& text,
                                    const std::string& re) {
  std::vector<std::string> out;
  const std::regex r(re);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), r);
       it != std::sregex_iterator(); ++it) {
    out.push_back((*it)[1].str());
  }
  return out;
}

double Number(const std::string& text) {
  double v = -1;
  return absl::SimpleAtod(text, &v) ? v : -1;
}

// The integer field `name` of a text-format proto (0 when absent: proto3
// prints no default values).
int64_t Field(const std::string& text, const std::string& name) {
  int64_t v = 0;
  absl::SimpleAtoi(Capture(text, "(?:^|\\n) *" + name + ": (-?[0-9]+)"), &v);
  return v;
}

// Rounds the coordinator's log says started after the first line holding
// `from` and before the first line after it holding `to` ("": the end).
std::vector<int64_t> RoundsStartedBetween(const std::string& log,
                                          const std::string& from,
                                          const std::string& to = "") {
  const size_t begin = log.find(from);
  if (begin == std::string::npos) return {};
  const size_t end = to.empty() ? std::string::npos : log.find(to, begin);
  std::vector<int64_t> rounds;
  for (const std::string& r :
       CaptureAll(log.substr(begin, end - begin), "round ([0-9]+) started")) {
    rounds.push_back(static_cast<int64_t>(Number(r)));
  }
  return rounds;
}

// Prometheus' text exposition format 0.0.4: a # TYPE line before a family's
// samples; samples are `name{label="value",...} number`.
void ExpectTextFormat(const std::string& body) {
  ASSERT_TRUE(absl::EndsWith(body, "\n"));
  std::set<std::string> typed;
  const std::regex sample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (\S+))");
  for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipEmpty())) {
    const std::string l(line);
    if (absl::StartsWith(l, "# HELP ")) continue;
    if (absl::StartsWith(l, "# TYPE ")) {
      EXPECT_THAT(l, ::testing::MatchesRegex(
                         "# TYPE [a-z_]+ (counter|gauge|histogram)"));
      typed.insert(Capture(l, "# TYPE ([a-z_]+)"));
      continue;
    }
    std::smatch m;
    ASSERT_TRUE(std::regex_match(l, m, sample)) << l;
    double v;
    EXPECT_TRUE(absl::SimpleAtod(m[5].str(), &v)) << l;
    const std::string family =
        std::regex_replace(m[1].str(), std::regex("_(bucket|sum|count)$"), "");
    EXPECT_TRUE(typed.count(m[1].str()) || typed.count(family))
        << "no # TYPE before " << l;
  }
}

struct HttpReply {
  int status = 0;  // 0: no answer (see `error`).
  std::string content_type;
  std::string body;
  std::string error;
};

// GET `path` from `base` ("https://127.0.0.1:PORT"), verifying an HTTPS
// server's certificate against `ca`.
HttpReply HttpGet(const std::string& base, const std::string& path,
                  const std::string& ca = "",
                  const httplib::Params& params = {}) {
  httplib::Client client(base);
  client.set_connection_timeout(5);
  client.set_read_timeout(10);
  if (!ca.empty()) {
    client.set_ca_cert_path(ca.c_str());
    client.enable_server_certificate_verification(true);
  }
  httplib::Result r = client.Get(path, params, httplib::Headers());
  HttpReply reply;
  if (!r) {
    reply.error = httplib::to_string(r.error());
    return reply;
  }
  reply.status = r->status;
  reply.content_type = r->get_header_value("Content-Type");
  reply.body = r->body;
  return reply;
}

// base64(SHA-256(SubjectPublicKeyInfo)) of the PEM certificate at `path`:
// the pin Chromium's --ignore-certificate-errors-spki-list trusts.
std::string SpkiPin(const std::string& path) {
  FILE* f = fopen(path.c_str(), "r");
  if (f == nullptr) return "";
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  fclose(f);
  if (cert == nullptr) return "";
  unsigned char* der = nullptr;
  const int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
  X509_free(cert);
  if (n <= 0) return "";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(der, n, digest, &len, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  unsigned char b64[2 * EVP_MAX_MD_SIZE];
  const int m = EVP_EncodeBlock(b64, digest, static_cast<int>(len));
  return std::string(reinterpret_cast<const char*>(b64), m);
}

// Debian's Prometheus on 127.0.0.1 (port 0: it logs the port it bound),
// with the scrape configuration `yaml` and its storage in `dir`.
class Prometheus {
 public:
  Prometheus(const std::string& dir, const std::string& yaml) {
    std::ofstream(dir + "/prometheus.yml") << yaml;
    process_ = std::make_unique<Process>(
        std::vector<std::string>{kPrometheus,
                                 "--config.file=" + dir + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir + "/data",
                                 "--web.listen-address=127.0.0.1:0"},
        dir + "/prometheus.log");
    WaitFor(
        [&] {
          return absl::SimpleAtoi(
                     Capture(process_->Log(),
                             "msg=\"Listening on\" address=127.0.0.1:([0-9]+)"),
                     &port_) ||
                 !process_->running();
        },
        absl::Seconds(60));
  }

  int port() const { return port_; }
  std::string Log() const { return process_->Log(); }

  // The value of the first series `promql` returns now ("" when none).
  std::string Query(const std::string& promql) const {
    HttpReply r = HttpGet(absl::StrCat("http://127.0.0.1:", port_),
                          "/api/v1/query", "", {{"query", promql}});
    return Capture(r.body, R"re("value":\[[^,\]]+,"([^"]*)"\])re");
  }

  // SIGTERM; the exit code (nullopt if it did not stop within 30 s).
  std::optional<int> Stop() {
    process_->Signal(SIGTERM);
    return process_->Wait(absl::Seconds(30));
  }

 private:
  std::unique_ptr<Process> process_;
  int port_ = 0;
};

class ObservabilityTest : public FederationTest {
 protected:
  // Runs the `fedge` tool with `args` and then `connection`; its exit code
  // (nullopt when it hangs) and output.
  std::pair<std::optional<int>, std::string> Fedge(
      std::vector<std::string> args, std::vector<std::string> connection) {
    args.insert(args.begin(), kBinaryDir + "/server/fedge");
    args.insert(args.end(), connection.begin(), connection.end());
    Process p(args, absl::StrCat(dir_, "/fedge-", ++tool_runs_, ".log"));
    std::optional<int> code = p.Wait(absl::Seconds(60));
    return {code, p.Log()};
  }
  // The same with tool_flags_.
  std::pair<std::optional<int>, std::string> Fedge(
      std::vector<std::string> args) {
    return Fedge(std::move(args), tool_flags_);
  }

  // Runs headless Chromium on `url` with `flags`, trusting exactly the key
  // of the coordinator's certificate; its standard output goes to `out`.
  // The exit code, or nullopt when it did not finish within 90 s.
  std::optional<int> Chromium(const std::vector<std::string>& flags,
                              const std::string& url, const std::string& out) {
    const std::string profile =
        absl::StrCat(dir_, "/chromium-profile-", ++browser_runs_);
    std::vector<std::string> argv = {
        "/bin/sh",
        "-c",
        "exec \"$@\" >'" + out + "'",
        "sh",
        kChromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--user-data-dir=" + profile,
        "--ignore-certificate-errors-spki-list=" +
            SpkiPin(CertDir() + "/coordinator.pem")};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back(url);
    Process p(argv, absl::StrCat(dir_, "/chromium-", browser_runs_, ".log"));
    return p.Wait(absl::Seconds(90));
  }

  std::vector<std::string> tool_flags_;
  int tool_runs_ = 0;
  int browser_runs_ = 0;
};

TEST_F(ObservabilityTest,
       Prometheus_ScrapesMetricsOverHttps_RoundsAndAccuracy) {
  ASSERT_TRUE(std::ifstream(kPrometheus).good())
      << "apt-get install prometheus";
  int port;
  // Stays up when done, so the final values can be scraped.
  auto coordinator = StartCoordinator(
      {"--rounds=5", "--exit_when_done=false", "--http_address=127.0.0.1:0"},
      &port);
  const int http = WaitForHttpPort();
  ASSERT_GT(http, 0) << coordinator->Log();
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  Prometheus prometheus(dir_, absl::StrCat(R"(global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: fedge
    scheme: https
    tls_config:
      ca_file: )",
                                           CertDir(), R"(/ca.pem
    static_configs:
      - targets: ["127.0.0.1:)",
                                           http, R"("]
)"));
  ASSERT_GT(prometheus.port(), 0) << prometheus.Log();
  ASSERT_TRUE(WaitForRounds(5, absl::Seconds(120))) << coordinator->Log();
  const double last_accuracy = Number(History().back().at("test_accuracy"));
  std::string rounds, accuracy;
  EXPECT_TRUE(WaitFor(
      [&] {
        rounds = prometheus.Query("fedge_rounds_completed_total");
        accuracy = prometheus.Query("fedge_central_accuracy");
        return rounds == "5" &&
               std::abs(Number(accuracy) - last_accuracy) < 1e-5;
      },
      absl::Seconds(60)))
      << "rounds '" << rounds << "', accuracy '" << accuracy << "', history "
      << last_accuracy << "\n"
      << prometheus.Log();
  EXPECT_GT(Number(accuracy), 0);
  EXPECT_LE(Number(accuracy), 1);
  // The target was scraped over HTTPS, verified against the test CA.
  EXPECT_EQ(prometheus.Query("up{job=\"fedge\"}"), "1");
  EXPECT_EQ(prometheus.Stop(), 0) << prometheus.Log();
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(coordinator->Wait(absl::Seconds(30)), 0) << coordinator->Log();
}

TEST_F(ObservabilityTest,
       StatusPage_InHeadlessChromium_ShowsRunningFederation) {
  ASSERT_TRUE(std::ifstream(kChromium).good()) << "apt-get install chromium";
  int port;
  auto coordinator =
      StartCoordinator({"--rounds=1000", "--http_address=127.0.0.1:0"}, &port);
  const int http = WaitForHttpPort();
  ASSERT_GT(http, 0) << coordinator->Log();
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_TRUE(WaitForRounds(5, absl::Seconds(120))) << coordinator->Log();
  const std::string url = absl::StrCat("https://127.0.0.1:", http, "/");

  const size_t before = History().size();
  const std::string dom_path = dir_ + "/status-page.html";
  // Virtual time: the page polls /api/status (every second) a few times.
  ASSERT_EQ(
      Chromium({"--virtual-time-budget=5000", "--dump-dom"}, url, dom_path), 0);
  const size_t after = History().size();
  const std::string dom = ReadFileOrEmpty(dom_path);
  ASSERT_THAT(dom, HasSubstr("id=\"agents-body\"")) << dom;
  EXPECT_GE(Number(Capture(dom, "data-updates=\"([0-9]+)\"")), 1);
  const double round = Number(Capture(dom, "id=\"current-round\">([0-9]+)<"));
  EXPECT_GE(round, before) << dom;
  EXPECT_LE(round, after + 1) << dom;
  // One row per agent.
  const std::vector<std::string> rows =
      CaptureAll(dom, "<tr class=\"agent-row\" data-agent-id=\"([^\"]+)\"");
  EXPECT_THAT(rows, ::testing::ElementsAre("agent-1", "agent-2", "agent-3"));
  // The accuracy chart has a test-accuracy point per evaluated round.
  const size_t chart = dom.find("<svg id=\"accuracy-chart\"");
  ASSERT_NE(chart, std::string::npos);
  const std::string svg = dom.substr(chart, dom.find("</svg>", chart) - chart);
  EXPECT_GE(
      CaptureAll(svg, "(<circle class=\"point\" data-series=\"test\")").size(),
      before)
      << svg;

  const std::string png = dir_ + "/status-page.png";
  ASSERT_EQ(Chromium({"--virtual-time-budget=5000", "--hide-scrollbars",
                      "--window-size=1280,900", "--screenshot=" + png},
                     url, dir_ + "/screenshot.out"),
            0);
  EXPECT_EQ(ReadFileOrEmpty(png).substr(0, 8), "\x89PNG\r\n\x1a\n");
  std::cout << "status page screenshot: " << png << std::endl;
  RecordProperty("screenshot", png);
}

TEST_F(ObservabilityTest, Metrics_OverHttps_PrometheusTextFormat) {
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=3", "--exit_when_done=false", "--http_address=127.0.0.1:0"},
      &port);
  const int http = WaitForHttpPort();
  ASSERT_GT(http, 0) << coordinator->Log();
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_TRUE(WaitForRounds(3, absl::Seconds(120))) << coordinator->Log();
  const std::string base = absl::StrCat("https://127.0.0.1:", http);
  HttpReply r;
  ASSERT_TRUE(WaitFor(
      [&] {
        r = HttpGet(base, "/metrics", CertDir() + "/ca.pem");
        return absl::StrContains(r.body, "\nfedge_rounds_completed_total 3\n");
      },
      absl::Seconds(30)))
      << r.error << r.body;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(r.body, ::testing::ContainsRegex(
                          "\nfedge_build_info\\{version=\"[^\"]+\"\\} 1\n"));
  EXPECT_THAT(r.body, HasSubstr("\nfedge_round_duration_seconds_count 3\n"));
  EXPECT_THAT(
      r.body,
      HasSubstr("fedge_round_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
  ExpectTextFormat(r.body);
  // HTTPS only: a plain-HTTP request gets no page.
  EXPECT_NE(HttpGet(absl::StrCat("http://127.0.0.1:", http), "/metrics").status,
            200);
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(coordinator->Wait(absl::Seconds(30)), 0) << coordinator->Log();
}

// An agent's own metrics (--metrics_address): plain HTTP without a
// certificate of its own; training time, bytes, last round, model version,
// and the version the coordinator's build_info reports.
TEST_F(ObservabilityTest, AgentMetrics_TrainingBytesRoundAndVersion) {
  int port;
  auto coordinator =
      StartCoordinator({"--rounds=2", "--http_address=127.0.0.1:0"}, &port);
  const int coordinator_http = WaitForHttpPort();
  ASSERT_GT(coordinator_http, 0) << coordinator->Log();
  const std::string build_info = "\nfedge_build_info\\{version=\"([^\"]+)\"\\}";
  const std::string version =
      Capture(HttpGet(absl::StrCat("https://127.0.0.1:", coordinator_http),
                      "/metrics", CertDir() + "/ca.pem")
                  .body,
              build_info);
  EXPECT_FALSE(version.empty()) << coordinator->Log();
  std::vector<std::unique_ptr<Process>> agents;
  agents.push_back(StartAgent(
      1, port,
      {"--metrics_address=127.0.0.1:0", "--exit_when_finished=false"}));
  for (int i = 2; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  const int http = WaitForHttpPort(dir_ + "/agent-1", "metrics_port");
  ASSERT_GT(http, 0) << agents[0]->Log();
  const std::string base = absl::StrCat("http://127.0.0.1:", http);
  HttpReply r;
  ASSERT_TRUE(WaitFor(
      [&] {
        r = HttpGet(base, "/metrics");
        // Round 2's update accepted (it is counted after its training).
        return absl::StrContains(
            r.body, "\nfedge_device_updates_total{result=\"accepted\"} 2\n");
      },
      absl::Seconds(120)))
      << r.error << r.body << agents[0]->Log();
  EXPECT_EQ(r.status, 200);
  ExpectTextFormat(r.body);
  EXPECT_THAT(r.body, HasSubstr("\nfedge_device_rounds_trained_total 2\n"));
  EXPECT_THAT(r.body, HasSubstr("\nfedge_device_last_round 2\n"));
  EXPECT_EQ(Capture(r.body, build_info), version);
  // Round 2 trained version 1; version 2 may be fetched already.
  EXPECT_THAT(r.body,
              ::testing::ContainsRegex("\nfedge_device_model_version [12]\n"));
  EXPECT_THAT(r.body, ::testing::ContainsRegex(
                          "\nfedge_device_train_seconds_total 0\\.[0-9]*[1-9]"
                          "|\nfedge_device_train_seconds_total [1-9]"));
  double sent = 0;
  ASSERT_TRUE(absl::SimpleAtod(
      Capture(r.body, "\nfedge_device_bytes_sent_total ([0-9.e+]+)\n"), &sent));
  EXPECT_GT(sent, 2 * 199210 * 4) << r.body;  // Two fp32 2NN updates.
  ASSERT_EQ(coordinator->Wait(absl::Seconds(60)), 0) << coordinator->Log();
  agents[0]->Signal(SIGTERM);
  EXPECT_EQ(agents[0]->Wait(absl::Seconds(30)), 0) << agents[0]->Log();
}

// Under mutual TLS an agent serves /metrics over HTTPS with its
// certificate from deploy/make-certs.sh, which verifies against the CA at
// 127.0.0.1 (curl on the device) and as agent-1 (Prometheus elsewhere,
// tls_config server_name: agent-1), not as another agent.
TEST_F(ObservabilityTest, AgentMetrics_MutualTls_HttpsVerifiedAgainstTheCa) {
  const std::string certs = CertDir();
  const std::string ca = certs + "/ca.pem";
  int port;
  auto coordinator =
      StartCoordinator({"--rounds=1000", "--tls.require_client_cert=true",
                        "--tls.ca_path=" + ca},
                       &port);
  auto agent = StartAgent(1, port,
                          {"--tls.cert_path=" + certs + "/agent-1.pem",
                           "--tls.key_path=" + certs + "/agent-1.key",
                           "--metrics_address=127.0.0.1:0"});
  const int http = WaitForHttpPort(dir_ + "/agent-1", "metrics_port");
  ASSERT_GT(http, 0) << agent->Log();
  HttpReply r;
  EXPECT_TRUE(WaitFor(
      [&] {
        r = HttpGet(absl::StrCat("https://127.0.0.1:", http), "/metrics", ca);
        return absl::StrContains(r.body, "\nfedge_device_joins_total 1\n");
      },
      absl::Seconds(60)))
      << r.error << r.body << agent->Log();
  EXPECT_EQ(r.status, 200);
  auto get_as = [&](const std::string& name) {
    httplib::Client client(absl::StrCat("https://", name, ":", http));
    client.set_hostname_addr_map({{name, "127.0.0.1"}});
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    client.set_ca_cert_path(ca.c_str());
    client.enable_server_certificate_verification(true);
    httplib::Result result = client.Get("/metrics");
    return result ? result->status : 0;
  };
  EXPECT_EQ(get_as("agent-1"), 200);
  EXPECT_EQ(get_as("agent-2"), 0);  // The name is checked.
  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(absl::Seconds(30)), 0) << agent->Log();
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(coordinator->Wait(absl::Seconds(30)), 0) << coordinator->Log();
}

TEST_F(ObservabilityTest, InsecureCoordinator_ServesStatusPageOverPlainHttp) {
  int port;
  auto coordinator = StartCoordinator(
      {"--insecure", "--rounds=1", "--http_address=127.0.0.1:0"}, &port);
  const int http = WaitForHttpPort();
  ASSERT_GT(http, 0) << coordinator->Log();
  const std::string base = absl::StrCat("http://127.0.0.1:", http);
  HttpReply page = HttpGet(base, "/");
  EXPECT_EQ(page.status, 200) << page.error;
  EXPECT_THAT(page.content_type, HasSubstr("text/html"));
  EXPECT_THAT(page.body, HasSubstr("<title>fedge status</title>"));
  HttpReply status = HttpGet(base, "/api/status");
  EXPECT_EQ(status.status, 200) << status.error;
  EXPECT_THAT(status.body, HasSubstr("\"federation\":{"));
  EXPECT_EQ(HttpGet(base, "/metrics").status, 200);
  EXPECT_EQ(HttpGet(absl::StrCat("https://127.0.0.1:", http), "/",
                    CertDir() + "/ca.pem")
                .status,
            0);
  EXPECT_THAT(
      coordinator->Log(),
      HasSubstr(absl::StrCat("status page at http://127.0.0.1:", http)));
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(coordinator->Wait(absl::Seconds(30)), 0) << coordinator->Log();
}

TEST_F(ObservabilityTest, OperatorActions_ThroughTheFedgeTool) {
  int port;
  // Rounds go on with 2 agents once agent-2 is evicted.
  auto coordinator = StartCoordinator(
      {"--rounds=1000", "--strategy.min_available_agents=2"}, &port);
  const int http = WaitForHttpPort();
  tool_flags_ = {absl::StrCat("--coordinator=127.0.0.1:", port),
                 "--tls.ca_path=" + CertDir() + "/ca.pem"};
  {
    // Without mutual TLS the Operator service needs the operator token:
    // none, or a wrong one, is refused (and audited).
    auto [code, out] = Fedge({"agents"});
    EXPECT_EQ(code, 1) << out;
    EXPECT_THAT(out, HasSubstr("UNAUTHENTICATED"));
    EXPECT_THAT(out, HasSubstr("needs the operator token"));
    const std::string wrong = dir_ + "/wrong_token";
    std::ofstream(wrong) << "0123456789abcdef0123\n";
    std::vector<std::string> flags = tool_flags_;
    flags.push_back("--operator_token_path=" + wrong);
    std::tie(code, out) = Fedge({"pause"}, flags);
    EXPECT_EQ(code, 1) << out;
    EXPECT_THAT(out, HasSubstr("not this coordinator's"));
    EXPECT_THAT(ReadFileOrEmpty(dir_ + "/coordinator/audit.log"),
                HasSubstr("\"event\":\"operator_refused\""));
  }
  tool_flags_.push_back(OperatorTokenFlag());
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  ASSERT_TRUE(WaitForRounds(2, absl::Seconds(120))) << coordinator->Log();
  std::string status;
  auto status_shows = [&](const std::function<bool(const std::string&)>& ok) {
    return WaitFor(
        [&] {
          status = Fedge({"status"}).second;
          return ok(status);
        },
        absl::Seconds(60));
  };

  // pause: the round in progress finishes, then none starts.
  auto [code, out] = Fedge({"pause"});
  ASSERT_EQ(code, 0) << out;
  ASSERT_TRUE(status_shows([](const std::string& s) {
    return absl::StrContains(s, "paused: true") &&
           !absl::StrContains(s, "IN_PROGRESS");
  })) << status;
  const int64_t paused_at = Field(status, "current_round");
  absl::SleepFor(absl::Seconds(3));  // Several rounds' time.
  status = Fedge({"status"}).second;
  EXPECT_EQ(Field(status, "current_round"), paused_at) << status;
  EXPECT_THAT(HttpGet(absl::StrCat("https://127.0.0.1:", http), "/metrics",
                      CertDir() + "/ca.pem")
                  .body,
              HasSubstr("\nfedge_paused 1\n"));
  // resume: rounds go on.
  std::tie(code, out) = Fedge({"resume"});
  ASSERT_EQ(code, 0) << out;
  ASSERT_TRUE(status_shows([&](const std::string& s) {
    return Field(s, "completed_rounds") >= paused_at + 2;
  })) << status;
  // (A round may start while the pause is being asked for; none after.)
  EXPECT_THAT(RoundsStartedBetween(coordinator->Log(), "operator action pause",
                                   "operator action resume"),
              ::testing::Each(::testing::Le(paused_at)));

  // set-rounds: a total below the rounds done is refused; another is taken.
  std::tie(code, out) = Fedge({"set-rounds", "1"});
  EXPECT_EQ(code, 1);
  EXPECT_THAT(out, HasSubstr("FAILED_PRECONDITION"));
  std::tie(code, out) = Fedge({"set-rounds", "500"});
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(Field(Fedge({"status"}).second, "total_rounds"), 500);

  // evict agent-2: its join is refused (the agent gives up), rounds go on
  // without it.
  std::tie(code, out) = Fedge({"evict", "agent-2"});
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(agents[1]->Wait(absl::Seconds(60)), 1) << agents[1]->Log();
  EXPECT_THAT(agents[1]->Log(), HasSubstr("evicted by an operator"));
  EXPECT_THAT(coordinator->Log(), HasSubstr("refused join from agent-2"));
  const std::regex evicted("agent_id: \"agent-2\"[^}]*state: \"evicted\"");
  EXPECT_TRUE(std::regex_search(Fedge({"agents"}).second, evicted));
  // Round done + 2 started after the eviction.
  const int64_t done = Field(Fedge({"status"}).second, "completed_rounds");
  ASSERT_TRUE(WaitForRounds(done + 2, absl::Seconds(60))) << coordinator->Log();
  EXPECT_EQ(Number(History()[done + 1].at("num_agents")), 2);

  // allow: it joins again.
  std::tie(code, out) = Fedge({"allow", "agent-2"});
  ASSERT_EQ(code, 0) << out;
  agents[1] = StartAgent(2, port);
  ASSERT_TRUE(WaitFor(
      [&] {
        return CaptureAll(agents[1]->Log(), "(joined as agent-2)").size() >= 2;
      },
      absl::Seconds(60)))
      << agents[1]->Log();
  EXPECT_FALSE(std::regex_search(Fedge({"agents"}).second, evicted));

  // export-model: a file and its spec beside it (the coordinator's model
  // spec), which `fedge inspect` and fedge export read.
  const std::string model = dir_ + "/exported.fedge";
  std::tie(code, out) = Fedge({"export-model", model});
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("written to " + model));
  EXPECT_THAT(out,
              HasSubstr("model spec written to " + dir_ + "/exported.spec"));
  std::tie(code, out) = Fedge({"inspect", model}, {});
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("fc1.weight float32[200,784]"));
  EXPECT_THAT(out, HasSubstr("model 2nn, input 1,28,28, 10 classes: 199210 "
                             "parameters"));

  EXPECT_THAT(HttpGet(absl::StrCat("https://127.0.0.1:", http), "/metrics",
                      CertDir() + "/ca.pem")
                  .body,
              HasSubstr("fedge_operator_actions_total{action=\"evict\"} 1\n"));
  // stop: the coordinator ends after the round in progress, exit 0.
  std::tie(code, out) = Fedge({"stop"});
  ASSERT_EQ(code, 0) << out;
  ASSERT_EQ(coordinator->Wait(absl::Seconds(60)), 0) << coordinator->Log();
  const std::string log = coordinator->Log();
  EXPECT_THAT(RoundsStartedBetween(log, "operator action stop by"),
              ::testing::IsEmpty());
  EXPECT_THAT(log, HasSubstr("final model"));
  for (const char* action :
       {"pause", "resume", "set_rounds", "evict", "allow", "export", "stop"}) {
    EXPECT_THAT(log, HasSubstr(absl::StrCat("operator action ", action,
                                            " by operator token (ipv4:127.0.0.1:")));
  }
  // Each action is in the audit log too.
  const std::string audit = ReadFileOrEmpty(dir_ + "/coordinator/audit.log");
  for (const char* action : {"pause", "resume", "set_rounds", "evict", "allow",
                             "export", "stop"}) {
    EXPECT_THAT(audit, HasSubstr(absl::StrCat("\"event\":\"operator\",\"action\":\"",
                                              action, "\"")));
  }
}

TEST_F(ObservabilityTest, MutualTls_OperatorCertificateAccepted_AgentRefused) {
  const std::string certs = CertDir();
  int port;
  auto coordinator =
      StartCoordinator({"--rounds=1000", "--tls.require_client_cert=true",
                        "--tls.ca_path=" + certs + "/ca.pem"},
                       &port);
  const std::vector<std::string> base = {
      absl::StrCat("--coordinator=127.0.0.1:", port),
      "--tls.ca_path=" + certs + "/ca.pem"};
  auto with_cert = [&](const std::string& name) {
    std::vector<std::string> flags = base;
    flags.push_back("--tls.cert_path=" + certs + "/" + name + ".pem");
    flags.push_back("--tls.key_path=" + certs + "/" + name + ".key");
    return flags;
  };
  for (const char* verb : {"status", "pause"}) {
    auto [code, out] = Fedge({verb}, with_cert("agent-1"));
    EXPECT_EQ(code, 1) << out;
    EXPECT_THAT(out, HasSubstr("PERMISSION_DENIED"));
    EXPECT_THAT(out, HasSubstr("needs an operator certificate"));
  }
  auto [code, out] = Fedge({"status"}, base);  // No client certificate.
  EXPECT_EQ(code, 1) << out;
  for (const char* verb : {"status", "pause", "resume"}) {
    std::tie(code, out) = Fedge({verb}, with_cert("operator-1"));
    EXPECT_EQ(code, 0) << out;
  }
  EXPECT_THAT(out, HasSubstr("resumed"));
  const std::string log = coordinator->Log();
  EXPECT_THAT(log, HasSubstr("operator action pause by operator-1 ("));
  EXPECT_THAT(log, HasSubstr("operator action resume by operator-1 ("));
  EXPECT_THAT(log, Not(HasSubstr("by agent-1")));
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(coordinator->Wait(absl::Seconds(30)), 0) << log;
}

}  // namespace
}  // namespace fedge::testing
