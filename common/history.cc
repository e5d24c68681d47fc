#include "common/history.h"

#include <cerrno>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"

namespace fedge {
namespace {

std::string Opt(const std::optional<double>& v) {
  return v.has_value() ? absl::StrFormat("%.6f", *v) : "";
}

}  // namespace

std::string HistoryWriter::Header(bool with_bytes) {
  std::string h =
      "round,num_agents,num_failed,num_examples,train_loss,train_accuracy,"
      "test_loss,test_accuracy,train_seconds,round_seconds,fed_eval_loss,"
      "fed_eval_accuracy";
  if (with_bytes) h += ",bytes_received,bytes_sent";
  return h;
}

std::string HistoryWriter::Line(const RoundRecord& r, bool with_bytes) {
  std::string line = absl::StrFormat(
      "%d,%d,%d,%d,%.6f,%.6f,%s,%s,%.4f,%.4f,%s,%s", r.round, r.num_agents,
      r.num_failed, r.num_examples, r.train_loss, r.train_accuracy,
      Opt(r.test_loss), Opt(r.test_accuracy), r.train_seconds, r.round_seconds,
      Opt(r.fed_eval_loss), Opt(r.fed_eval_accuracy));
  if (with_bytes) {
    absl::StrAppend(&line, ",", r.bytes_received.value_or(0), ",",
                    r.bytes_sent.value_or(0));
  }
  return line;
}

absl::StatusOr<std::unique_ptr<HistoryWriter>> HistoryWriter::Open(
    const std::string& path, bool with_bytes) {
  std::string first_line;
  {
    std::ifstream in(path);
    if (in) std::getline(in, first_line);
  }
  const std::string header = Header(with_bytes);
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
  auto writer =
      std::unique_ptr<HistoryWriter>(new HistoryWriter(f, path, with_bytes));
  if (first_line.empty()) {
    std::fprintf(f, "%s\n", header.c_str());
    std::fflush(f);
  }
  return writer;
}

HistoryWriter::~HistoryWriter() { std::fclose(file_); }

absl::Status HistoryWriter::Append(const RoundRecord& record) {
  const std::string line = Line(record, with_bytes_) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() ||
      std::fflush(file_) != 0) {
    return ErrnoStatus(errno, "write", path_);
  }
  return absl::OkStatus();
}

}  // namespace fedge
