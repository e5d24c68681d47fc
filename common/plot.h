// Charts of a training run: reads the round-history CSV that fedge-sim and
// fedge-coordinator write (common/history.h) and draws accuracy and loss over
// rounds as a standalone SVG or PNG, for `fedge plot`.
//
//   ASSIGN_OR_RETURN(History history, ReadHistoryFile("run/history.csv"));
//   Figure figure = HistoryFigure(history, "history.csv");
//   std::string svg = RenderSvg(figure);
//   ASSIGN_OR_RETURN(std::string png, RenderPng(figure));
//
// A Figure is a plain value (panels of series of points); both renderers lay
// it out the same way (plot_scene.h), so the SVG and the PNG of one figure
// look alike. The PNG rasterizer, its bitmap font and its encoder are our own
// (plot_raster.h): Debian ships no small C++ plotting library we want as a
// dependency, and a chart of a few polylines does not need one.
//
// Stateless functions on values; thread-safe.
#ifndef FEDGE_COMMON_PLOT_H_
#define FEDGE_COMMON_PLOT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedge {

// ---------------------------------------------------------------------------
// The history file.

// The plottable columns of a history file, by round. Only the columns named
// in kPlottedHistoryColumns are read; other columns (num_agents, bytes_sent,
// columns added by later versions) are ignored, whatever they hold.
struct History {
  std::vector<int64_t> rounds;  // Ascending, each round once.
  // Column name -> one value per entry of `rounds`; nullopt where the cell
  // was empty or not finite ("nan", "inf": a diverged run). Holds exactly
  // the plotted columns that the header names.
  absl::flat_hash_map<std::string, std::vector<std::optional<double>>> values;

  // The column's values, or nullptr when the file has no such column.
  const std::vector<std::optional<double>>* Column(
      absl::string_view name) const;
};

// Columns HistoryFigure draws, if present: train_loss, train_accuracy,
// test_loss, test_accuracy, fed_eval_loss, fed_eval_accuracy.
extern const char* const kPlottedHistoryColumns[6];

// Parses history CSV text (header line, then one line per round; cells
// separated by commas, no quoting; an empty cell is a missing value; CRLF and
// blank lines are accepted). Columns are found by header name. When a round
// appears more than once (a run resumed from an older checkpoint), its last
// line wins. `source` names the text in errors (usually the file path).
// Returns:
//   INVALID_ARGUMENT  empty text; a header without a `round` column, with a
//                     repeated column, or without any plotted column; a line
//                     with a different number of cells than the header; a
//                     round that is not an integer, or a plotted cell that is
//                     not a number. The message names source:line and the
//                     column.
//   FAILED_PRECONDITION  a header but no rounds yet.
absl::StatusOr<History> ParseHistoryCsv(absl::string_view csv,
                                        absl::string_view source);

// Reads and parses the history file at `path` (at most 256 MiB). NOT_FOUND
// when it does not exist, other file_util.h ErrnoStatus errors when it cannot
// be read, RESOURCE_EXHAUSTED when too large, else as ParseHistoryCsv.
absl::StatusOr<History> ReadHistoryFile(const std::string& path);

// ---------------------------------------------------------------------------
// The chart model.

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

enum class LineStyle { kSolid, kDashed, kDotted };

// How a panel's y values are written on its axis.
enum class ValueFormat {
  kNumber,   // 0.25, 1.5, 10
  kPercent,  // A fraction shown as a percentage: 0.875 -> "87.5%".
};

struct SeriesPoint {
  double x = 0;
  std::optional<double> y;  // Finite; unset for a gap in the line.
};

// One line of a panel: a polyline through the points (broken at gaps) with a
// marker on each point.
struct Series {
  std::string name;  // Legend label; ASCII.
  Rgb color;
  LineStyle style = LineStyle::kSolid;
  std::vector<SeriesPoint> points;  // Ascending x.
};

// One chart: axes, a grid, the series and their legend. The y range is
// chosen from the data (rounded out to tick steps) and then clamped to
// [y_floor, y_ceiling] when those are set.
struct Panel {
  std::string title;  // Drawn above the plot area; ASCII.
  ValueFormat y_format = ValueFormat::kNumber;
  std::optional<double> y_floor;
  std::optional<double> y_ceiling;
  std::vector<Series> series;  // A panel without points says "no data".
};

// Panels stacked top to bottom under a title, sharing the x axis label.
// Sizes are clamped to [240, 4096] pixels (SVG user units).
struct Figure {
  std::string title;  // ASCII; shortened with "..." when too wide.
  std::string x_label = "round";
  std::vector<Panel> panels;
  int width_px = 960;
  int height_px = 720;
};

// The figure for a run: an accuracy panel (test, train and federated-eval
// accuracy that the history has, in [0, 1], shown as percent) over a loss
// panel (test, train and federated-eval loss), titled "<name>: N rounds, best
// test accuracy 86.1% at round 37" (the best part when there is a test
// accuracy). Series whose column is absent or entirely empty are left out.
// A line breaks (a gap) where values are missing between rounds more than
// 1.5 times the column's median spacing apart, i.e. where a round that should
// have been evaluated was not; a column filled every k rounds by design
// (eval_every_rounds) is drawn as one line through its values.
Figure HistoryFigure(const History& history, absl::string_view name);

// ---------------------------------------------------------------------------
// Rendering.

// A standalone SVG 1.1 document (no external assets or scripts). Each series
// is one <g class="series" data-name="..."> holding its <polyline>s (one per
// run of points without gaps) and, when the plot area leaves at least 5 px
// per point, one <circle> per point.
std::string RenderSvg(const Figure& figure);

// An 8-bit RGB PNG of the same picture, its pixels deflated at zlib's
// `compression_level` (clamped to [0, 9]): 9, the smallest file, by
// default; 1 is many times faster (the fuzzer renders thousands a second).
// INTERNAL if zlib fails.
absl::StatusOr<std::string> RenderPng(const Figure& figure,
                                      int compression_level = 9);

enum class PlotFormat { kPng, kSvg };

// The format for an output path by its extension (.png or .svg, any case).
// INVALID_ARGUMENT otherwise, naming the path and the accepted extensions.
absl::StatusOr<PlotFormat> PlotFormatForPath(absl::string_view path);

}  // namespace fedge

#endif  // FEDGE_COMMON_PLOT_H_
