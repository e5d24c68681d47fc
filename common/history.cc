#include "common/history.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

std::string Opt(const std::optional<double>& v) {
  return v.has_value() ? absl::StrFormat("%.6f", *v) : "";
}

// The training metrics of a round that aggregated updates; an abandoned
// round (no agent's update) has none, and its cells stay empty.
std::optional<double> Trained(const RoundRecord& r, double v) {
  if (r.num_agents == 0) return std::nullopt;
  return v;
}

// Truncates `path` after its last newline when it does not end with one.
absl::Status DropTornLastLine(const std::string& path) {
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::OkStatus();  // Not there yet.
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  if (text.empty() || text.back() == '\n') return absl::OkStatus();
  const size_t keep =
      text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  if (truncate(path.c_str(), static_cast<off_t>(keep)) != 0) {
    return ErrnoStatus(errno, "truncate", path);
  }
  return absl::OkStatus();
}

}  // namespace

std::string HistoryWriter::Header(bool with_bytes, bool with_simulated_time,
                                  bool with_privacy) {
  std::string h =
      "round,num_agents,num_failed,num_examples,train_loss,train_accuracy,"
      "test_loss,test_accuracy,train_seconds,round_seconds,fed_eval_loss,"
      "fed_eval_accuracy";
  if (with_bytes) h += ",bytes_received,bytes_sent";
  if (with_simulated_time) h += ",simulated_seconds";
  if (with_privacy) h += ",epsilon,delta";
  return h;
}

std::string HistoryWriter::Line(const RoundRecord& r, bool with_bytes,
                                bool with_simulated_time, bool with_privacy) {
  std::string line = absl::StrFormat(
      "%d,%d,%d,%d,%s,%s,%s,%s,%.4f,%.4f,%s,%s", r.round, r.num_agents,
      r.num_failed, r.num_examples, Opt(Trained(r, r.train_loss)),
      Opt(Trained(r, r.train_accuracy)), Opt(r.test_loss), Opt(r.test_accuracy),
      r.train_seconds, r.round_seconds, Opt(r.fed_eval_loss),
      Opt(r.fed_eval_accuracy));
  if (with_bytes) {
    absl::StrAppend(&line, ",", r.bytes_received.value_or(0), ",",
                    r.bytes_sent.value_or(0));
  }
  if (with_simulated_time) {
    absl::StrAppend(&line, ",",
                    r.simulated_seconds.has_value()
                        ? absl::StrFormat("%.3f", *r.simulated_seconds)
                        : "");
  }
  if (with_privacy) {
    absl::StrAppend(
        &line, ",",
        r.epsilon.has_value() ? absl::StrFormat("%.6f", *r.epsilon) : "", ",",
        r.delta.has_value() ? absl::StrFormat("%.6g", *r.delta) : "");
  }
  return line;
}

absl::StatusOr<std::unique_ptr<HistoryWriter>> HistoryWriter::Open(
    const std::string& path, bool with_bytes, bool with_simulated_time,
    bool with_privacy) {
  // A line without its newline was cut by a crash mid-write: it was never
  // acknowledged, so it is dropped (an Append would merge with it).
  RETURN_IF_ERROR(DropTornLastLine(path));
  std::string first_line;
  {
    std::ifstream in(path);
    if (in) std::getline(in, first_line);
  }
  const std::string header =
      Header(with_bytes, with_simulated_time, with_privacy);
  if (!first_line.empty() && first_line != header) {
    return absl::FailedPreconditionError(
        absl::StrCat("history file '", path, "' has different columns (",
                     first_line, "); move it away or choose another path"));
  }
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot open history file '", path, "' for writing"));
  }
  auto writer = std::unique_ptr<HistoryWriter>(new HistoryWriter(
      f, path, with_bytes, with_simulated_time, with_privacy));
  if (first_line.empty()) {
    std::fprintf(f, "%s\n", header.c_str());
    std::fflush(f);
  }
  return writer;
}

HistoryWriter::~HistoryWriter() { std::fclose(file_); }

absl::StatusOr<std::vector<RoundRecord>> HistoryWriter::Read(
    const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream in;
  in << file.rdbuf();
  // A torn last line (no newline: a crash mid-write) is not a record.
  std::string text = in.str();
  text.resize(text.rfind('\n') == std::string::npos ? 0
                                                     : text.rfind('\n') + 1);
  in.str(text);
  std::string line;
  std::vector<RoundRecord> records;
  if (!std::getline(in, line)) return records;
  const std::vector<std::string> header = absl::StrSplit(line, ',');
  int line_number = 1;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty()) continue;
    const std::vector<std::string> cells = absl::StrSplit(line, ',');
    RoundRecord r;
    for (size_t c = 0; c < header.size() && c < cells.size(); ++c) {
      const std::string& name = header[c];
      const std::string& cell = cells[c];
      if (cell.empty()) continue;
      double v;
      if (!absl::SimpleAtod(cell, &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_number, ": column ", name,
                         ": not a number: '", cell, "'"));
      }
      // Integer columns: whole numbers an int64 (int) holds, or the file
      // is refused (a cast of 1e99 would be undefined).
      const bool integer_column =
          name == "round" || name == "num_agents" || name == "num_failed" ||
          name == "num_examples" || name == "bytes_received" ||
          name == "bytes_sent";
      const double limit = (name == "num_agents" || name == "num_failed")
                               ? 2147483647.0
                               : 9.2e18;
      if (integer_column &&
          !(std::abs(v) <= limit && v == std::floor(v))) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_number, ": column ", name,
                         ": not a whole number in range: '", cell, "'"));
      }
      if (name == "round") r.round = static_cast<int64_t>(v);
      if (name == "num_agents") r.num_agents = static_cast<int>(v);
      if (name == "num_failed") r.num_failed = static_cast<int>(v);
      if (name == "num_examples") r.num_examples = static_cast<int64_t>(v);
      if (name == "train_loss") r.train_loss = v;
      if (name == "train_accuracy") r.train_accuracy = v;
      if (name == "test_loss") r.test_loss = v;
      if (name == "test_accuracy") r.test_accuracy = v;
      if (name == "train_seconds") r.train_seconds = v;
      if (name == "round_seconds") r.round_seconds = v;
      if (name == "fed_eval_loss") r.fed_eval_loss = v;
      if (name == "fed_eval_accuracy") r.fed_eval_accuracy = v;
      if (name == "bytes_received") r.bytes_received = static_cast<int64_t>(v);
      if (name == "bytes_sent") r.bytes_sent = static_cast<int64_t>(v);
      if (name == "simulated_seconds") r.simulated_seconds = v;
      if (name == "epsilon") r.epsilon = v;
      if (name == "delta") r.delta = v;
    }
    records.push_back(r);
  }
  return records;
}

absl::Status HistoryWriter::Append(const RoundRecord& record) {
  const std::string line =
      Line(record, with_bytes_, with_simulated_time_, with_privacy_) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() ||
      std::fflush(file_) != 0) {
    return ErrnoStatus(errno, "write", path_);
  }
  return absl::OkStatus();
}

}  // namespace fedge
