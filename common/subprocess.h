// RunProcess: runs a program to completion with a deadline and returns what
// it printed, for short-lived helper processes (e.g. fedge-evaluator
// --export-initial). The child's stdout is captured (bounded), its stderr
// inherited; it is killed (SIGKILL, its process group) when the deadline
// passes. Thread-safe (no shared state).
#ifndef FEDGE_COMMON_SUBPROCESS_H_
#define FEDGE_COMMON_SUBPROCESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fedge {

struct ProcessResult {
  int exit_code = 0;   // 128 + signal when killed by one.
  std::string output;  // Its stdout, at most max_output_bytes of it.
};

// Runs argv[0] (a path) with `argv`. UNAVAILABLE when it cannot start;
// DEADLINE_EXCEEDED (the child killed) after `timeout`; otherwise its exit
// code and output, whatever the code.
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout,
                                         size_t max_output_bytes = 1 << 20);

}  // namespace fedge

#endif  // FEDGE_COMMON_SUBPROCESS_H_
