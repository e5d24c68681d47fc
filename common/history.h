// Round history as CSV: one line per round, flushed as it is written so that
// nothing is lost on a crash. Shared by fedge-sim and fedge-coordinator, so
// their files have the same columns (the coordinator adds byte counts).
//
// Thread-compatible: one writer per file.
#ifndef FEDGE_COMMON_HISTORY_H_
#define FEDGE_COMMON_HISTORY_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

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
  // Wall time of the round's local training (fedge-sim: the parallel
  // training phase; coordinator: the slowest agent's reported time).
  double train_seconds = 0;
  double round_seconds = 0;               // Wall time of the whole round.
  std::optional<int64_t> bytes_received;  // Coordinator only.
  std::optional<int64_t> bytes_sent;
};

class HistoryWriter {
 public:
  // Opens `path` for appending. A new or empty file gets the header; an
  // existing file must have the same header (so a resumed run continues
  // it), else FAILED_PRECONDITION. `with_bytes` adds bytes_received and
  // bytes_sent. UNAVAILABLE when the file cannot be opened.
  static absl::StatusOr<std::unique_ptr<HistoryWriter>> Open(
      const std::string& path, bool with_bytes);
  ~HistoryWriter();
  HistoryWriter(const HistoryWriter&) = delete;
  HistoryWriter& operator=(const HistoryWriter&) = delete;

  // Writes and flushes one line. UNAVAILABLE on a write error.
  absl::Status Append(const RoundRecord& record);

  // The header line (without newline).
  static std::string Header(bool with_bytes);
  // One CSV line for `record` (without newline).
  static std::string Line(const RoundRecord& record, bool with_bytes);

 private:
  HistoryWriter(std::FILE* file, bool with_bytes)
      : file_(file), with_bytes_(with_bytes) {}
  std::FILE* file_;
  bool with_bytes_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_HISTORY_H_
