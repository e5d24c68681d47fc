#include "common/plot_scene.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fedge::plot_internal {
namespace {

constexpr int kTextScale = 2;
constexpr int kTextHeight = kGlyphCapHeight * kTextScale;
constexpr int kMargin = 16;
constexpr int kPanelGap = 14;
constexpr int kTickLength = 5;
constexpr int kMinLabelGap = 60;  // Between x tick labels, in pixels.
constexpr double kLineWidth = 2.5;
constexpr double kMarkerRadius = 3.5;
constexpr double kMinPixelsPerMarker = 5;
constexpr Rgb kTextColor{34, 34, 34};
constexpr Rgb kAxisColor{90, 90, 90};
constexpr Rgb kGridColor{228, 228, 228};
constexpr Rgb kMutedColor{120, 120, 120};
constexpr Rgb kWhite{255, 255, 255};

struct Box {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool Contains(Vec2 p) const {
    return p.x >= x0 && p.x <= x1 && p.y >= y0 && p.y <= y1;
  }
};

struct Axis {
  double lo = 0, hi = 1;
  std::vector<double> ticks;
  double step = 1;
  ValueFormat format = ValueFormat::kNumber;
};

// A panel's plot area and the data ranges it shows.
struct Frame {
  Box px;
  Axis x, y;
  Vec2 Map(double xv, double yv) const {
    return {px.x0 + (xv - x.lo) / (x.hi - x.lo) * (px.x1 - px.x0),
            px.y1 - (yv - y.lo) / (y.hi - y.lo) * (px.y1 - px.y0)};
  }
};

double TickStep(const std::vector<double>& ticks, double fallback) {
  return ticks.size() >= 2 ? ticks[1] - ticks[0] : fallback;
}

// The range of a panel's y values; nullopt when it has none.
std::optional<std::pair<double, double>> YExtent(const Panel& panel) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const Series& s : panel.series) {
    for (const SeriesPoint& p : s.points) {
      if (!p.y.has_value()) continue;
      lo = std::min(lo, *p.y);
      hi = std::max(hi, *p.y);
    }
  }
  if (lo > hi) return std::nullopt;
  return std::make_pair(lo, hi);
}

Axis MakeYAxis(const Panel& panel, int max_ticks) {
  auto extent = YExtent(panel);
  double lo = extent ? extent->first : 0, hi = extent ? extent->second : 1;
  if (lo == hi) {
    const double pad = panel.y_format == ValueFormat::kPercent ? 0.05
                       : lo != 0 ? std::abs(lo) / 10
                                 : 1;
    lo -= pad;
    hi += pad;
  }
  Axis axis;
  axis.format = panel.y_format;
  axis.ticks = NiceTicks(lo, hi, max_ticks, /*expand=*/true, false);
  axis.step = TickStep(axis.ticks, hi - lo);
  axis.lo = axis.ticks.front();
  axis.hi = axis.ticks.back();
  // Clamp the rounded-out range (not the data) to the panel's limits.
  if (panel.y_floor && lo >= *panel.y_floor) {
    axis.lo = std::max(axis.lo, *panel.y_floor);
  }
  if (panel.y_ceiling && hi <= *panel.y_ceiling) {
    axis.hi = std::min(axis.hi, *panel.y_ceiling);
  }
  const double eps = axis.step * 1e-6;
  axis.ticks.erase(
      std::remove_if(
          axis.ticks.begin(), axis.ticks.end(),
          [&](double t) { return t < axis.lo - eps || t > axis.hi + eps; }),
      axis.ticks.end());
  return axis;
}

// The x range of all panels' points (rounds), padded so that the end markers
// clear the frame.
Axis MakeXAxis(const Figure& figure, double plot_width) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const Panel& panel : figure.panels) {
    for (const Series& s : panel.series) {
      for (const SeriesPoint& p : s.points) {
        lo = std::min(lo, p.x);
        hi = std::max(hi, p.x);
      }
    }
  }
  if (lo > hi) lo = 0, hi = 1;
  if (lo == hi) lo -= 1, hi += 1;
  const double pad = std::max(0.5, (hi - lo) * 0.02);
  Axis axis;
  axis.lo = lo - pad;
  axis.hi = hi + pad;
  const size_t widest =
      std::max(FormatTick(lo, 1, ValueFormat::kNumber).size(),
               FormatTick(hi, 1, ValueFormat::kNumber).size());
  const double label_px =
      TextWidth(std::string(widest, '0'), kTextScale) + kMinLabelGap;
  const int max_ticks = std::max(2, static_cast<int>(plot_width / label_px));
  axis.ticks = NiceTicks(lo, hi, max_ticks, /*expand=*/false, /*integer=*/true);
  axis.step = TickStep(axis.ticks, 1);
  return axis;
}

void AddRect(Scene* scene, double x, double y, double w, double h, Rgb fill) {
  scene->items.emplace_back(RectItem{x, y, w, h, fill});
}

void AddText(Scene* scene, Vec2 at, std::string text, Anchor anchor, Rgb color,
             bool bold = false) {
  scene->items.emplace_back(
      TextItem{at, std::move(text), kTextScale, color, anchor, bold});
}

// Grid lines, frame, ticks and tick labels of a panel.
void DrawAxes(const Frame& f, Scene* scene) {
  const Box& b = f.px;
  AddRect(scene, b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0, kWhite);
  for (double t : f.y.ticks) {
    const double y = std::round(f.Map(f.x.lo, t).y);
    AddRect(scene, b.x0, y, b.x1 - b.x0, 1, kGridColor);
    AddRect(scene, b.x0 - kTickLength, y, kTickLength, 1, kAxisColor);
    AddText(scene, {b.x0 - kTickLength - 5, y + kTextHeight / 2.0},
            FormatTick(t, f.y.step, f.y.format), Anchor::kEnd, kTextColor);
  }
  for (double t : f.x.ticks) {
    const double x = std::round(f.Map(t, f.y.lo).x);
    AddRect(scene, x, b.y0, 1, b.y1 - b.y0, kGridColor);
    AddRect(scene, x, b.y1, 1, kTickLength, kAxisColor);
    AddText(scene, {x + 0.5, b.y1 + kTickLength + 4 + kTextHeight},
            FormatTick(t, f.x.step, ValueFormat::kNumber), Anchor::kMiddle,
            kTextColor);
  }
  AddRect(scene, b.x0, b.y0, b.x1 - b.x0 + 1, 1, kAxisColor);
  AddRect(scene, b.x0, b.y1, b.x1 - b.x0 + 1, 1, kAxisColor);
  AddRect(scene, b.x0, b.y0, 1, b.y1 - b.y0, kAxisColor);
  AddRect(scene, b.x1, b.y0, 1, b.y1 - b.y0, kAxisColor);
}

// Pixel polylines, e.g. of one series (one per run of points without gaps).
using Polylines = std::vector<std::vector<Vec2>>;

Polylines SeriesRuns(const Series& series, const Frame& f) {
  Polylines runs(1);
  for (const SeriesPoint& p : series.points) {
    if (p.y.has_value()) {
      runs.back().push_back(f.Map(p.x, *p.y));
    } else if (!runs.back().empty()) {
      runs.emplace_back();
    }
  }
  if (runs.back().empty()) runs.pop_back();
  return runs;
}

// Whether a series gets a marker on each point: when they do not crowd.
bool WantsMarkers(const Series& series, const Frame& f) {
  return f.px.x1 - f.px.x0 >=
         kMinPixelsPerMarker * static_cast<double>(series.points.size());
}

void DrawSeries(const std::string& panel, const Series& series,
                const Polylines& runs, bool markers, Scene* scene) {
  for (const auto& run : runs) {
    if (run.size() >= 2) {
      scene->items.emplace_back(LineItem{run, series.color, kLineWidth,
                                         series.style, panel, series.name});
    }
  }
  for (const auto& run : runs) {
    if (!markers && run.size() >= 2) continue;  // A lone point needs one.
    for (Vec2 p : run) {
      scene->items.emplace_back(
          MarkerItem{p, kMarkerRadius, series.color, panel, series.name});
    }
  }
}

// How many sampled points of the lines fall into `box`.
int Overlap(const std::vector<Polylines>& all_runs, const Box& box) {
  int hits = 0;
  for (const auto& runs : all_runs) {
    for (const auto& run : runs) {
      for (size_t i = 0; i < run.size(); ++i) {
        hits += box.Contains(run[i]);
        if (i == 0) continue;
        for (int k = 1; k < 8; ++k) {
          const double t = k / 8.0;
          hits += box.Contains({run[i - 1].x + t * (run[i].x - run[i - 1].x),
                                run[i - 1].y + t * (run[i].y - run[i - 1].y)});
        }
      }
    }
  }
  return hits;
}

// A legend in the corner of the plot area that covers the fewest data.
void DrawLegend(const Panel& panel, const Frame& f,
                const std::vector<Polylines>& all_runs, Scene* scene) {
  constexpr double kPad = 8, kRow = 22, kSwatch = 30, kInset = 10;
  double text_w = 0;
  for (const Series& s : panel.series) {
    text_w = std::max(text_w, TextWidth(s.name, kTextScale));
  }
  const double w = std::round(kPad + kSwatch + kPad + text_w + kPad + 2);
  const double h = std::round(2 * kPad + kRow * panel.series.size() - 6);
  const Box& b = f.px;
  const double left = b.x0 + kInset, right = b.x1 - kInset - w;
  const double top = b.y0 + kInset, bottom = b.y1 - kInset - h;
  const double center = std::round((b.x0 + b.x1 - w) / 2);
  const Vec2 candidates[] = {{right, top},   {right, bottom}, {left, top},
                             {left, bottom}, {center, top},   {center, bottom}};
  Vec2 at = candidates[0];
  int best = std::numeric_limits<int>::max();
  for (Vec2 c : candidates) {
    const int hits =
        Overlap(all_runs, {c.x - 4, c.y - 4, c.x + w + 4, c.y + h + 4});
    if (hits < best) best = hits, at = c;
  }
  at = {std::round(at.x), std::round(at.y)};
  AddRect(scene, at.x, at.y, w, h, {200, 200, 200});
  AddRect(scene, at.x + 1, at.y + 1, w - 2, h - 2, kWhite);
  for (size_t i = 0; i < panel.series.size(); ++i) {
    const Series& s = panel.series[i];
    const double mid = at.y + kPad + 5 + kRow * i + 2;
    const Vec2 a{at.x + kPad, mid}, z{at.x + kPad + kSwatch, mid};
    scene->items.emplace_back(
        LineItem{{a, z}, s.color, kLineWidth, s.style, "", ""});
    if (WantsMarkers(s, f)) {
      scene->items.emplace_back(
          MarkerItem{{(a.x + z.x) / 2, mid}, kMarkerRadius, s.color, "", ""});
    }
    AddText(scene, {z.x + kPad, mid + kTextHeight / 2.0}, s.name,
            Anchor::kStart, kTextColor);
  }
}

void DrawPanel(const Panel& panel, const Frame& f, Scene* scene) {
  DrawAxes(f, scene);
  AddText(scene, {f.px.x0, f.px.y0 - 8}, panel.title, Anchor::kStart,
          kTextColor, /*bold=*/true);
  std::vector<Polylines> all_runs;
  for (const Series& s : panel.series) all_runs.push_back(SeriesRuns(s, f));
  if (!YExtent(panel).has_value()) {
    AddText(scene, {(f.px.x0 + f.px.x1) / 2, (f.px.y0 + f.px.y1) / 2},
            "no data", Anchor::kMiddle, kMutedColor);
    return;
  }
  // The first series (listed first in the legend) is painted last, on top.
  for (size_t i = panel.series.size(); i-- > 0;) {
    DrawSeries(panel.title, panel.series[i], all_runs[i],
               WantsMarkers(panel.series[i], f), scene);
  }
  DrawLegend(panel, f, all_runs, scene);
}

// `text` shortened with "..." to at most `width` pixels.
std::string FitText(const std::string& text, double width) {
  const size_t max_chars =
      static_cast<size_t>(std::max(0.0, width / (kGlyphAdvance * kTextScale)));
  if (text.size() <= max_chars) return text;
  if (max_chars <= 3) return "";
  return text.substr(0, max_chars - 3) + "...";
}

}  // namespace

std::vector<double> DashPattern(LineStyle style, double width) {
  switch (style) {
    case LineStyle::kSolid:
      return {};
    // Lines have round caps, which add `width` to each dash.
    case LineStyle::kDashed:
      return {3 * width, 3 * width};
    case LineStyle::kDotted:
      return {0.1, 2.2 * width};
  }
  return {};
}

std::vector<double> NiceTicks(double lo, double hi, int max_ticks, bool expand,
                              bool integer) {
  max_ticks = std::max(max_ticks, 2);
  const double raw = (hi - lo) / (max_ticks - 1);
  if (!(raw > 0) || !std::isfinite(raw)) return {lo, hi};  // Not a range.
  double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (;; magnitude *= 10) {
    for (double m : {1.0, 2.0, 2.5, 5.0}) {
      const double step = m * magnitude;
      if (integer && step != std::round(step)) continue;
      const double eps = 1e-9;
      const double first =
          expand ? std::floor(lo / step + eps) : std::ceil(lo / step - eps);
      const double last =
          expand ? std::ceil(hi / step - eps) : std::floor(hi / step + eps);
      if (last - first + 1 > max_ticks) continue;
      std::vector<double> ticks;
      // Counted, not stepped: k + 1 == k for huge k.
      for (int i = 0; i <= static_cast<int>(last - first); ++i) {
        ticks.push_back((first + i) * step);
      }
      return ticks;
    }
  }
}

std::string FormatTick(double value, double step, ValueFormat format) {
  const bool percent = format == ValueFormat::kPercent;
  if (percent) value *= 100, step *= 100;
  int decimals = 0;
  for (double scaled = std::abs(step);
       decimals < 6 &&
       std::abs(scaled - std::round(scaled)) > 1e-6 * std::max(1.0, scaled);
       scaled *= 10) {
    ++decimals;
  }
  if (std::abs(value) < std::abs(step) * 1e-9) value = 0;  // No "-0".
  return absl::StrFormat("%.*f%s", decimals, value, percent ? "%" : "");
}

Scene LayoutFigure(const Figure& figure) {
  Scene scene;
  scene.width = std::clamp(figure.width_px, 240, 4096);
  scene.height = std::clamp(figure.height_px, 240, 4096);
  const double title_baseline = kMargin + kTextHeight;
  AddText(&scene, {scene.width / 2.0, title_baseline},
          FitText(figure.title, scene.width - 2 * kMargin), Anchor::kMiddle,
          kTextColor, /*bold=*/true);
  const double x_label_baseline = scene.height - kMargin + 4;
  const int n = std::max<int>(1, figure.panels.size());
  const double top = title_baseline + 20;
  const double bottom = x_label_baseline - kTextHeight - 8;
  const double panel_h = (bottom - top - kPanelGap * (n - 1)) / n;
  // Plot areas: below each panel's title, above its x tick labels.
  const double header = kTextHeight + 14,
               footer = kTickLength + kTextHeight + 12;
  const int max_y_ticks =
      std::max(3, static_cast<int>((panel_h - header - footer) / 32));
  std::vector<Axis> y_axes;
  double label_w = 0;
  for (const Panel& panel : figure.panels) {
    y_axes.push_back(MakeYAxis(panel, max_y_ticks));
    for (double t : y_axes.back().ticks) {
      label_w = std::max(
          label_w, TextWidth(FormatTick(t, y_axes.back().step, panel.y_format),
                             kTextScale));
    }
  }
  const double x0 = std::round(kMargin + label_w + kTickLength + 6);
  const double x1 = scene.width - kMargin - 12;
  const Axis x_axis = MakeXAxis(figure, x1 - x0);
  AddText(&scene, {(x0 + x1) / 2, x_label_baseline}, figure.x_label,
          Anchor::kMiddle, kTextColor);
  for (size_t i = 0; i < figure.panels.size(); ++i) {
    const double panel_top = top + i * (panel_h + kPanelGap);
    Frame frame;
    frame.px = {x0, std::round(panel_top + header), x1,
                std::round(panel_top + panel_h - footer)};
    frame.x = x_axis;
    frame.y = y_axes[i];
    DrawPanel(figure.panels[i], frame, &scene);
  }
  return scene;
}

}  // namespace fedge::plot_internal
