// Internal to common/plot: paints a Scene into an RGB framebuffer and encodes
// it as PNG. Hand-written because Debian has no small C++ plotting library we
// want as a dependency, and what a chart needs is little: anti-aliased thick
// polylines with round caps and dashes, discs, axis-aligned rectangles, and
// text in an embedded 5x9 bitmap font (printable ASCII, drawn at an integer
// scale). PNG output is 8-bit RGB, one IDAT compressed with zlib, CRCs from
// zlib's crc32.
//
// Canvas is a value type, thread-compatible; the functions are thread-safe.
#ifndef FEDGE_COMMON_PLOT_RASTER_H_
#define FEDGE_COMMON_PLOT_RASTER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/plot.h"
#include "common/plot_scene.h"

namespace fedge::plot_internal {

// The glyph of `c` as 9 rows (top to bottom) of 5 bits (bit 4 leftmost);
// rows 0..6 stand on the baseline, rows 7..8 are descenders. Characters
// outside 32..126 get a box.
const uint8_t* Glyph(char c);

class Canvas {
 public:
  // A `width` x `height` image filled with `background`. Both must be > 0.
  Canvas(int width, int height, Rgb background);

  int width() const { return width_; }
  int height() const { return height_; }
  // Row-major RGB bytes, 3 per pixel, no padding.
  const std::vector<uint8_t>& rgb() const { return rgb_; }
  Rgb Pixel(int x, int y) const;

  // Coordinates are in pixels with (0, 0) the top-left corner of the top-left
  // pixel; everything is clipped to the image.

  // Fills the rectangle; partly covered edge pixels are blended.
  void FillRect(double x, double y, double w, double h, Rgb color);
  // Strokes a polyline `width` pixels wide with round caps and joins.
  // `dash` alternates on and off lengths along the line (empty: solid).
  void StrokePolyline(const std::vector<Vec2>& points, double width,
                      const std::vector<double>& dash, Rgb color);
  void FillDisc(Vec2 center, double radius, Rgb color);
  // Draws printable ASCII with its baseline at `baseline.y`, each font unit
  // `scale` x `scale` pixels; `bold` doubles the vertical strokes.
  void DrawText(Vec2 baseline, absl::string_view text, int scale, Anchor anchor,
                Rgb color, bool bold);

 private:
  // Mixes `color` into pixel (x, y) by `coverage` in [0, 1].
  void Blend(int x, int y, Rgb color, double coverage);

  int width_, height_;
  std::vector<uint8_t> rgb_;
};

// Paints every item of `scene` in order onto a new canvas.
Canvas PaintScene(const Scene& scene);

// A PNG file of `canvas`, deflated at zlib's `compression_level` (clamped
// to [0, 9]). INTERNAL if zlib fails.
absl::StatusOr<std::string> EncodePng(const Canvas& canvas,
                                      int compression_level = 9);

}  // namespace fedge::plot_internal

#endif  // FEDGE_COMMON_PLOT_RASTER_H_
