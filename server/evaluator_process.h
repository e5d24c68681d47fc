// EvaluatorProcess: central evaluation in a child process (fedge-evaluator),
// so the long-running coordinator never maps LibTorch (about 170 MB of
// resident memory) and a crash in evaluation cannot take it down.
//
// Protocol on the child's stdin/stdout: the child first prints
// "ready <description>\n"; then for each request the parent writes a uint64
// little-endian length and the model's canonical encoding, and the child
// answers "ok <num_examples> <loss> <accuracy>\n" or "error <message>\n".
// Not thread-safe: one caller (the coordinator's Tick thread).
#ifndef FEDGE_SERVER_EVALUATOR_PROCESS_H_
#define FEDGE_SERVER_EVALUATOR_PROCESS_H_

#include <sys/types.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/local_trainer.h"
#include "fedge/v1/config.pb.h"

namespace fedge {

class EvaluatorProcess final : public LocalTrainer {
 public:
  // Starts `binary` with `config` and waits for it to be ready (loading the
  // data). UNAVAILABLE when it cannot start; its error message otherwise.
  static absl::StatusOr<std::unique_ptr<EvaluatorProcess>> Start(
      const std::string& binary, const v1::EvaluatorConfig& config,
      const std::string& work_dir);
  ~EvaluatorProcess() override;

  const std::string& description() const { return description_; }

  // UNIMPLEMENTED: this trainer only evaluates.
  absl::StatusOr<TrainOutput> Train(const ModelState&, const TrainPlan&,
                                    absl::Span<const int64_t>) override;
  // UNAVAILABLE when the child died; INTERNAL with its message otherwise.
  absl::StatusOr<EvalMetrics> Evaluate(const ModelState& weights) override;

 private:
  EvaluatorProcess() = default;
  absl::StatusOr<std::string> ReadLine();

  pid_t pid_ = -1;
  std::FILE* to_child_ = nullptr;
  std::FILE* from_child_ = nullptr;
  std::string description_;
};

// The path of a binary named `name` next to the running executable.
std::string SiblingBinary(const std::string& name);

}  // namespace fedge

#endif  // FEDGE_SERVER_EVALUATOR_PROCESS_H_
