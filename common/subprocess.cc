#include "common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/clock.h"

namespace fedge {
namespace {

// Milliseconds until `deadline` for poll(), at least 1 while any is left.
int PollMillis(absl::Time deadline) {
  const absl::Duration left = deadline - RealClock::Get()->Now();
  return static_cast<int>(std::clamp<int64_t>(
      absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 0,
      INT_MAX));
}

}  // namespace

absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         const ProcessOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("no program to run");
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // Made before fork: the child of a multi-threaded process must not
  // allocate, only exec (or write this and exit).
  const std::string exec_failed = absl::StrCat("error cannot run ", argv[0]);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot create a pipe: ", std::strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    dup2(out[1], STDOUT_FILENO);
    if (options.merge_stderr) dup2(out[1], STDERR_FILENO);
    execv(args[0], args.data());
    const char* reason = strerrordesc_np(errno);  // Static, no allocation.
    if (reason == nullptr) reason = "unknown error";
    ssize_t ignored =
        write(STDOUT_FILENO, exec_failed.data(), exec_failed.size());
    ignored = write(STDOUT_FILENO, ": ", 2);
    ignored = write(STDOUT_FILENO, reason, strlen(reason));
    (void)ignored;
    _exit(127);
  }
  close(out[1]);
  if (pid < 0) {
    close(out[0]);
    return absl::UnavailableError(
        absl::StrCat("cannot fork: ", std::strerror(errno)));
  }
  setpgid(pid, pid);  // Also here: before any kill of its group.
  const absl::Time deadline = RealClock::Get()->Now() + options.timeout;
  ProcessResult result;
  char buf[4096];
  bool eof = false;
  while (!eof && PollMillis(deadline) > 0) {
    pollfd p = {out[0], POLLIN, 0};
    const int ready = poll(&p, 1, PollMillis(deadline));
    if (ready <= 0) continue;  // EINTR, or the deadline (checked above).
    const ssize_t n = read(out[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof = true;
      break;
    }
    const size_t room = options.max_output_bytes - result.output.size();
    result.output.append(buf, std::min<size_t>(static_cast<size_t>(n), room));
  }
  close(out[0]);
  // The exit has the same deadline: a child that closed its output and
  // goes on is killed too.
  int status = 0;
  bool exited = false;
  while (eof && !exited) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      exited = true;
    } else if ((done < 0 && errno != EINTR) || PollMillis(deadline) == 0) {
      break;
    } else {
      poll(nullptr, 0, std::min(10, PollMillis(deadline)));
    }
  }
  if (!exited) {
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return absl::DeadlineExceededError(
        absl::StrCat(argv[0], " did not finish within ",
                     absl::FormatDuration(options.timeout), "; killed"));
  }
  result.exit_code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace fedge
