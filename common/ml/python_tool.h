// Runs the Python helpers fedge ships in scripts/ (ONNX export, int8
// quantization) in a child process. LibTorch's C++ API has neither an ONNX
// exporter nor post-training quantization; PyTorch (Debian's python3-torch,
// the same 1.13 as the C++ library) has both, and reads the TorchScript
// files fedge writes.
//
// The child runs through RunProcess (common/subprocess.h): its stdout and
// stderr are collected together, and it runs with a deadline on the
// monotonic clock, killed (SIGKILL) and reaped when it passes. Torch-free.
// Stateless; thread-safe.
#ifndef FEDGE_COMMON_ML_PYTHON_TOOL_H_
#define FEDGE_COMMON_ML_PYTHON_TOOL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fedge::ml {

struct PythonOptions {
  // An interpreter with torch, onnx and numpy (scripts/install-deps.sh).
  std::string python = "/usr/bin/python3";
  // Where the scripts are (the repository's scripts/ folder).
  std::string scripts_dir;
  // Longest a script may run.
  absl::Duration timeout = absl::Minutes(10);
};

// Runs `python scripts_dir/script args...` and returns what it printed.
// Returns FAILED_PRECONDITION when the script does not exist or the
// interpreter cannot be started (saying what to install or pass), INTERNAL
// when it exits non-zero or is killed (its exit code and last lines of
// output), DEADLINE_EXCEEDED when it outruns the timeout (it is killed).
absl::StatusOr<std::string> RunPythonScript(
    const PythonOptions& options, const std::string& script,
    const std::vector<std::string>& args);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_PYTHON_TOOL_H_
