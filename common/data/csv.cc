#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/data/dataset.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace fedge {

namespace {

// Parses CSV lines one at a time into a Dataset.
class CsvParser {
 public:
  CsvParser(const CsvOptions& options, const std::string& name)
      : options_(options), name_(name) {}

  absl::Status Line(absl::string_view line, int64_t line_number) {
    line_number_ = line_number;
    fields_ = absl::StrSplit(line, options_.delimiter);
    for (absl::string_view& f : fields_) f = absl::StripAsciiWhitespace(f);
    if (num_fields_ == 0) return First();
    if (fields_.size() != num_fields_) {
      return Error(absl::StrCat(fields_.size(), " fields, expected ",
                                num_fields_, " (as on line ", first_line_,
                                ")"));
    }
    return Row();
  }

  absl::StatusOr<Dataset> Finish() && {
    if (dataset_.labels.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": no data rows"));
    }
    dataset_.example_shape = {static_cast<int64_t>(num_fields_) - 1};
    dataset_.num_classes = static_cast<int>(max_label_ + 1);
    return std::move(dataset_);
  }

 private:
  absl::Status Error(absl::string_view what, int column = 0) const {
    return absl::InvalidArgumentError(absl::StrCat(
        name_, ":", line_number_, ": ",
        column > 0 ? absl::StrCat("column ", column, ": ") : "", what));
  }

  // The first non-blank line fixes the field count; it may be a header.
  absl::Status First() {
    num_fields_ = fields_.size();
    first_line_ = line_number_;
    if (num_fields_ < 2) {
      return Error(absl::StrCat("need at least 2 columns (features and a ",
                                "label), found ", num_fields_));
    }
    const int n = static_cast<int>(num_fields_);
    const int col = options_.label_column;
    if (col >= n || col < -n) {
      return Error(absl::StrCat("label_column ", col, " is outside a row of ",
                                n, " fields"));
    }
    label_index_ = static_cast<size_t>(col < 0 ? n + col : col);
    bool header = options_.has_header;
    float unused;
    for (absl::string_view f : fields_) {
      header = header || !absl::SimpleAtof(f, &unused);
    }
    return header ? absl::OkStatus() : Row();
  }

  absl::Status Row() {
    if (static_cast<int64_t>(dataset_.labels.size()) >= options_.max_rows) {
      return absl::ResourceExhaustedError(absl::StrCat(
          name_, ":", line_number_,
          ": more than max_rows = ", options_.max_rows, " data rows"));
    }
    for (size_t i = 0; i < fields_.size(); ++i) {
      RETURN_IF_ERROR(i == label_index_ ? Label(i) : Feature(i));
    }
    return absl::OkStatus();
  }

  absl::Status Feature(size_t i) {
    float value;
    if (!absl::SimpleAtof(fields_[i], &value) || !std::isfinite(value)) {
      return Error(absl::StrCat("'", fields_[i], "' is not a finite number"),
                   static_cast<int>(i) + 1);
    }
    dataset_.features.push_back(value);
    return absl::OkStatus();
  }

  absl::Status Label(size_t i) {
    int64_t label;
    if (!absl::SimpleAtoi(fields_[i], &label)) {
      return Error(absl::StrCat("label '", fields_[i], "' is not an integer"),
                   static_cast<int>(i) + 1);
    }
    if (label < 0 || label >= kMaxNumClasses) {
      return Error(absl::StrCat("label ", label, " is outside [0, ",
                                kMaxNumClasses, ")"),
                   static_cast<int>(i) + 1);
    }
    max_label_ = std::max(max_label_, label);
    dataset_.labels.push_back(label);
    return absl::OkStatus();
  }

  const CsvOptions& options_;
  const std::string& name_;
  std::vector<absl::string_view> fields_;
  size_t num_fields_ = 0;  // 0 until the first non-blank line.
  size_t label_index_ = 0;
  int64_t first_line_ = 0;
  int64_t line_number_ = 0;
  int64_t max_label_ = -1;
  Dataset dataset_;
};

}  // namespace

absl::StatusOr<Dataset> ParseCsv(absl::string_view text,
                                 const CsvOptions& options,
                                 const std::string& name_for_errors) {
  if (options.max_rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name_for_errors, ": max_rows must be >= 0, got ", options.max_rows));
  }
  CsvParser parser(options, name_for_errors);
  int64_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    RETURN_IF_ERROR(parser.Line(absl::StripSuffix(line, "\r"), line_number));
  }
  return std::move(parser).Finish();
}

absl::StatusOr<Dataset> ReadCsv(const std::string& path,
                                const CsvOptions& options) {
  ASSIGN_OR_RETURN(const std::string text,
                   ReadFileMaybeGzipped(path, kMaxCsvBytes));
  return ParseCsv(text, options, path);
}

// ===========================================================================
// Synthetic

}  // namespace fedge
