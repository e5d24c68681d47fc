#include "server/evaluator_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/model_codec.h"
#include "common/status_macros.h"

namespace fedge {

std::string SiblingBinary(const std::string& name) {
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return name;
  std::string path(self, n);
  return path.substr(0, path.rfind('/') + 1) + name;
}

absl::StatusOr<std::unique_ptr<EvaluatorProcess>> EvaluatorProcess::Start(
    const std::string& binary, const v1::EvaluatorConfig& config,
    const std::string& work_dir) {
  const std::string config_path = work_dir + "/evaluator.binpb";
  RETURN_IF_ERROR(
      WriteStringAtomically(config_path, config.SerializeAsString()));
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) {
    return absl::UnavailableError("cannot create pipes for fedge-evaluator");
  }
  auto self = std::unique_ptr<EvaluatorProcess>(new EvaluatorProcess());
  self->pid_ = fork();
  if (self->pid_ == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    execl(binary.c_str(), binary.c_str(), config_path.c_str(), nullptr);
    std::fprintf(stdout, "error cannot run %s: %s\n", binary.c_str(),
                 std::strerror(errno));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  signal(SIGPIPE, SIG_IGN);  // A dead child shows up as a write error.
  self->to_child_ = fdopen(in[1], "w");
  self->from_child_ = fdopen(out[0], "r");
  ASSIGN_OR_RETURN(std::string line, self->ReadLine());
  absl::string_view rest = line;
  if (!absl::ConsumePrefix(&rest, "ready ")) {
    return absl::UnavailableError(
        absl::StrCat("fedge-evaluator (", binary, ") failed: ", line));
  }
  self->description_ = std::string(rest);
  return self;
}

EvaluatorProcess::~EvaluatorProcess() {
  if (to_child_ != nullptr) std::fclose(to_child_);  // EOF: the child exits.
  if (from_child_ != nullptr) std::fclose(from_child_);
  if (pid_ > 0) waitpid(pid_, nullptr, 0);
}

absl::StatusOr<std::string> EvaluatorProcess::ReadLine() {
  std::string line;
  int c;
  while ((c = std::fgetc(from_child_)) != EOF && c != '\n') line.push_back(c);
  if (c == EOF && line.empty()) {
    return absl::UnavailableError("fedge-evaluator exited");
  }
  return line;
}

absl::StatusOr<TrainOutput> EvaluatorProcess::Train(const ModelState&,
                                                    const TrainPlan&,
                                                    absl::Span<const int64_t>) {
  return absl::UnimplementedError("the central evaluator does not train");
}

absl::StatusOr<EvalMetrics> EvaluatorProcess::Evaluate(
    const ModelState& weights) {
  ModelEncoder encoder(weights);
  const uint64_t size = static_cast<uint64_t>(encoder.total_bytes());
  bool ok = std::fwrite(&size, sizeof(size), 1, to_child_) == 1;
  std::string chunk;
  while (ok && encoder.Next(&chunk)) {
    ok = std::fwrite(chunk.data(), 1, chunk.size(), to_child_) == chunk.size();
  }
  if (!ok || std::fflush(to_child_) != 0) {
    return absl::UnavailableError("fedge-evaluator is gone");
  }
  ASSIGN_OR_RETURN(std::string line, ReadLine());
  std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
  EvalMetrics m;
  if (parts.size() == 4 && parts[0] == "ok" &&
      absl::SimpleAtoi(parts[1], &m.num_examples) &&
      absl::SimpleAtod(parts[2], &m.loss) &&
      absl::SimpleAtod(parts[3], &m.accuracy)) {
    return m;
  }
  return absl::InternalError(absl::StrCat("fedge-evaluator: ", line));
}

}  // namespace fedge
