#include "common/ml/python_tool.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/subprocess.h"

namespace fedge::ml {
namespace {

// What a script may print that is kept (its last lines go into errors).
constexpr size_t kMaxOutputBytes = size_t{16} << 20;

// The last `n` non-empty lines of `text`.
std::string LastLines(const std::string& text, size_t n) {
  std::vector<std::string> lines =
      absl::StrSplit(text, '\n', absl::SkipWhitespace());
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - n);
  return absl::StrJoin(lines, " | ");
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
  ProcessOptions run;
  run.timeout = options.timeout;
  run.max_output_bytes = kMaxOutputBytes;
  run.merge_stderr = true;
  absl::StatusOr<ProcessResult> result = RunProcess(argv, run);
  if (absl::IsDeadlineExceeded(result.status())) {
    return absl::DeadlineExceededError(
        absl::StrCat(script, " ran longer than ",
                     absl::FormatDuration(options.timeout), " and was killed"));
  }
  if (!result.ok()) return result.status();
  const int code = result->exit_code;
  if (code == 0) return std::move(result->output);
  if (code == 127) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run ", options.python,
        " (exit 127): ", LastLines(result->output, 2),
        " (install python3-torch, python3-onnx and python3-numpy with "
        "scripts/install-deps.sh, or pass --python)"));
  }
  const std::string how = code > 128 ? absl::StrCat("signal ", code - 128)
                                     : absl::StrCat("exit ", code);
  return absl::InternalError(absl::StrCat(script, " failed (", how,
                                          "): ", LastLines(result->output, 3)));
}

}  // namespace fedge::ml
