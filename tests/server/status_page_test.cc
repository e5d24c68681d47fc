// The status page in a real browser: headless Chromium loads it from an
// HttpServer fed by a fake federation whose round advances with every
// /api/status request, and the test reads the resulting DOM. A screenshot
// is saved as an artifact (its path is printed).
#include "server/status_page.h"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/scratch_dir.h"

extern char** environ;

namespace fedge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kAgents = 5;
constexpr int kFinalCompletedRounds = 12;

// A federation of 5 agents that closes one more round per /api/status
// request (from round 9 up to round 12), with accuracy rising from 0.70 to
// 0.86 over the rounds.
class FakeFederation {
 public:
  FederationSnapshot Next() {
    absl::MutexLock lock(&mu_);
    const int completed = std::min(9 + requests_, kFinalCompletedRounds);
    ++requests_;
    served_rounds_.push_back(completed + 1);
    return Make(completed);
  }

  std::vector<int> served_rounds() {
    absl::MutexLock lock(&mu_);
    return served_rounds_;
  }

  static FederationSnapshot Make(int completed) {
    FederationSnapshot s;
    const int64_t start_ms = 1767225600000;  // 2026-01-01 00:00 UTC.
    s.federation = {
        "IN_PROGRESS",
        false,
        completed + 1,
        completed,
        20,
        completed,
        "9f2c4e1ab37d5c08e6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5"
        "e6f7",
        "FedAvg",
        start_ms,
        start_ms + completed * 41000 + 17000,
        std::nullopt};
    s.current_round = CurrentRoundStatus{completed + 1, 4, 2, 1, 23000, 17000};
    const char* classes[kAgents] = {"phone", "phone", "raspberry-pi", "jetson",
                                    "laptop"};
    const char* states[kAgents] = {"reported", "training", "reported", "failed",
                                   "idle"};
    for (int a = 0; a < kAgents; ++a) {
      s.agents.push_back({absl::StrCat("agent-", a + 1), classes[a], states[a],
                          300 + 1700 * a, completed - a / 2});
    }
    for (int r = 1; r <= completed; ++r) {
      const double t = (r - 1) / 11.0;
      const double wiggle = 0.006 * std::sin(r * 1.7);
      RoundStatus round;
      round.round = r;
      round.completed = true;
      round.num_agents = r % 5 == 0 ? 3 : 4;
      round.num_failed = 4 - round.num_agents;
      round.num_examples = round.num_agents * 600;
      round.train_accuracy = 0.72 + 0.16 * t + wiggle;
      round.train_loss = 0.95 - 0.5 * t - wiggle;
      round.test_accuracy = 0.70 + 0.16 * t + wiggle / 2;
      round.test_loss = 1.0 - 0.48 * t;
      if (r % 3 == 0) round.fed_eval_accuracy = 0.69 + 0.16 * t;
      round.bytes_received = round.num_agents * int64_t{796000};
      round.bytes_sent = 4 * int64_t{796000};
      round.round_seconds = 38 + 6 * std::cos(r);
      s.rounds.push_back(round);
    }
    s.refusals.push_back({start_ms + 95000, "agent-7", "join token expired"});
    s.refusals.push_back({start_ms + 260000, "agent-4",
                          "update for round 6 arrived after the deadline"});
    return s;
  }

 private:
  absl::Mutex mu_;
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int> served_rounds_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<HttpServer> ServeStatus(
    std::function<FederationSnapshot()> snapshot) {
  HttpServerOptions options;
  options.insecure = true;
  AddStatusPageRoutes(std::move(snapshot), &options.routes);
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Create(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

std::string ChromiumPath() {
  const char* env = std::getenv("FEDGE_CHROMIUM");
  return env != nullptr ? env : "/usr/bin/chromium";
}

// Runs headless Chromium on `url` with `extra` flags, stdout to
// `dir`/`name`.out and stderr to `dir`/`name`.log, in a fresh profile.
// Kills the browser's process group when it has not exited after
// `limit`. Returns stdout.
absl::StatusOr<std::string> RunChromium(
    const std::string& dir, const std::string& name, const std::string& url,
    const std::vector<std::string>& extra,
    std::chrono::seconds limit = std::chrono::seconds(90)) {
  const std::string profile = absl::StrCat(dir, "/", name, "-profile");
  fs::remove_all(profile);
  fs::create_directories(profile);
  std::vector<std::string> args = {ChromiumPath(),
                                   "--headless",
                                   "--no-sandbox",
                                   "--disable-gpu",
                                   "--disable-quic",
                                   "--no-first-run",
                                   "--disable-background-networking",
                                   "--disable-component-update",
                                   "--disable-sync",
                                   "--user-data-dir=" + profile,
                                   "--virtual-time-budget=5000"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(url);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const std::string out_path = absl::StrCat(dir, "/", name, ".out");
  const std::string log_path = absl::StrCat(dir, "/", name, ".log");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);  // Its own group, to kill it whole.
  pid_t pid;
  const int rc =
      posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", argv[0], ": ", std::strerror(rc)));
  }
  // Waits for the browser to exit without reaping it (WNOWAIT), so that its
  // process group id cannot be reused before the group is killed.
  const auto deadline = std::chrono::steady_clock::now() + limit;
  bool exited = false;
  while (!exited && std::chrono::steady_clock::now() < deadline) {
    siginfo_t info{};
    exited = waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
             info.si_pid == pid;
    if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Whatever is left of the browser's group (helpers, or all of it on
  // overrun) goes; then the browser is reaped.
  kill(-pid, SIGKILL);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  if (!exited) {
    return absl::DeadlineExceededError(absl::StrCat(
        "chromium did not finish within ", limit.count(), "s; see ", log_path));
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return absl::InternalError(absl::StrCat("chromium failed (wait status ",
                                            wstatus, "); see ", log_path));
  }
  return ReadSmallFile(out_path, 16 << 20);
}

class StatusPageBrowserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(ChromiumPath().c_str(), X_OK) != 0) {
      FAIL() << "Chromium not found at " << ChromiumPath()
             << ": apt-get install chromium (scripts/install-deps.sh "
                "installs it; FEDGE_CHROMIUM may name another binary)";
    }
    scratch_.emplace(
        fedge::testing::ScratchDir::NameForCurrentTest("fedge_status_page"));
    dir_ = scratch_->path();
  }

  std::optional<fedge::testing::ScratchDir> scratch_;
  std::string dir_;
};

// The text of the element with `id` (no nested elements), or "".
std::string TextOf(const std::string& dom, const std::string& id) {
  std::smatch m;
  const std::regex re("id=\"" + id + "\"[^>]*>([^<]*)<");
  return std::regex_search(dom, m, re) ? m[1].str() : "";
}

// The <svg id="`id`"> element.
std::string SvgOf(const std::string& dom, const std::string& id) {
  const size_t start = dom.find("<svg id=\"" + id + "\"");
  if (start == std::string::npos) return "";
  const size_t end = dom.find("</svg>", start);
  return dom.substr(start, end == std::string::npos ? end : end - start);
}

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

int UpdatesOf(const std::string& dom) {
  std::smatch m;
  const std::regex re("<body[^>]*data-updates=\"([0-9]+)\"");
  return std::regex_search(dom, m, re) ? std::stoi(m[1].str()) : 0;
}

TEST(StatusPageTest, ServedAsHtmlWithStatusJson) {
  std::unique_ptr<HttpServer> server =
      ServeStatus([] { return FakeFederation::Make(2); });
  ASSERT_NE(server, nullptr);
  httplib::Client client("127.0.0.1", server->port());
  httplib::Result page = client.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(page->body, StatusPageHtml());
  EXPECT_THAT(page->body, HasSubstr("<svg id=\"accuracy-chart\""));
  // Self-contained: no URL but the SVG namespace name, no external assets.
  EXPECT_EQ(Count(page->body, "http"),
            Count(page->body, "\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(page->body, Not(HasSubstr("<link")));
  EXPECT_THAT(page->body, Not(HasSubstr("<script src")));
  EXPECT_THAT(page->body, Not(HasSubstr("@import")));
  httplib::Result status = client.Get("/api/status");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->status, 200);
  EXPECT_EQ(status->get_header_value("Content-Type"),
            "application/json; charset=utf-8");
  EXPECT_EQ(status->body, ToJson(FakeFederation::Make(2)));
}

TEST_F(StatusPageBrowserTest, LivePage_ShowsAdvancingRoundsAgentsAndCharts) {
  FakeFederation federation;
  std::unique_ptr<HttpServer> server =
      ServeStatus([&] { return federation.Next(); });
  ASSERT_NE(server, nullptr);
  const std::string url =
      absl::StrCat("http://127.0.0.1:", server->port(), "/");

  absl::StatusOr<std::string> dom =
      RunChromium(dir_, "dom", url, {"--dump-dom"});
  ASSERT_TRUE(dom.ok()) << dom.status();

  // The page polled and re-rendered without a reload: at least two
  // snapshots, so the round it shows has advanced past the first served.
  const std::vector<int> served = federation.served_rounds();
  ASSERT_GE(served.size(), 2u);
  EXPECT_GE(UpdatesOf(*dom), 2) << *dom;
  const std::string shown = TextOf(*dom, "current-round");
  ASSERT_FALSE(shown.empty()) << *dom;
  const int round = std::stoi(shown);
  EXPECT_GT(round, served.front());
  EXPECT_NE(std::find(served.begin(), served.end(), round), served.end());
  EXPECT_EQ(TextOf(*dom, "total-rounds"), "20");
  EXPECT_EQ(TextOf(*dom, "federation-state"), "IN_PROGRESS");

  EXPECT_EQ(Count(*dom, "class=\"agent-row\""), kAgents) << *dom;
  for (int a = 1; a <= kAgents; ++a) {
    EXPECT_THAT(*dom,
                HasSubstr(absl::StrCat("data-agent-id=\"agent-", a, "\"")));
  }
  EXPECT_THAT(*dom, HasSubstr("data-reported=\"2\" data-selected=\"4\""));

  // One train and one test point per completed round of the shown snapshot.
  const std::string accuracy = SvgOf(*dom, "accuracy-chart");
  EXPECT_EQ(Count(accuracy, "<circle class=\"point\" data-series=\"train\""),
            round - 1)
      << accuracy;
  EXPECT_EQ(Count(accuracy, "<circle class=\"point\" data-series=\"test\""),
            round - 1);
  EXPECT_EQ(Count(accuracy, "<polyline"), 3);  // train, test, fed eval.
  EXPECT_GE(Count(SvgOf(*dom, "loss-chart"), "<circle"), 2 * (round - 1));
  EXPECT_EQ(Count(SvgOf(*dom, "bytes-chart"), "<rect class=\"bar\""),
            2 * (round - 1));
  EXPECT_EQ(Count(*dom, "class=\"refusal-row\""), 2);
  EXPECT_THAT(TextOf(*dom, "connection"), ::testing::StartsWith("live"));

  // A screenshot of the final state, kept as an artifact.
  const std::string png = dir_ + "/status-page.png";
  absl::StatusOr<std::string> shot = RunChromium(
      dir_, "screenshot", url,
      {"--screenshot=" + png, "--window-size=1280,900", "--hide-scrollbars"});
  ASSERT_TRUE(shot.ok()) << shot.status();
  absl::StatusOr<std::string> image = ReadSmallFile(png, 64 << 20);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->substr(0, 8), "\x89PNG\r\n\x1a\n");
  std::printf("status page screenshot: %s\n", png.c_str());
}

TEST_F(StatusPageBrowserTest, EmptyFederation_ShowsEmptyStatesAndEscapesText) {
  FederationSnapshot empty;
  empty.federation.state = "WAITING_FOR_AGENTS";
  empty.federation.total_rounds = 10;
  // A hostile agent id must appear as text, not as markup.
  empty.agents.push_back(
      {"<img src=x onerror=alert(1)>", "phone", "idle", 10, 0});
  std::unique_ptr<HttpServer> server = ServeStatus([&] { return empty; });
  ASSERT_NE(server, nullptr);
  const std::string url =
      absl::StrCat("http://127.0.0.1:", server->port(), "/");
  absl::StatusOr<std::string> dom =
      RunChromium(dir_, "dom", url, {"--dump-dom"});
  ASSERT_TRUE(dom.ok()) << dom.status();
  EXPECT_GE(UpdatesOf(*dom), 1) << *dom;
  EXPECT_EQ(TextOf(*dom, "current-round"), "0");
  EXPECT_EQ(TextOf(*dom, "federation-state"), "WAITING_FOR_AGENTS");
  EXPECT_EQ(TextOf(*dom, "round-title"), "No round in progress");
  const std::string accuracy = SvgOf(*dom, "accuracy-chart");
  EXPECT_THAT(accuracy, HasSubstr("No rounds yet"));
  EXPECT_EQ(Count(accuracy, "<circle"), 0);
  EXPECT_EQ(Count(*dom, "class=\"agent-row\""), 1);
  EXPECT_THAT(*dom, Not(HasSubstr("<img")));
  EXPECT_THAT(*dom, HasSubstr("&lt;img src=x onerror=alert(1)&gt;"));
  EXPECT_THAT(*dom, HasSubstr("<div class=\"empty\" id=\"rounds-empty\">"));

  const std::string png = dir_ + "/status-page-empty.png";
  absl::StatusOr<std::string> shot = RunChromium(
      dir_, "screenshot", url,
      {"--screenshot=" + png, "--window-size=1280,900", "--hide-scrollbars"});
  ASSERT_TRUE(shot.ok()) << shot.status();
  EXPECT_TRUE(fs::exists(png));
  std::printf("empty status page screenshot: %s\n", png.c_str());
}

}  // namespace
}  // namespace fedge
