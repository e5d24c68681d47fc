// RunProcess: runs a program to completion with a deadline and returns what
// it printed, for short-lived helper processes (fedge-evaluator
// --export-initial, the Python helpers of fedge-export). The child's stdout
// (and, with merge_stderr, its stderr) is captured, bounded; otherwise its
// stderr is inherited. The deadline covers both the output and the exit: a
// child still running when it passes, even one that closed its output, is
// killed (SIGKILL, its process group) and reaped. Thread-safe (no shared
// state); safe to call from a multi-threaded process (the child only execs).
#ifndef FEDGE_COMMON_SUBPROCESS_H_
#define FEDGE_COMMON_SUBPROCESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fedge {

struct ProcessOptions {
  absl::Duration timeout = absl::Minutes(1);
  size_t max_output_bytes = 1 << 20;  // Kept; the rest is read and dropped.
  bool merge_stderr = false;          // Capture stderr with stdout.
};

struct ProcessResult {
  // 128 + signal when killed by one; 127 when argv[0] could not be run
  // (the output then says why, "error cannot run <path>: <reason>").
  int exit_code = 0;
  std::string output;  // What it printed, at most max_output_bytes.
};

// Runs argv[0] (a path) with `argv`. INVALID_ARGUMENT for an empty argv;
// UNAVAILABLE when no child can be made; DEADLINE_EXCEEDED (the child
// killed) after options.timeout; otherwise its exit code and output,
// whatever the code.
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         const ProcessOptions& options);

}  // namespace fedge

#endif  // FEDGE_COMMON_SUBPROCESS_H_
