#include "common/ml/python_tool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace fedge::ml {
namespace {

using Clock = std::chrono::steady_clock;

// The last `n` non-empty lines of `text`.
std::string LastLines(const std::string& text, size_t n) {
  std::vector<std::string> lines =
      absl::StrSplit(text, '\n', absl::SkipWhitespace());
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - n);
  return absl::StrJoin(lines, " | ");
}

// Reads `fd` until EOF or the deadline; false on timeout.
bool ReadUntilEof(int fd, Clock::time_point deadline, std::string* out) {
  char buf[4096];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;
    out->append(buf, static_cast<size_t>(n));
  }
}

// Waits for `pid` to exit until the deadline; true (its status in *status)
// when it did.
bool WaitUntil(pid_t pid, Clock::time_point deadline, int* status) {
  while (true) {
    const pid_t done = waitpid(pid, status, WNOHANG);
    if (done == pid) return true;
    if (done < 0 && errno != EINTR) return false;
    if (Clock::now() >= deadline) return false;
    poll(nullptr, 0, 10);  // A child that closed its output exits soon.
  }
}

struct Child {
  pid_t pid = -1;
  int out_fd = -1;
};

absl::StatusOr<Child> Spawn(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot create a pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  Child child;
  const int rc =
      posix_spawn(&child.pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot start ", argv[0], ": ", std::strerror(rc),
        " (install python3-torch, python3-onnx and python3-numpy with "
        "scripts/install-deps.sh, or pass --python)"));
  }
  child.out_fd = fds[0];
  return child;
}

}  // namespace

absl::StatusOr<std::string> RunPythonScript(
    const PythonOptions& options, const std::string& script,
    const std::vector<std::string>& args) {
  const std::string path = options.scripts_dir + "/" + script;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no ", path, " (pass --scripts_dir, the repository's scripts/)"));
  }
  std::vector<std::string> argv = {options.python, path};
  argv.insert(argv.end(), args.begin(), args.end());
  const Clock::time_point deadline =
      Clock::now() + absl::ToChronoMilliseconds(options.timeout);
  absl::StatusOr<Child> child = Spawn(argv);
  if (!child.ok()) return child.status();
  std::string output;
  const bool eof = ReadUntilEof(child->out_fd, deadline, &output);
  close(child->out_fd);
  int status = 0;
  const bool finished = eof && WaitUntil(child->pid, deadline, &status);
  if (!finished) {
    kill(child->pid, SIGKILL);
    while (waitpid(child->pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (!finished) {
    return absl::DeadlineExceededError(
        absl::StrCat(script, " ran longer than ",
                     absl::FormatDuration(options.timeout), " and was killed"));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return output;
  const std::string how = WIFEXITED(status)
                              ? absl::StrCat("exit ", WEXITSTATUS(status))
                              : absl::StrCat("signal ", WTERMSIG(status));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run ", options.python, " (exit 127): ", LastLines(output, 2)));
  }
  return absl::InternalError(
      absl::StrCat(script, " failed (", how, "): ", LastLines(output, 3)));
}

}  // namespace fedge::ml
