// Round history as CSV: one line per round, flushed as it is written so that
// nothing is lost on a crash. Shared by fedge-sim and fedge-coordinator, so
// their files have the same columns (the coordinator adds byte counts):
//   round,num_agents,num_failed,num_examples,train_loss,train_accuracy,
//   test_loss,test_accuracy,train_seconds,round_seconds,fed_eval_loss,
//   fed_eval_accuracy[,bytes_received,bytes_sent][,simulated_seconds]
//   [,epsilon,delta]
// Files are read back by column name, so files written before a column
// existed stay readable.
//
// Thread-compatible: one writer per file.
#ifndef FEDGE_COMMON_HISTORY_H_
#define FEDGE_COMMON_HISTORY_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge {

struct RoundRecord {
  int64_t round = 0;
  int num_agents = 0;         // Agents whose updates were aggregated.
  int num_failed = 0;         // Selected agents that failed or timed out.
  int64_t num_examples = 0;   // Total examples behind the aggregate.
  double train_loss = 0;      // Example-weighted mean of local losses.
  double train_accuracy = 0;  // Example-weighted mean of local accuracies.
  std::optional<double> test_loss;  // Unset when not evaluated.
  std::optional<double> test_accuracy;
  // Federated evaluation: the example-weighted loss and accuracy of this
  // round's model on the evaluating agents' held-out data (unset: none).
  std::optional<double> fed_eval_loss;
  std::optional<double> fed_eval_accuracy;
  // Wall time of the round's local training (fedge-sim: the parallel
  // training phase; coordinator: the slowest agent's reported time).
  double train_seconds = 0;
  double round_seconds = 0;               // Wall time of the whole round.
  std::optional<int64_t> bytes_received;  // Wire bytes (fedge-sim: as encoded).
  std::optional<int64_t> bytes_sent;
  // fedge-sim with simulated device speeds: simulated time since the start
  // of the run when the round (or FedBuff version) closed.
  std::optional<double> simulated_seconds;
  // Differential privacy: the accountant's (epsilon, delta) guarantee after
  // this round (common/privacy_accountant.h); unset when the run is not
  // private.
  std::optional<double> epsilon;
  std::optional<double> delta;
};

class HistoryWriter {
 public:
  // Opens `path` for appending. A new or empty file gets the header; an
  // existing file must have the same header (so a resumed run continues
  // it), else FAILED_PRECONDITION. `with_bytes` adds bytes_received and
  // bytes_sent; `with_privacy` epsilon and delta. UNAVAILABLE when the file
  // cannot be opened.
  static absl::StatusOr<std::unique_ptr<HistoryWriter>> Open(
      const std::string& path, bool with_bytes,
      bool with_simulated_time = false, bool with_privacy = false);
  ~HistoryWriter();
  HistoryWriter(const HistoryWriter&) = delete;
  HistoryWriter& operator=(const HistoryWriter&) = delete;

  // Writes and flushes one line. The errno status of a failed write
  // (RESOURCE_EXHAUSTED for a full disk), naming the path.
  absl::Status Append(const RoundRecord& record);

  // The header line (without newline); `with_simulated_time` adds
  // simulated_seconds, `with_privacy` epsilon and delta.
  static std::string Header(bool with_bytes, bool with_simulated_time = false,
                            bool with_privacy = false);
  // Reads back a history file written by HistoryWriter (any of its column
  // sets; columns found by name). NOT_FOUND when missing (an empty list
  // for an empty file); INVALID_ARGUMENT naming the line and column of a
  // malformed cell.
  static absl::StatusOr<std::vector<RoundRecord>> Read(const std::string& path);
  // One CSV line for `record` (without newline).
  static std::string Line(const RoundRecord& record, bool with_bytes,
                          bool with_simulated_time = false,
                          bool with_privacy = false);

 private:
  HistoryWriter(std::FILE* file, std::string path, bool with_bytes,
                bool with_simulated_time, bool with_privacy)
      : file_(file),
        path_(std::move(path)),
        with_bytes_(with_bytes),
        with_simulated_time_(with_simulated_time),
        with_privacy_(with_privacy) {}
  std::FILE* file_;
  std::string path_;
  bool with_bytes_;
  bool with_simulated_time_;
  bool with_privacy_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_HISTORY_H_
