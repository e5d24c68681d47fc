// Child processes for end-to-end tests: start a real binary with its output
// in a log file, signal it, wait for it with a time limit. Every process
// still running when its Process object dies is killed (SIGKILL, with its
// process group: what a wrapper started too) and reaped, so a failing test
// never leaves servers behind.
#ifndef FEDGE_TESTS_E2E_PROCESS_H_
#define FEDGE_TESTS_E2E_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace fedge::testing {

class Process {
 public:
  // Starts `argv[0]` with `argv`, stdout and stderr appended to `log_path`.
  Process(const std::vector<std::string>& argv, const std::string& log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int sig);
  // Waits up to `timeout`; the exit code (or 128+signal), or nullopt.
  std::optional<int> Wait(absl::Duration timeout);
  // The log so far.
  std::string Log() const;
  const std::string& log_path() const { return log_path_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string log_path_;
};

// The whole file at `path` ("" if unreadable).
std::string ReadFileOrEmpty(const std::string& path);

// Polls `predicate` every 20 ms until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& predicate, absl::Duration timeout);

}  // namespace fedge::testing

#endif  // FEDGE_TESTS_E2E_PROCESS_H_
