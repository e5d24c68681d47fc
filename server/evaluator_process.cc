#include "server/evaluator_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/model_codec.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

constexpr size_t kMaxLineBytes = 64 << 10;

// Milliseconds until `deadline` for poll(), at least 0, at most ~24 days.
int PollTimeoutMs(absl::Time deadline) {
  const absl::Duration left = deadline - RealClock::Get()->Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, INT_MAX / 2));
}

}  // namespace

std::string SiblingBinary(const std::string& name) {
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return name;
  std::string path(self, n);
  return path.substr(0, path.rfind('/') + 1) + name;
}

absl::StatusOr<std::unique_ptr<EvaluatorProcess>> EvaluatorProcess::Start(
    Options options) {
  auto self = std::unique_ptr<EvaluatorProcess>(
      new EvaluatorProcess(std::move(options)));
  RETURN_IF_ERROR(self->Spawn());
  return self;
}

EvaluatorProcess::~EvaluatorProcess() {
  if (to_child_ >= 0) {
    close(to_child_);  // EOF: the child exits by itself.
    to_child_ = -1;
  }
  const pid_t pid = pid_.load();
  if (pid > 0) {
    // Give it a moment to exit cleanly, then make sure.
    for (int i = 0; i < 50 && waitpid(pid, nullptr, WNOHANG) == 0; ++i) {
      usleep(10000);
    }
    Kill();
  }
  if (from_child_ >= 0) close(from_child_);
}

absl::Status EvaluatorProcess::Spawn() {
  if (cancelled_.load()) return absl::CancelledError("evaluation cancelled");
  const std::string config_path = options_.work_dir + "/evaluator.binpb";
  RETURN_IF_ERROR(
      WriteStringAtomically(config_path, options_.config.SerializeAsString()));
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    return absl::UnavailableError("cannot create pipes for the evaluator");
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return absl::UnavailableError("cannot create pipes for the evaluator");
  }
  signal(SIGPIPE, SIG_IGN);  // A dead child shows up as a write error.
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    execl(options_.binary.c_str(), options_.binary.c_str(), config_path.c_str(),
          nullptr);
    const std::string msg = absl::StrCat("error cannot run ", options_.binary,
                                         ": ", std::strerror(errno), "\n");
    ssize_t ignored = write(1, msg.data(), msg.size());
    (void)ignored;
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    return absl::UnavailableError(
        absl::StrCat("cannot fork the evaluator: ", std::strerror(errno)));
  }
  pid_.store(pid);
  to_child_ = in[1];
  from_child_ = out[0];
  fcntl(to_child_, F_SETFL, fcntl(to_child_, F_GETFL) | O_NONBLOCK);
  fcntl(from_child_, F_SETFL, fcntl(from_child_, F_GETFL) | O_NONBLOCK);
  pending_.clear();
  if (cancelled_.load()) Kill();  // Cancel() raced with the fork.
  const absl::Time deadline = RealClock::Get()->Now() + options_.timeout;
  absl::StatusOr<std::string> line = ReadLine(deadline);
  if (!line.ok()) {
    Kill();
    return Annotate(line.status(),
                    absl::StrCat("evaluator ", options_.binary, " not ready"));
  }
  absl::string_view rest = *line;
  if (!absl::ConsumePrefix(&rest, "ready ")) {
    Kill();
    return absl::UnavailableError(
        absl::StrCat("evaluator (", options_.binary, ") failed: ", *line));
  }
  description_ = std::string(rest);
  return absl::OkStatus();
}

void EvaluatorProcess::Kill() {
  const pid_t pid = pid_.exchange(-1);
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
  to_child_ = from_child_ = -1;
}

void EvaluatorProcess::Cancel() {
  cancelled_.store(true);
  const pid_t pid = pid_.load();
  // Only signals; the Evaluate() thread reaps (it sees EOF at once).
  if (pid > 0) kill(pid, SIGKILL);
}

absl::Status EvaluatorProcess::ExchangeError(absl::string_view what,
                                             bool timed_out) const {
  if (cancelled_.load()) return absl::CancelledError("evaluation cancelled");
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat("the evaluator did not ", what, " within ",
                     absl::FormatDuration(options_.timeout),
                     " (eval_timeout_ms); killed, it restarts"));
  }
  return absl::UnavailableError(absl::StrCat(
      "the evaluator died while it should ", what, "; it restarts"));
}

absl::Status EvaluatorProcess::WriteAll(const char* data, size_t size,
                                        absl::Time deadline) {
  while (size > 0) {
    pollfd p = {to_child_, POLLOUT, 0};
    const int ready = poll(&p, 1, PollTimeoutMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) return ExchangeError("read the model", true);
    const ssize_t n = write(to_child_, data, size);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return ExchangeError("read the model", false);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> EvaluatorProcess::ReadLine(absl::Time deadline) {
  while (true) {
    const size_t newline = pending_.find('\n');
    if (newline != std::string::npos) {
      std::string line = pending_.substr(0, newline);
      pending_.erase(0, newline + 1);
      return line;
    }
    if (pending_.size() > kMaxLineBytes) {
      return absl::UnavailableError("the evaluator wrote an overlong line");
    }
    pollfd p = {from_child_, POLLIN, 0};
    const int ready = poll(&p, 1, PollTimeoutMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) return ExchangeError("answer", true);
    char buf[4096];
    const ssize_t n = read(from_child_, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return ExchangeError("answer", false);
    pending_.append(buf, static_cast<size_t>(n));
  }
}

absl::StatusOr<TrainOutput> EvaluatorProcess::Train(const ModelState&,
                                                    const TrainPlan&,
                                                    absl::Span<const int64_t>) {
  return absl::UnimplementedError("the central evaluator does not train");
}

absl::StatusOr<EvalMetrics> EvaluatorProcess::Evaluate(
    const ModelState& weights) {
  if (cancelled_.load()) return absl::CancelledError("evaluation cancelled");
  if (pid_.load() <= 0) {
    FEDGE_LOG(INFO) << "restarting the evaluator " << options_.binary;
    RETURN_IF_ERROR(Spawn());
  }
  const absl::Time deadline = RealClock::Get()->Now() + options_.timeout;
  ModelEncoder encoder(weights);
  const uint64_t size = static_cast<uint64_t>(encoder.total_bytes());
  absl::Status written =
      WriteAll(reinterpret_cast<const char*>(&size), sizeof(size), deadline);
  std::string chunk;
  while (written.ok() && encoder.Next(&chunk)) {
    written = WriteAll(chunk.data(), chunk.size(), deadline);
  }
  absl::StatusOr<std::string> line =
      written.ok() ? ReadLine(deadline) : absl::StatusOr<std::string>(written);
  if (!line.ok()) {
    Kill();
    return line.status();
  }
  std::vector<absl::string_view> parts = absl::StrSplit(*line, ' ');
  EvalMetrics m;
  if (parts.size() == 4 && parts[0] == "ok" &&
      absl::SimpleAtoi(parts[1], &m.num_examples) &&
      absl::SimpleAtod(parts[2], &m.loss) &&
      absl::SimpleAtod(parts[3], &m.accuracy)) {
    return m;
  }
  return absl::InternalError(absl::StrCat("evaluator: ", *line));
}

}  // namespace fedge
