// End-to-end: differential privacy (strategy.dp, docs/privacy.md) with the
// real fedge-coordinator and fedge-agent binaries on 127.0.0.1, TLS on,
// synthetic data, bounded in time: epsilon after every round in the
// history, `fedge status`, /metrics and /api/status, and the run stops
// before the round that would exceed the budget.
#include <httplib.h>
#include <signal.h>

#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/privacy_accountant.h"
#include "gmock/gmock.h"
#include "tests/e2e/federation_fixture.h"

namespace fedge::testing {
namespace {

using ::testing::HasSubstr;

// Epsilon at delta 1e-5 after `rounds` rounds of (q, sigma).
double Epsilon(double q, double sigma, int rounds) {
  auto a = RdpAccountant::Create({});
  EXPECT_TRUE(a.ok() && (*a)->Compose(q, sigma, rounds).ok());
  return (*a)->GetEpsilon(1e-5)->epsilon;
}

// The body of GET https://127.0.0.1:<port><path> (the test CA), or "".
std::string HttpsGet(int port, const std::string& path, const std::string& ca) {
  httplib::Client client(absl::StrCat("https://127.0.0.1:", port));
  client.set_connection_timeout(5);
  client.set_read_timeout(10);
  client.set_ca_cert_path(ca.c_str());
  client.enable_server_certificate_verification(true);
  httplib::Result r = client.Get(path);
  return r && r->status == 200 ? r->body : "";
}

TEST_F(FederationTest, CentralDp_EpsilonEveryRound_StopsAtTheBudget) {
  // The test config selects all 3 agents (q = 1); with sigma 4 the budget
  // fits 3 rounds of the 10 asked for. Epsilon does not depend on the clip
  // norm; a small one keeps the noise (z S / 3 per coordinate) from
  // wrecking the model, whose agents would then fail on NaN losses.
  const double e3 = Epsilon(1, 4, 3), e4 = Epsilon(1, 4, 4);
  int port;
  auto coordinator = StartCoordinator(
      {"--rounds=10", "--exit_when_done=false", "--http_address=127.0.0.1:0",
       "--strategy.round_deadline_ms=20000", "--strategy.dp.mode=central",
       "--strategy.dp.clip_norm=0.001", "--strategy.dp.noise_multiplier=4",
       absl::StrCat("--strategy.dp.max_epsilon=", (e3 + e4) / 2)},
      &port);
  const int http = WaitForHttpPort();
  ASSERT_GT(http, 0) << coordinator->Log();
  std::vector<std::unique_ptr<Process>> agents;
  for (int i = 1; i <= 3; ++i) agents.push_back(StartAgent(i, port));
  // The agents are told the federation finished after round 3.
  for (auto& a : agents) {
    EXPECT_EQ(a->Wait(absl::Seconds(180)), 0) << a->Log();
  }
  auto rows = History();
  ASSERT_EQ(rows.size(), 3u) << coordinator->Log();
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(Number(rows[i], "epsilon"), Epsilon(1, 4, i + 1), 1e-5) << i;
    EXPECT_EQ(Number(rows[i], "delta"), 1e-5);
  }
  EXPECT_THAT(coordinator->Log(),
              HasSubstr("round 4 not started, the federation ends: privacy "
                        "budget reached: after 3 rounds"));
  // The operator's views.
  const auto [code, status] = RunFedge(port, {"status"});
  EXPECT_EQ(code, 0) << status;
  EXPECT_THAT(status, HasSubstr("state: \"DONE\""));
  EXPECT_THAT(status, HasSubstr("privacy_mode: \"central\""));
  EXPECT_THAT(status, HasSubstr("privacy_budget_exhausted: true"));
  EXPECT_THAT(status, HasSubstr("privacy_epsilon: "));
  const std::string ca = CertDir() + "/ca.pem";
  const std::string metrics = HttpsGet(http, "/metrics", ca);
  const size_t at = metrics.find("\nfedge_privacy_epsilon ");
  ASSERT_NE(at, std::string::npos) << metrics;
  double scraped = -1;
  const size_t value_at = at + std::string("\nfedge_privacy_epsilon ").size();
  ASSERT_TRUE(absl::SimpleAtod(
      metrics.substr(value_at, metrics.find('\n', value_at) - value_at),
      &scraped));
  EXPECT_NEAR(scraped, Epsilon(1, 4, 3), 1e-4);
  EXPECT_THAT(HttpsGet(http, "/api/status", ca),
              HasSubstr("\"privacy\":{\"mode\":\"central\",\"epsilon\":"));
  coordinator->Signal(SIGTERM);
  EXPECT_EQ(coordinator->Wait(absl::Seconds(60)), 0) << coordinator->Log();
}

}  // namespace
}  // namespace fedge::testing
