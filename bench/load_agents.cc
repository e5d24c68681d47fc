// load_agents: many lightweight fedge agents in one process, each with its
// own connection, to load-test fedge-coordinator (see bench/load_bench.sh,
// which runs several of these processes side by side and merges them).
//
//   load_agents --target 127.0.0.1:PORT --agents 2500 --first_index 0
//       --threads 32 (--insecure | --ca ca.pem) --train_ms 50
//       --poll_interval_ms 250 --out rounds.csv [--results_out FILE]
//   load_agents --merge FILE,FILE,... --out rounds.csv
//
// Agents are state machines multiplexed over a few threads, one blocking call
// at a time: Join; a no_wait Poll (heartbeat, latency recorded) every
// poll_interval_ms; on a task FetchModel (SHA-256 checked), train_ms of
// simulated training (without blocking the thread), SubmitUpdate with a fresh
// upload id (reused by retries); stop on "finished" or after give_up_ms
// without reaching the coordinator. Agent i is "load-<first_index + i>", so
// processes with disjoint index ranges join one federation.
//
// Writes per-round client counts and timings (--out CSV) and a
// "load_agents: key=value ..." summary line on stdout; with --results_out
// also everything measured (counters, per-round counts with absolute times,
// every latency sample), which --merge reads back from several processes to
// write the CSV and summary of the whole run, percentiles over all samples.
// Raises its RLIMIT_NOFILE soft limit to the hard limit when one descriptor
// per agent needs it. Exit status 0 when every agent saw "finished", else 1
// (2: bad flags, descriptor limit or unreadable results).
//
// One file on purpose: a self-contained load tool (run, results file, merge)
// whose formats change together.
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/checksum.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/model_codec.h"
#include "common/net/credentials.h"
#include "common/net/grpc_status.h"
#include "common/status_macros.h"
#include "fedge/v1/federation.grpc.pb.h"

ABSL_FLAG(std::string, target, "", "Coordinator host:port.");
ABSL_FLAG(int, agents, 500, "Agents, each with its own connection.");
ABSL_FLAG(int, first_index, 0,
          "Index of the first agent (agent ids are load-<index>).");
ABSL_FLAG(int, threads, 32, "Threads the agents are multiplexed over.");
ABSL_FLAG(std::string, ca, "", "CA of the coordinator's certificate (TLS).");
ABSL_FLAG(bool, insecure, false, "Plain-text connections.");
ABSL_FLAG(int64_t, train_ms, 50, "Simulated training time per task (ms).");
ABSL_FLAG(int64_t, poll_interval_ms, 250, "Time between polls (ms).");
ABSL_FLAG(std::string, out, "", "Per-round CSV output (empty: none).");
ABSL_FLAG(std::string, results_out, "",
          "Everything measured, for --merge (empty: none).");
ABSL_FLAG(std::vector<std::string>, merge, {},
          "Merge mode: the --results_out files of the processes of one run "
          "(comma-separated); writes --out and the summary of the whole run.");
ABSL_FLAG(int64_t, give_up_ms, 15000,
          "An agent stops after this long without reaching the coordinator.");
ABSL_FLAG(int64_t, max_runtime_s, 1800, "Every agent stops after this long.");

namespace fedge::bench {
namespace {

constexpr int64_t kNumExamples = 10;
constexpr int kSubmitAttempts = 3;
constexpr float kDeltaValue = 1e-4f;
constexpr absl::Duration kCallTimeout = absl::Seconds(30);

struct Options {
  std::string target, out, results_out;
  int agents = 0, first_index = 0, threads = 0;
  v1::TlsConfig tls;
  absl::Duration train, poll_interval, give_up, max_runtime;
};

// One round as the clients saw it.
struct RoundCounts {
  int64_t acked = 0;         // Uploads answered OK: counted exactly once.
  int64_t duplicate = 0;     // OK answers saying "already counted".
  int64_t aborted = 0;       // ABORTED: the round closed first.
  int64_t other_errors = 0;  // Any other final error of an upload.
  int64_t fetch_errors = 0;  // Failed or corrupt model downloads.
  // When the first agent saw the task, the last one had its model, and the
  // last upload was answered.
  absl::Time first_task = absl::InfiniteFuture();
  absl::Time last_fetched = absl::InfinitePast();
  absl::Time last_answer = absl::InfinitePast();
};

enum Counter { kFinished, kGaveUp, kTimedOut, kRejoins, kJoinErrs, kPollErrs };
constexpr int kNumCounters = kPollErrs + 1;
constexpr const char* kCounterNames[kNumCounters] = {
    "finished", "gave_up",     "timed_out",
    "rejoins",  "join_errors", "poll_errors"};
enum Call { kPoll, kFetch, kSubmit, kNumCalls };
constexpr const char* kCallNames[kNumCalls] = {"poll", "fetch", "submit"};

// Descriptors a process needs besides one socket per agent.
constexpr int kSpareDescriptors = 64;

// What the agents of one or more processes measured, taken at the end.
struct Totals {
  int agents = 0;
  absl::Duration wall;  // Of the longest-running process.
  int64_t count[kNumCounters] = {};
  std::vector<int64_t> latency_us[kNumCalls];  // Successful calls only.
  std::map<int64_t, RoundCounts> rounds;
};

// Shared by all agents. Thread-safe.
class Results {
 public:
  void Count(Counter c) {
    absl::MutexLock lock(&mu_);
    ++t_.count[c];
  }
  void Latency(Call call, absl::Duration d) {
    absl::MutexLock lock(&mu_);
    t_.latency_us[call].push_back(absl::ToInt64Microseconds(d));
  }
  // A task seen at `seen`, its model fetched (ok) or not at `fetched`.
  void AddTask(int64_t round, bool ok, absl::Time seen, absl::Time fetched) {
    absl::MutexLock lock(&mu_);
    RoundCounts& c = t_.rounds[round];
    c.first_task = std::min(c.first_task, seen);
    if (ok) c.last_fetched = std::max(c.last_fetched, fetched);
    if (!ok) ++c.fetch_errors;
  }
  void AddSubmit(int64_t round, const absl::Status& status, bool duplicate,
                 absl::Time answered) {
    absl::MutexLock lock(&mu_);
    RoundCounts& c = t_.rounds[round];
    c.last_answer = std::max(c.last_answer, answered);
    if (status.ok()) ++c.acked;
    if (duplicate) ++c.duplicate;
    c.aborted += absl::IsAborted(status) ? 1 : 0;
    c.other_errors += !status.ok() && !absl::IsAborted(status) ? 1 : 0;
  }
  Totals Take() {
    absl::MutexLock lock(&mu_);
    return std::move(t_);
  }

 private:
  absl::Mutex mu_;
  Totals t_ ABSL_GUARDED_BY(mu_);
};

// Logs the first few unexpected errors of the whole run.
void LogError(absl::string_view what, int index, const absl::Status& s) {
  static std::atomic<int> logged{0};
  if (logged.fetch_add(1) < 20) {
    FEDGE_LOG(WARNING) << "agent load-" << index << " " << what << ": " << s;
  }
}

void SetDeadline(grpc::ClientContext& ctx, absl::Duration timeout) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// A delta shaped like `model` with every float value `v`.
ModelState Filled(const ModelState& model, float v) {
  ModelState d = model.Clone();
  for (size_t i = 0; i < d.size(); ++i) {
    if (d.tensor(i).dtype() != DType::kFloat32) continue;
    for (float& x : d.mutable_tensor(i).mutable_floats()) x = v;
  }
  return d;
}

// One simulated agent. Not thread-safe: one worker thread drives it.
class Agent {
 public:
  Agent(int index, const Options& options,
        const std::shared_ptr<grpc::ChannelCredentials>& credentials,
        Results* results)
      : index_(index), options_(options), results_(results) {
    grpc::ChannelArguments args = MakeChannelArguments(options.tls, 20000);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("fedge.load_agent_index", index);  // A distinct channel key.
    stub_ = v1::Federation::NewStub(
        grpc::CreateCustomChannel(options.target, credentials, args));
  }

  bool done() const { return phase_ == Phase::kDone; }
  absl::Time due() const { return due_; }

  // Takes the agent's next step (blocking calls) and sets due().
  void Step() {
    if (phase_ == Phase::kJoin) return Join();
    if (phase_ == Phase::kPoll) return Poll();
    if (phase_ == Phase::kTraining) return Submit();
  }

 private:
  // kJoin -> kPoll (joined); kPoll -> kTraining (task and model fetched),
  // kJoin (session lost) or kDone (finished, gave up); kTraining -> kPoll.
  enum class Phase { kJoin, kPoll, kTraining, kDone };

  void Join() {
    v1::JoinRequest req;
    req.set_agent_id(absl::StrCat("load-", index_));
    v1::JoinResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(ctx, kCallTimeout);
    absl::Status s = FromGrpcStatus(stub_->Join(&ctx, req, &resp));
    const absl::Time end = absl::Now();
    if (!s.ok()) {
      results_->Count(kJoinErrs);
      LogError("join", index_, s);
      return GiveUpOrRetry(end, options_.poll_interval);
    }
    token_ = resp.session_token();
    last_contact_ = end;
    phase_ = Phase::kPoll;
    // Spread the agents' polls over one interval.
    due_ = end + options_.poll_interval * ((index_ * 37) % 100) / 100;
  }

  void Poll() {
    v1::PollRequest req;
    req.set_session_token(token_);
    req.set_cached_model_version(-1);
    req.set_no_wait(true);
    v1::PollResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(ctx, kCallTimeout);
    const absl::Time start = absl::Now();
    absl::Status s = FromGrpcStatus(stub_->Poll(&ctx, req, &resp));
    const absl::Time end = absl::Now();
    if (absl::IsUnauthenticated(s)) {  // Dropped: join again.
      results_->Count(kRejoins);
      LogError("poll", index_, s);
      phase_ = Phase::kJoin;
      due_ = end;
      return;
    }
    if (!s.ok()) {
      results_->Count(kPollErrs);
      LogError("poll", index_, s);
      return GiveUpOrRetry(end, options_.poll_interval);
    }
    results_->Latency(kPoll, end - start);
    last_contact_ = end;
    due_ = end + options_.poll_interval;
    if (resp.finished()) {
      results_->Count(kFinished);
      phase_ = Phase::kDone;
    } else if (resp.has_train() && resp.train().round() != last_round_) {
      StartTraining(resp.train(), end);
    }
  }

  void StartTraining(const v1::TrainTask& task, absl::Time seen) {
    const absl::Time start = absl::Now();
    absl::StatusOr<ModelState> model = Fetch(task);
    const absl::Time end = absl::Now();
    results_->AddTask(task.round(), model.ok(), seen, end);
    if (!model.ok()) {
      LogError("fetch", index_, model.status());
      return;  // The next poll offers the task again.
    }
    results_->Latency(kFetch, end - start);
    last_contact_ = end;
    delta_ = EncodeModel(Filled(*model, kDeltaValue));
    task_ = task;
    phase_ = Phase::kTraining;
    due_ = end + options_.train;
  }

  absl::StatusOr<ModelState> Fetch(const v1::TrainTask& task) {
    v1::FetchModelRequest req;
    req.set_session_token(token_);
    req.set_version(task.model_version());
    grpc::ClientContext ctx;
    SetDeadline(ctx, kCallTimeout);
    auto reader = stub_->FetchModel(&ctx, req);
    v1::ModelChunk chunk;
    ModelDecoder decoder;
    decoder.SetExpectedSize(task.model_size_bytes());
    Sha256 hash;
    int64_t received = 0;
    absl::Status fed;
    while (reader->Read(&chunk)) {
      received += static_cast<int64_t>(chunk.data().size());
      hash.Update(chunk.data());
      if (fed.ok()) fed = decoder.Feed(chunk.data());
    }
    RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
    RETURN_IF_ERROR(fed);
    if (received != task.model_size_bytes() ||
        ToHex(hash.Finish()) != task.model_sha256()) {
      return absl::DataLossError("model differs from the task's size or hash");
    }
    return decoder.Finish();
  }

  void Submit() {
    const absl::Time start = absl::Now();
    v1::UpdateMetadata m;
    m.set_session_token(token_);
    m.set_round(task_.round());
    m.set_base_version(task_.model_version());
    m.set_upload_id(
        absl::StrCat("load-", index_, "-r", task_.round(), "-", ++uploads_));
    m.set_num_examples(kNumExamples);
    m.mutable_metrics()->set_train_seconds(
        absl::ToDoubleSeconds(options_.train));
    m.set_total_size_bytes(static_cast<int64_t>(delta_.size()));
    m.set_xxh3_128(ToHex(Xxh3_128Of(delta_)));
    absl::Status s;
    bool duplicate = false;
    for (int attempt = 1; attempt <= kSubmitAttempts; ++attempt) {
      s = SubmitOnce(m, &duplicate);
      if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) break;
      if (attempt < kSubmitAttempts) absl::SleepFor(absl::Milliseconds(200));
    }
    const absl::Time end = absl::Now();
    if (!s.ok() && !absl::IsAborted(s)) LogError("submit", index_, s);
    if (s.ok()) last_contact_ = end;
    results_->Latency(kSubmit, end - start);
    results_->AddSubmit(task_.round(), s, duplicate, end);
    last_round_ = task_.round();  // Never train a round twice.
    delta_.clear();
    phase_ = Phase::kPoll;
    due_ = end + options_.poll_interval;
  }

  absl::Status SubmitOnce(const v1::UpdateMetadata& m, bool* duplicate) {
    v1::SubmitUpdateResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(ctx, kCallTimeout);
    auto writer = stub_->SubmitUpdate(&ctx, &resp);
    v1::UpdateChunk chunk;
    *chunk.mutable_metadata() = m;
    bool open = writer->Write(chunk);
    for (size_t at = 0; open && at < delta_.size(); at += 1 << 20) {
      chunk.set_data(delta_.substr(at, 1 << 20));
      open = writer->Write(chunk);
    }
    writer->WritesDone();
    absl::Status s = FromGrpcStatus(writer->Finish());
    *duplicate = s.ok() && resp.duplicate();
    return s;
  }

  // After a failed call: stop once the coordinator has been unreachable for
  // give_up, else try again after `retry`.
  void GiveUpOrRetry(absl::Time now, absl::Duration retry) {
    if (now - last_contact_ > options_.give_up) {
      results_->Count(kGaveUp);
      phase_ = Phase::kDone;
      return;
    }
    due_ = now + retry;
  }

  const int index_;
  const Options& options_;
  Results* const results_;
  std::unique_ptr<v1::Federation::Stub> stub_;
  Phase phase_ = Phase::kJoin;
  absl::Time due_ = absl::InfinitePast();
  absl::Time last_contact_ = absl::Now();
  std::string token_;
  v1::TrainTask task_;      // The task being trained (kTraining).
  std::string delta_;       // Its encoded update.
  int64_t last_round_ = 0;  // Last round an update was submitted for.
  int uploads_ = 0;
};

// Runs `agents` until all are done or `stop_at`, always stepping the agent
// that is due first.
void RunWorker(std::vector<Agent*> agents, absl::Time stop_at,
               Results* results) {
  while (true) {
    Agent* next = nullptr;
    for (Agent* a : agents) {
      if (!a->done() && (next == nullptr || a->due() < next->due())) next = a;
    }
    if (next == nullptr) return;
    const absl::Time now = absl::Now();
    if (now >= stop_at) break;
    if (next->due() > now) {
      absl::SleepFor(std::min(next->due(), stop_at) - now);
      continue;
    }
    next->Step();
  }
  for (Agent* a : agents) {
    if (!a->done()) results->Count(kTimedOut);
  }
}

// The `p` quantile (0..1) of `v` in milliseconds (sorts v); 0 when empty.
double QuantileMs(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * v.size()));
  return v[i] / 1000.0;
}

// Folds `from` (the same round seen by other agents) into `into`.
void MergeRound(const RoundCounts& from, RoundCounts& into) {
  into.acked += from.acked;
  into.duplicate += from.duplicate;
  into.aborted += from.aborted;
  into.other_errors += from.other_errors;
  into.fetch_errors += from.fetch_errors;
  into.first_task = std::min(into.first_task, from.first_task);
  into.last_fetched = std::max(into.last_fetched, from.last_fetched);
  into.last_answer = std::max(into.last_answer, from.last_answer);
}

// Results files (--results_out, read back by --merge): one record per line,
// fields separated by single spaces:
//   fedge-load-results 1
//   agents <n>
//   wall_us <microseconds>
//   count <counter name> <n>
//   round <round> <acked> <duplicate> <aborted> <other_errors>
//         <fetch_errors> <first_task> <last_fetched> <last_answer>
//   latency <call name> <microseconds>
// Round times are Unix microseconds, "-" when the round had no such event.
constexpr char kResultsMagic[] = "fedge-load-results 1";

std::string TimeField(absl::Time t) {
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) return "-";
  return absl::StrCat(absl::ToUnixMicros(t));
}

// Parses a TimeField into *t; "-" is `never`.
bool ParseTimeField(absl::string_view field, absl::Time never, absl::Time* t) {
  int64_t us = 0;
  if (field == "-") {
    *t = never;
  } else if (absl::SimpleAtoi(field, &us)) {
    *t = absl::FromUnixMicros(us);
  } else {
    return false;
  }
  return true;
}

absl::Status WriteResults(const std::string& path, const Totals& t) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return absl::UnavailableError("cannot write " + path);
  absl::FPrintF(f, "%s\nagents %d\nwall_us %d\n", kResultsMagic, t.agents,
                absl::ToInt64Microseconds(t.wall));
  for (int c = 0; c < kNumCounters; ++c) {
    absl::FPrintF(f, "count %s %d\n", kCounterNames[c], t.count[c]);
  }
  for (const auto& [round, c] : t.rounds) {
    absl::FPrintF(f, "round %d %d %d %d %d %d %s %s %s\n", round, c.acked,
                  c.duplicate, c.aborted, c.other_errors, c.fetch_errors,
                  TimeField(c.first_task), TimeField(c.last_fetched),
                  TimeField(c.last_answer));
  }
  for (int call = 0; call < kNumCalls; ++call) {
    for (int64_t us : t.latency_us[call]) {
      absl::FPrintF(f, "latency %s %d\n", kCallNames[call], us);
    }
  }
  return std::fclose(f) == 0 ? absl::OkStatus()
                             : absl::UnavailableError("cannot write " + path);
}

// Index of `name` in names[0..n), or -1.
int IndexOf(absl::string_view name, const char* const* names, int n) {
  for (int i = 0; i < n; ++i) {
    if (name == names[i]) return i;
  }
  return -1;
}

// Adds a "round" record (fields f[1..9]) to `t`; false when malformed.
bool AddRoundRecord(const std::vector<absl::string_view>& f, Totals& t) {
  int64_t n[6];
  for (int i = 0; i < 6; ++i) {
    if (!absl::SimpleAtoi(f[1 + i], &n[i])) return false;
  }
  RoundCounts c;
  c.acked = n[1];
  c.duplicate = n[2];
  c.aborted = n[3];
  c.other_errors = n[4];
  c.fetch_errors = n[5];
  if (!ParseTimeField(f[7], absl::InfiniteFuture(), &c.first_task) ||
      !ParseTimeField(f[8], absl::InfinitePast(), &c.last_fetched) ||
      !ParseTimeField(f[9], absl::InfinitePast(), &c.last_answer)) {
    return false;
  }
  MergeRound(c, t.rounds[n[0]]);
  return true;
}

// Adds one record (a line split at spaces) to `t`; false when malformed.
bool AddRecord(const std::vector<absl::string_view>& f, Totals& t) {
  int64_t v = 0;
  const absl::string_view kind = f[0];
  if (kind == "round") return f.size() == 10 && AddRoundRecord(f, t);
  if (kind == "agents" && f.size() == 2 && absl::SimpleAtoi(f[1], &v)) {
    t.agents += static_cast<int>(v);
    return true;
  }
  if (kind == "wall_us" && f.size() == 2 && absl::SimpleAtoi(f[1], &v)) {
    t.wall = std::max(t.wall, absl::Microseconds(v));
    return true;
  }
  if (f.size() != 3 || !absl::SimpleAtoi(f[2], &v)) return false;
  if (kind == "count") {
    const int c = IndexOf(f[1], kCounterNames, kNumCounters);
    if (c >= 0) t.count[c] += v;
    return c >= 0;
  }
  const int call = IndexOf(f[1], kCallNames, kNumCalls);
  if (kind != "latency" || call < 0) return false;
  t.latency_us[call].push_back(v);
  return true;
}

// Adds the results file at `path` to `t`. NOT_FOUND when it cannot be read,
// DATA_LOSS naming the line when it is not a complete results file.
absl::Status ReadResults(const std::string& path, Totals& t) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string line;
  if (!std::getline(in, line) || line != kResultsMagic) {
    return absl::DataLossError(path + " is not a load_agents results file");
  }
  for (int n = 2; std::getline(in, line); ++n) {
    if (!AddRecord(absl::StrSplit(line, ' '), t)) {
      return absl::DataLossError(
          absl::StrCat(path, ":", n, ": bad record '", line, "'"));
    }
  }
  if (in.bad()) return absl::DataLossError("cannot read " + path);
  return absl::OkStatus();
}

absl::Status WriteRounds(const std::string& path,
                         const std::map<int64_t, RoundCounts>& rounds) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return absl::UnavailableError("cannot write " + path);
  absl::FPrintF(f,
                "round,acked,duplicate,aborted,other_errors,fetch_errors,"
                "first_task_unix_ms,fetch_spread_ms,task_to_last_answer_ms\n");
  // Times after the first task; 0 when the round had no such event.
  auto after = [](absl::Time first, absl::Time t) {
    return t < first ? 0.0 : absl::ToDoubleMilliseconds(t - first);
  };
  for (const auto& [round, c] : rounds) {
    absl::FPrintF(f, "%d,%d,%d,%d,%d,%d,%.3f,%.3f,%.3f\n", round, c.acked,
                  c.duplicate, c.aborted, c.other_errors, c.fetch_errors,
                  absl::ToUnixMicros(c.first_task) / 1000.0,
                  after(c.first_task, c.last_fetched),
                  after(c.first_task, c.last_answer));
  }
  return std::fclose(f) == 0 ? absl::OkStatus()
                             : absl::UnavailableError("cannot write " + path);
}

// The summary line (sorts the latency samples).
std::string Summary(Totals& t) {
  const int64_t* n = t.count;
  std::vector<int64_t>& polls = t.latency_us[kPoll];
  const double wall_s = absl::ToDoubleSeconds(t.wall);
  std::string line = absl::StrFormat(
      "load_agents: agents=%d finished=%d gave_up=%d timed_out=%d rounds=%d "
      "rejoins=%d join_errors=%d poll_errors=%d polls=%d polls_per_s=%.0f",
      t.agents, n[kFinished], n[kGaveUp], n[kTimedOut], t.rounds.size(),
      n[kRejoins], n[kJoinErrs], n[kPollErrs], polls.size(),
      wall_s > 0 ? polls.size() / wall_s : 0.0);
  for (int c = 0; c < kNumCalls; ++c) {
    absl::StrAppendFormat(&line, " %s_p50_ms=%.3f %s_p99_ms=%.3f",
                          kCallNames[c], QuantileMs(t.latency_us[c], 0.5),
                          kCallNames[c], QuantileMs(t.latency_us[c], 0.99));
  }
  absl::StrAppendFormat(&line, " poll_max_ms=%.3f wall_s=%.1f",
                        QuantileMs(polls, 1.0), wall_s);
  return line;
}

// Writes the CSV (when `out` is set) and prints the summary of `totals`;
// the exit status: 0 when every agent saw "finished".
int Report(const std::string& out, Totals& totals) {
  if (!out.empty()) {
    if (absl::Status s = WriteRounds(out, totals.rounds); !s.ok()) {
      absl::FPrintF(stderr, "load_agents: %s\n", s.message());
      return 1;
    }
  }
  absl::PrintF("%s\n", Summary(totals));
  return totals.count[kFinished] == totals.agents ? 0 : 1;
}

// Makes one descriptor per agent (plus spares) available.
absl::Status RaiseDescriptorLimit(int agents) {
  const int64_t need = int64_t{agents} + kSpareDescriptors;
  return RaiseOpenFileLimit(
             need, absl::StrCat(agents, " agents"),
             absl::StrCat("raise the hard limit (ulimit -Hn ", need,
                          ", as root) or spread the agents over more "
                          "processes (load_bench.sh --procs)"))
      .status();
}

int Run(const Options& options) {
  if (absl::Status s = RaiseDescriptorLimit(options.agents); !s.ok()) {
    absl::FPrintF(stderr, "load_agents: %s\n", s.message());
    return 2;
  }
  auto credentials = MakeChannelCredentials(options.tls);
  if (!credentials.ok()) {
    absl::FPrintF(stderr, "load_agents: %s\n", credentials.status().message());
    return 2;
  }
  Results results;
  std::vector<std::unique_ptr<Agent>> agents;
  for (int i = 0; i < options.agents; ++i) {
    agents.push_back(std::make_unique<Agent>(options.first_index + i, options,
                                             *credentials, &results));
  }
  std::vector<std::thread> workers;
  const absl::Time start = absl::Now();
  for (int t = 0; t < options.threads; ++t) {
    std::vector<Agent*> mine;
    for (int i = t; i < options.agents; i += options.threads) {
      mine.push_back(agents[i].get());
    }
    workers.emplace_back(RunWorker, std::move(mine),
                         start + options.max_runtime, &results);
  }
  for (std::thread& w : workers) w.join();
  Totals totals = results.Take();
  totals.agents = options.agents;
  totals.wall = absl::Now() - start;
  if (!options.results_out.empty()) {
    if (absl::Status s = WriteResults(options.results_out, totals); !s.ok()) {
      absl::FPrintF(stderr, "load_agents: %s\n", s.message());
      return 1;
    }
  }
  return Report(options.out, totals);
}

// --merge: the run whose processes wrote `files`.
int Merge(const std::vector<std::string>& files, const std::string& out) {
  Totals totals;
  for (const std::string& file : files) {
    if (absl::Status s = ReadResults(file, totals); !s.ok()) {
      absl::FPrintF(stderr, "load_agents: %s\n", s.message());
      return 2;
    }
  }
  return Report(out, totals);
}

absl::StatusOr<Options> OptionsFromFlags() {
  Options o;
  o.target = absl::GetFlag(FLAGS_target);
  o.agents = absl::GetFlag(FLAGS_agents);
  o.first_index = absl::GetFlag(FLAGS_first_index);
  o.threads = std::min(absl::GetFlag(FLAGS_threads), o.agents);
  o.train = absl::Milliseconds(absl::GetFlag(FLAGS_train_ms));
  o.poll_interval = absl::Milliseconds(absl::GetFlag(FLAGS_poll_interval_ms));
  o.give_up = absl::Milliseconds(absl::GetFlag(FLAGS_give_up_ms));
  o.max_runtime = absl::Seconds(absl::GetFlag(FLAGS_max_runtime_s));
  o.out = absl::GetFlag(FLAGS_out);
  o.results_out = absl::GetFlag(FLAGS_results_out);
  o.tls.set_insecure(absl::GetFlag(FLAGS_insecure));
  o.tls.set_ca_path(absl::GetFlag(FLAGS_ca));
  if (o.target.empty() || o.agents < 1 || o.first_index < 0 || o.threads < 1 ||
      o.train < absl::ZeroDuration() ||
      o.poll_interval <= absl::ZeroDuration() ||
      (!o.tls.insecure() && o.tls.ca_path().empty())) {
    return absl::InvalidArgumentError(
        "need --target, --agents >= 1, --first_index >= 0, --threads >= 1, "
        "--train_ms >= 0, --poll_interval_ms > 0 and --insecure or --ca "
        "CA_PEM (or --merge FILES)");
  }
  return o;
}

}  // namespace
}  // namespace fedge::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::vector<std::string> merge = absl::GetFlag(FLAGS_merge);
  if (!merge.empty()) {
    return fedge::bench::Merge(merge, absl::GetFlag(FLAGS_out));
  }
  auto options = fedge::bench::OptionsFromFlags();
  if (!options.ok()) {
    absl::FPrintF(stderr, "load_agents: %s\n", options.status().message());
    return 2;
  }
  return fedge::bench::Run(*options);
}
