// Internal to common/plot: the layout of a Figure as a list of drawing
// primitives in pixel coordinates (y down), which the SVG writer and the
// rasterizer both paint in order. Layout decisions (margins, ticks, legend
// placement, text sizes) live here once, so both outputs agree.
//
// Text metrics are those of the bitmap font in plot_raster.h: a glyph cell of
// kGlyphAdvance x kGlyphCapHeight units, scaled by an integer; the SVG uses a
// monospace font of 10 units per em, which has the same advance.
//
// Stateless functions on values; thread-safe.
#ifndef FEDGE_COMMON_PLOT_SCENE_H_
#define FEDGE_COMMON_PLOT_SCENE_H_

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/plot.h"

namespace fedge::plot_internal {

// Font metrics in font units (pixels at scale 1).
inline constexpr int kGlyphAdvance = 6;    // Cell width, 1 unit of spacing.
inline constexpr int kGlyphCapHeight = 7;  // Baseline to the top of capitals.
inline constexpr int kGlyphDescent = 2;    // Below the baseline (g, p, y).

struct Vec2 {
  double x = 0, y = 0;
};

struct RectItem {  // Filled; integer coordinates paint crisp edges.
  double x = 0, y = 0, w = 0, h = 0;
  Rgb fill;
};

// A polyline with round caps and joins.
struct LineItem {
  std::vector<Vec2> points;  // At least two.
  Rgb color;
  double width = 1;
  LineStyle style = LineStyle::kSolid;
  // The data series it draws (panel title, series name); empty for others.
  std::string panel, series;
};

struct MarkerItem {  // A filled disc.
  Vec2 center;
  double radius = 3;
  Rgb color;
  std::string panel, series;
};

enum class Anchor { kStart, kMiddle, kEnd };

struct TextItem {
  Vec2 baseline;     // Where `anchor` of the baseline sits.
  std::string text;  // Printable ASCII.
  int scale = 2;
  Rgb color;
  Anchor anchor = Anchor::kStart;
  bool bold = false;
};

using Item = std::variant<RectItem, LineItem, MarkerItem, TextItem>;

struct Scene {
  int width = 0, height = 0;
  Rgb background{255, 255, 255};
  std::vector<Item> items;  // Painted in order.
};

// The dash pattern of a style for a line of `width`: alternating on and off
// lengths in pixels, empty for solid.
std::vector<double> DashPattern(LineStyle style, double width);

// Width in pixels of `text` at `scale`.
inline double TextWidth(absl::string_view text, int scale) {
  return static_cast<double>(text.size() * kGlyphAdvance * scale - scale);
}

// Tick values for an axis: the multiples of a step of 1, 2, 2.5 or 5 times a
// power of ten, the smallest such step that gives at most `max_ticks` (>= 2)
// ticks; they cover [lo, hi] when `expand` (the first tick <= lo, the last
// >= hi), else lie within it (possibly none). `integer` forces whole-number
// steps. Requires finite lo < hi.
std::vector<double> NiceTicks(double lo, double hi, int max_ticks, bool expand,
                              bool integer);

// The label of a tick value, with the fewest decimals that tell steps of
// `step` apart ("0.25", "10", "87.5%" for 0.875 as kPercent).
std::string FormatTick(double value, double step, ValueFormat format);

// Lays the figure out.
Scene LayoutFigure(const Figure& figure);

}  // namespace fedge::plot_internal

#endif  // FEDGE_COMMON_PLOT_SCENE_H_
