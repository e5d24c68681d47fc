#include "common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/clock.h"

namespace fedge {

absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout,
                                         size_t max_output_bytes) {
  if (argv.empty()) return absl::InvalidArgumentError("no program to run");
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot create a pipe: ", std::strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    dup2(out[1], 1);
    execv(args[0], args.data());
    const std::string msg =
        absl::StrCat("error cannot run ", argv[0], ": ", std::strerror(errno));
    ssize_t ignored = write(1, msg.data(), msg.size());
    (void)ignored;
    _exit(127);
  }
  close(out[1]);
  if (pid < 0) {
    close(out[0]);
    return absl::UnavailableError(
        absl::StrCat("cannot fork: ", std::strerror(errno)));
  }
  const absl::Time deadline = RealClock::Get()->Now() + timeout;
  ProcessResult result;
  bool timed_out = false;
  char buf[4096];
  while (true) {
    const absl::Duration left = deadline - RealClock::Get()->Now();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    pollfd p = {out[0], POLLIN, 0};
    const int ready = poll(&p, 1,
                           static_cast<int>(std::min<int64_t>(
                               absl::ToInt64Milliseconds(left) + 1, INT_MAX)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) continue;  // The deadline check above ends it.
    const ssize_t n = read(out[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child closed its stdout (exited).
    if (result.output.size() < max_output_bytes) {
      result.output.append(
          buf, std::min<size_t>(n, max_output_bytes - result.output.size()));
    }
  }
  close(out[0]);
  if (timed_out) kill(-pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat(argv[0], " did not finish within ",
                     absl::FormatDuration(timeout), "; killed"));
  }
  result.exit_code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace fedge
