// libFuzzer entry point for the round history (common/history.h), which a
// restarted coordinator reads back from its state_dir, and for `fedge
// plot` (common/plot.h), which reads any history file it is given.
//
// The input is a flags byte, then the file's contents. The harness writes
// the file and:
//   1. HistoryWriter::Read. Then HistoryWriter::Open for appending (with or
//      without byte columns, flag bit 0), and when the file read and opened,
//      Append one record. When the file is one HistoryWriter could have
//      written, cut anywhere by a crash (empty, or its header line first),
//      reading back must give one more record, equal to the appended one:
//      what a coordinator resumed after a crash relies on.
//   2. ParseHistoryCsv and ReadHistoryFile, which must agree; for a history
//      that parses, HistoryFigure and RenderSvg, and RenderPng at the
//      smallest figure size when flag bit 1 is set (it is slower), at
//      zlib's fastest compression level.
// A crash, a sanitizer report or a broken property (abort) is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/history.h"
#include "common/plot.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

// zlib's fastest level instead of `fedge plot`'s best: the same fedge code,
// but zlib (not under test) compressing at its slowest level was a third of
// this target's time.
constexpr int kPngCompressionLevel = 1;

RoundRecord Appended() {
  RoundRecord r;
  r.round = 42;
  r.num_agents = 3;
  r.num_failed = 1;
  r.num_examples = 600;
  r.train_loss = 0.5;
  r.train_accuracy = 0.75;
  r.test_accuracy = 0.875;
  r.train_seconds = 1.5;
  r.round_seconds = 2.25;
  r.bytes_received = 1000;
  r.bytes_sent = 2000;
  return r;
}

// The append property holds for what HistoryWriter writes, cut anywhere
// (a crash): an empty file, or its header line and then anything.
void FuzzHistoryWriter(const std::string& path, absl::string_view contents,
                       bool with_bytes) {
  absl::StatusOr<std::vector<RoundRecord>> before = HistoryWriter::Read(path);
  fuzz::Trace("HistoryWriter::Read", before.status());
  absl::StatusOr<std::unique_ptr<HistoryWriter>> writer =
      HistoryWriter::Open(path, with_bytes);
  fuzz::Trace("HistoryWriter::Open", writer.status());
  if (!before.ok() || !writer.ok()) return;
  const RoundRecord record = Appended();
  Check((*writer)->Append(record).ok(), "Append");
  writer->reset();
  if (!contents.empty() &&
      !absl::StartsWith(contents, HistoryWriter::Header(with_bytes) + "\n")) {
    return;
  }
  absl::StatusOr<std::vector<RoundRecord>> after = HistoryWriter::Read(path);
  Check(after.ok(), "a history that read does not read after Append");
  Check(after->size() == before->size() + 1,
        "Append did not add exactly one record");
  Check(HistoryWriter::Line(after->back(), with_bytes) ==
            HistoryWriter::Line(record, with_bytes),
        "the appended record reads back differently");
}

void FuzzPlot(const std::string& path, absl::string_view csv, bool png) {
  absl::StatusOr<History> parsed = ParseHistoryCsv(csv, path);
  absl::StatusOr<History> read = ReadHistoryFile(path);
  fuzz::Trace("ParseHistoryCsv", parsed.status());
  Check(parsed.ok() == read.ok(), "ParseHistoryCsv and ReadHistoryFile");
  if (!parsed.ok()) return;
  Check(parsed->rounds == read->rounds, "ParseHistoryCsv and ReadHistoryFile");
  for (const char* column : kPlottedHistoryColumns) {
    const std::vector<std::optional<double>>* values = parsed->Column(column);
    Check(values == nullptr || values->size() == parsed->rounds.size(),
          "a column without one value per round");
  }
  Figure figure = HistoryFigure(*parsed, "fuzz");
  RenderSvg(figure);
  if (png) {
    figure.width_px = 240;
    figure.height_px = 240;
    Check(RenderPng(figure, kPngCompressionLevel).ok(), "RenderPng");
  }
}

void FuzzOne(absl::string_view input) {
  static const fuzz::ScratchDir dir;
  InputReader in(input);
  const uint8_t flags = in.Byte();
  const absl::string_view contents = in.Rest();
  const std::string path = dir.WriteFile("history.csv", contents);
  FuzzPlot(path, contents, (flags & 2) != 0);
  FuzzHistoryWriter(path, contents, (flags & 1) != 0);
}

std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  for (uint8_t with_bytes = 0; with_bytes < 2; ++with_bytes) {
    std::string file = HistoryWriter::Header(with_bytes) + "\n";
    for (int64_t round = 1; round <= 3; ++round) {
      RoundRecord r = Appended();
      r.round = round;
      if (round != 2) {
        r.test_loss = 0.25 * round;
        r.fed_eval_accuracy = 0.5;
      }
      absl::StrAppend(&file, HistoryWriter::Line(r, with_bytes), "\n");
    }
    seeds.push_back(InputWriter().Byte(with_bytes).Bytes(file).str());
    seeds.push_back(InputWriter().Byte(with_bytes | 2).Bytes(file).str());
  }
  // A header of fedge-sim's with other columns' order, CRLF and a repeat.
  seeds.push_back(InputWriter()
                      .Byte(2)
                      .Bytes("test_accuracy,round,train_loss\r\n"
                             "0.5,1,2.5\r\n0.6,2,\r\n\r\n0.7,2,1e-3\r\n")
                      .str());
  return seeds;
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
