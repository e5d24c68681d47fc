// EvaluatorProcess: central evaluation in a child process (fedge-evaluator),
// so the long-running coordinator never maps LibTorch (about 170 MB of
// resident memory) and a crash or hang in evaluation cannot take it down.
//
// Protocol on the child's stdin/stdout: the child first prints
// "ready <description>\n"; then for each request the parent writes a uint64
// little-endian length and the model's canonical encoding, and the child
// answers "ok <num_examples> <loss> <accuracy>\n" or "error <message>\n".
//
// Every exchange has a deadline (Options::timeout, on the monotonic clock):
// a child that does not start, answer or read in time, or that dies, is
// killed (SIGKILL), reaped and started again for the next evaluation; the
// evaluation that hit it fails with DEADLINE_EXCEEDED or UNAVAILABLE.
//
// Thread-safety: Evaluate() from one thread at a time; Cancel() from any
// thread, at any time.
#ifndef FEDGE_SERVER_EVALUATOR_PROCESS_H_
#define FEDGE_SERVER_EVALUATOR_PROCESS_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/local_trainer.h"
#include "fedge/v1/config.pb.h"

namespace fedge {

class EvaluatorProcess final : public LocalTrainer {
 public:
  struct Options {
    std::string binary;          // The evaluator program.
    v1::EvaluatorConfig config;  // Handed to it as a file in work_dir.
    std::string work_dir;        // Must exist.
    absl::Duration timeout = absl::Minutes(5);  // Per start and per answer.
  };

  // Starts the child and waits (up to options.timeout) for it to be ready
  // (its data loaded). UNAVAILABLE when it cannot start or exits;
  // DEADLINE_EXCEEDED when it is not ready in time; its own error message
  // (e.g. missing data) as UNAVAILABLE otherwise.
  static absl::StatusOr<std::unique_ptr<EvaluatorProcess>> Start(
      Options options);
  ~EvaluatorProcess() override;

  const std::string& description() const { return description_; }

  // UNIMPLEMENTED: this trainer only evaluates.
  absl::StatusOr<TrainOutput> Train(const ModelState&, const TrainPlan&,
                                    absl::Span<const int64_t>) override;
  // DEADLINE_EXCEEDED when the child took longer than the timeout and
  // UNAVAILABLE when it died (it is restarted for the next call in both
  // cases); INTERNAL with the child's message when it refused the model;
  // CANCELLED after Cancel().
  absl::StatusOr<EvalMetrics> Evaluate(const ModelState& weights) override;

  // Kills the child now (an Evaluate() in progress returns CANCELLED) and
  // makes every later Evaluate() return CANCELLED. For shutdown.
  void Cancel();

 private:
  explicit EvaluatorProcess(Options options) : options_(std::move(options)) {}
  // Starts the child and reads its "ready" line.
  absl::Status Spawn();
  // Kills and reaps the child, if any.
  void Kill();
  absl::Status WriteAll(const char* data, size_t size, absl::Time deadline);
  absl::StatusOr<std::string> ReadLine(absl::Time deadline);
  // Why an exchange failed: CANCELLED, DEADLINE_EXCEEDED or UNAVAILABLE.
  absl::Status ExchangeError(absl::string_view what, bool timed_out) const;

  const Options options_;
  std::atomic<pid_t> pid_{-1};
  std::atomic<bool> cancelled_{false};
  int to_child_ = -1;
  int from_child_ = -1;
  std::string pending_;  // Bytes read past the last line.
  std::string description_;
};

// The path of a binary named `name` next to the running executable.
std::string SiblingBinary(const std::string& name);

}  // namespace fedge

#endif  // FEDGE_SERVER_EVALUATOR_PROCESS_H_
