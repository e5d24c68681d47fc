#include "common/plot.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/plot_raster.h"
#include "common/plot_scene.h"
#include "common/status_macros.h"

namespace fedge {

const char* const kPlottedHistoryColumns[6] = {
    "train_loss",    "train_accuracy", "test_loss",
    "test_accuracy", "fed_eval_loss",  "fed_eval_accuracy"};

namespace {

constexpr int64_t kMaxHistoryBytes = int64_t{256} << 20;

using Row = std::vector<std::optional<double>>;  // Plotted columns only.

// Where the columns we read sit in a line.
struct Columns {
  size_t count = 0;  // Cells per line.
  size_t round = 0;
  std::vector<std::pair<std::string, size_t>> plotted;  // Name, index.
};

std::vector<absl::string_view> SplitCells(absl::string_view line) {
  std::vector<absl::string_view> cells = absl::StrSplit(line, ',');
  for (auto& cell : cells) cell = absl::StripAsciiWhitespace(cell);
  return cells;
}

absl::StatusOr<Columns> ParseHeader(absl::string_view line,
                                    absl::string_view source) {
  const std::vector<absl::string_view> names = SplitCells(line);
  Columns columns;
  columns.count = names.size();
  std::optional<size_t> round;
  for (size_t i = 0; i < names.size(); ++i) {
    if (std::find(names.begin(), names.begin() + i, names[i]) !=
        names.begin() + i) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ":1: column '", names[i], "' appears twice in the header"));
    }
    if (names[i] == "round") round = i;
    for (const char* plotted : kPlottedHistoryColumns) {
      if (names[i] == plotted) columns.plotted.emplace_back(plotted, i);
    }
  }
  if (!round.has_value() || columns.plotted.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":1: the header (", line.substr(0, 100),
                     ") needs a 'round' column and one of ",
                     absl::StrJoin(kPlottedHistoryColumns, ", "),
                     "; is this a history file (fedge-sim --history_out, or "
                     "history.csv in fedge-coordinator's --state_dir)?"));
  }
  columns.round = *round;
  return columns;
}

absl::Status CellError(absl::string_view source, size_t line_number,
                       size_t column, absl::string_view name,
                       absl::string_view cell, absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s:%d: column %d (%s): '%s' is not %s; fix the cell or leave it empty",
      source, line_number, column + 1, name, cell, expected));
}

// Parses one data line into its round and plotted values.
absl::Status ParseLine(absl::string_view line, size_t line_number,
                       const Columns& columns, absl::string_view source,
                       int64_t* round, Row* row) {
  const std::vector<absl::string_view> cells = SplitCells(line);
  if (cells.size() != columns.count) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s:%d: %d cells but the header has %d columns; repair or delete the "
        "line",
        source, line_number, cells.size(), columns.count));
  }
  if (!absl::SimpleAtoi(cells[columns.round], round)) {
    return CellError(source, line_number, columns.round, "round",
                     cells[columns.round], "a whole number");
  }
  row->clear();
  for (const auto& [name, index] : columns.plotted) {
    double v = 0;
    if (cells[index].empty()) {
      row->push_back(std::nullopt);
    } else if (!absl::SimpleAtod(cells[index], &v)) {
      return CellError(source, line_number, index, name, cells[index],
                       "a number");
    } else {
      row->push_back(std::isfinite(v) ? std::optional<double>(v)
                                      : std::nullopt);
    }
  }
  return absl::OkStatus();
}

// Series of a history figure, in legend order.
struct SeriesSpec {
  const char* column;
  const char* label;
  Rgb color;
  LineStyle style;
};

constexpr Rgb kBlue{31, 119, 180}, kOrange{255, 127, 14}, kGreen{44, 160, 44};

// The points of one column. Rounds without a value are skipped where the
// column is sparse by design (evaluated every k rounds): a gap is kept only
// between values more than 1.5 times the column's (lower) median spacing apart.
std::vector<SeriesPoint> SeriesPoints(
    const std::vector<int64_t>& rounds,
    const std::vector<std::optional<double>>& column) {
  std::vector<size_t> present;
  for (size_t i = 0; i < column.size(); ++i) {
    if (column[i].has_value()) present.push_back(i);
  }
  std::vector<int64_t> spacing;
  for (size_t k = 1; k < present.size(); ++k) {
    spacing.push_back(rounds[present[k]] - rounds[present[k - 1]]);
  }
  std::sort(spacing.begin(), spacing.end());
  const double usual = spacing.empty() ? 1 : spacing[(spacing.size() - 1) / 2];
  std::vector<SeriesPoint> points;
  for (size_t k = 0; k < present.size(); ++k) {
    const auto x = static_cast<double>(rounds[present[k]]);
    if (k > 0 && x - points.back().x > 1.5 * usual) {
      points.push_back({rounds[present[k] - 1] * 1.0, std::nullopt});
    }
    points.push_back({x, column[present[k]]});
  }
  return points;
}

Panel HistoryPanel(const History& history, const char* title,
                   const std::vector<SeriesSpec>& specs) {
  Panel panel;
  panel.title = title;
  panel.y_floor = 0;
  for (const SeriesSpec& spec : specs) {
    const auto* column = history.Column(spec.column);
    if (column == nullptr ||
        std::none_of(column->begin(), column->end(),
                     [](const auto& v) { return v.has_value(); })) {
      continue;
    }
    panel.series.push_back({spec.label, spec.color, spec.style,
                            SeriesPoints(history.rounds, *column)});
  }
  return panel;
}

std::string HistoryTitle(const History& history, absl::string_view name) {
  const size_t n = history.rounds.size();
  std::string title =
      absl::StrCat(name, ": ", n, n == 1 ? " round" : " rounds");
  const auto* accuracy = history.Column("test_accuracy");
  if (accuracy == nullptr) return title;
  std::optional<size_t> best;
  for (size_t i = 0; i < accuracy->size(); ++i) {
    if ((*accuracy)[i] && (!best || *(*accuracy)[i] > *(*accuracy)[*best])) {
      best = i;
    }
  }
  if (!best) return title;
  return absl::StrFormat("%s, best test accuracy %.1f%% at round %d", title,
                         *(*accuracy)[*best] * 100, history.rounds[*best]);
}

// ---------------------------------------------------------------------------
// SVG.

std::string Escape(absl::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        // Keep the document valid XML 1.0 whatever the file name holds.
        out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
    }
  }
  return out;
}

std::string Hex(Rgb c) {
  return absl::StrFormat("#%02x%02x%02x", c.r, c.g, c.b);
}

std::string Num(double v) {
  std::string s = absl::StrFormat("%.2f", v);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

struct SvgWriter {
  std::string out;

  void operator()(const plot_internal::RectItem& r) {
    absl::StrAppend(&out, "<rect x=\"", Num(r.x), "\" y=\"", Num(r.y),
                    "\" width=\"", Num(r.w), "\" height=\"", Num(r.h),
                    "\" fill=\"", Hex(r.fill), "\"/>\n");
  }
  void operator()(const plot_internal::LineItem& l) {
    std::vector<std::string> points;
    for (const auto& p : l.points) points.push_back(Num(p.x) + "," + Num(p.y));
    absl::StrAppend(&out, "<polyline points=\"", absl::StrJoin(points, " "),
                    "\" fill=\"none\" stroke=\"", Hex(l.color),
                    "\" stroke-width=\"", Num(l.width),
                    "\" stroke-linecap=\"round\" stroke-linejoin=\"round\"");
    const std::vector<double> dash =
        plot_internal::DashPattern(l.style, l.width);
    if (!dash.empty()) {
      std::vector<std::string> lengths;
      for (double d : dash) lengths.push_back(Num(d));
      absl::StrAppend(&out, " stroke-dasharray=\"", absl::StrJoin(lengths, " "),
                      "\"");
    }
    out += "/>\n";
  }
  void operator()(const plot_internal::MarkerItem& m) {
    absl::StrAppend(&out, "<circle cx=\"", Num(m.center.x), "\" cy=\"",
                    Num(m.center.y), "\" r=\"", Num(m.radius), "\" fill=\"",
                    Hex(m.color), "\"/>\n");
  }
  void operator()(const plot_internal::TextItem& t) {
    static constexpr const char* kAnchors[] = {"start", "middle", "end"};
    absl::StrAppend(&out, "<text x=\"", Num(t.baseline.x), "\" y=\"",
                    Num(t.baseline.y), "\" font-size=\"", 10 * t.scale,
                    "\" fill=\"", Hex(t.color), "\" text-anchor=\"",
                    kAnchors[static_cast<int>(t.anchor)], "\"",
                    t.bold ? " font-weight=\"bold\"" : "", ">", Escape(t.text),
                    "</text>\n");
  }
};

// The data series an item belongs to ("" for axes, legend and text).
std::pair<std::string, std::string> SeriesOf(const plot_internal::Item& item) {
  if (const auto* l = std::get_if<plot_internal::LineItem>(&item)) {
    return {l->panel, l->series};
  }
  if (const auto* m = std::get_if<plot_internal::MarkerItem>(&item)) {
    return {m->panel, m->series};
  }
  return {"", ""};
}

}  // namespace

const std::vector<std::optional<double>>* History::Column(
    absl::string_view name) const {
  auto it = values.find(name);
  return it == values.end() ? nullptr : &it->second;
}

absl::StatusOr<History> ParseHistoryCsv(absl::string_view csv,
                                        absl::string_view source) {
  std::vector<absl::string_view> lines = absl::StrSplit(csv, '\n');
  for (auto& line : lines) absl::ConsumeSuffix(&line, "\r");
  absl::ConsumePrefix(&lines[0], "\xEF\xBB\xBF");  // A UTF-8 byte order mark.
  if (absl::StripAsciiWhitespace(csv).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source,
        " is empty; expected a history CSV with a header line "
        "starting 'round,' (fedge-sim --history_out, or history.csv in "
        "fedge-coordinator's --state_dir)"));
  }
  ASSIGN_OR_RETURN(const Columns columns, ParseHeader(lines[0], source));
  std::map<int64_t, Row> rows;  // The last line of each round wins.
  for (size_t i = 1; i < lines.size(); ++i) {
    if (absl::StripAsciiWhitespace(lines[i]).empty()) continue;
    int64_t round = 0;
    Row row;
    RETURN_IF_ERROR(ParseLine(lines[i], i + 1, columns, source, &round, &row));
    rows[round] = std::move(row);
  }
  if (rows.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(source,
                     " has a header but no rounds yet; plot it after "
                     "the first round has finished"));
  }
  History history;
  for (const auto& [name, index] : columns.plotted) history.values[name];
  for (const auto& [round, row] : rows) {
    history.rounds.push_back(round);
    for (size_t c = 0; c < columns.plotted.size(); ++c) {
      history.values[columns.plotted[c].first].push_back(row[c]);
    }
  }
  return history;
}

absl::StatusOr<History> ReadHistoryFile(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text,
                   ReadSmallFile(path, kMaxHistoryBytes));
  return ParseHistoryCsv(text, path);
}

Figure HistoryFigure(const History& history, absl::string_view name) {
  Figure figure;
  figure.title = HistoryTitle(history, name);
  Panel accuracy = HistoryPanel(
      history, "Accuracy",
      {{"test_accuracy", "test", kBlue, LineStyle::kSolid},
       {"train_accuracy", "train", kOrange, LineStyle::kDashed},
       {"fed_eval_accuracy", "federated eval", kGreen, LineStyle::kDotted}});
  accuracy.y_format = ValueFormat::kPercent;
  accuracy.y_ceiling = 1;
  Panel loss = HistoryPanel(
      history, "Loss",
      {{"test_loss", "test", kBlue, LineStyle::kSolid},
       {"train_loss", "train", kOrange, LineStyle::kDashed},
       {"fed_eval_loss", "federated eval", kGreen, LineStyle::kDotted}});
  figure.panels = {std::move(accuracy), std::move(loss)};
  return figure;
}

std::string RenderSvg(const Figure& figure) {
  const plot_internal::Scene scene = plot_internal::LayoutFigure(figure);
  SvgWriter svg;
  absl::StrAppend(
      &svg.out,
      "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"",
      scene.width, "\" height=\"", scene.height, "\" viewBox=\"0 0 ",
      scene.width, " ", scene.height,
      "\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\">\n",
      "<title>", Escape(figure.title), "</title>\n", "<rect width=\"",
      scene.width, "\" height=\"", scene.height, "\" fill=\"",
      Hex(scene.background), "\"/>\n");
  std::pair<std::string, std::string> group;  // Open <g>: (panel, series).
  for (const plot_internal::Item& item : scene.items) {
    const auto series = SeriesOf(item);
    if (series != group) {
      if (!group.second.empty()) svg.out += "</g>\n";
      if (!series.second.empty()) {
        absl::StrAppend(&svg.out, "<g class=\"series\" data-panel=\"",
                        Escape(series.first), "\" data-name=\"",
                        Escape(series.second), "\">\n");
      }
      group = series;
    }
    std::visit(svg, item);
  }
  if (!group.second.empty()) svg.out += "</g>\n";
  svg.out += "</svg>\n";
  return std::move(svg.out);
}

absl::StatusOr<std::string> RenderPng(const Figure& figure,
                                      int compression_level) {
  return plot_internal::EncodePng(
      plot_internal::PaintScene(plot_internal::LayoutFigure(figure)),
      compression_level);
}

absl::StatusOr<PlotFormat> PlotFormatForPath(absl::string_view path) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".png")) return PlotFormat::kPng;
  if (absl::EndsWith(lower, ".svg")) return PlotFormat::kSvg;
  return absl::InvalidArgumentError(
      absl::StrCat("'", path,
                   "' ends neither in .png nor in .svg; name the "
                   "output FILE.png or FILE.svg"));
}

}  // namespace fedge
