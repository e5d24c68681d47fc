#include "common/plot.h"

#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/plot_raster.h"
#include "common/plot_scene.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

constexpr char kHeader[] =
    "round,num_agents,num_failed,num_examples,train_loss,train_accuracy,"
    "test_loss,test_accuracy,train_seconds,round_seconds";

// A four-round history as fedge-coordinator writes it (with byte counts);
// round 3 was not evaluated.
std::string SmallHistory() {
  return absl::StrCat(kHeader,
                      ",bytes_received,bytes_sent\n"
                      "1,3,0,300,1.200000,0.600000,1.100000,0.650000,1.0,1.5,"
                      "10,20\n"
                      "2,3,0,300,0.900000,0.700000,0.800000,0.861000,1.0,1.5,"
                      "10,20\n"
                      "3,3,0,300,0.700000,0.800000,,,1.0,1.5,10,20\n"
                      "4,2,1,200,0.500000,0.850000,0.600000,0.840000,1.0,1.5,"
                      "10,20\n");
}

History ParseOrDie(const std::string& csv) {
  auto history = ParseHistoryCsv(csv, "h.csv");
  EXPECT_TRUE(history.ok()) << history.status();
  return history.ok() ? *std::move(history) : History();
}

// ---------------------------------------------------------------------------
// Reading the history.

TEST(ParseHistoryCsvTest, ReadsPlottedColumnsByName) {
  const History h = ParseOrDie(SmallHistory());
  EXPECT_THAT(h.rounds, ElementsAre(1, 2, 3, 4));
  ASSERT_NE(h.Column("test_accuracy"), nullptr);
  EXPECT_THAT(*h.Column("test_accuracy"),
              ElementsAre(Optional(0.65), Optional(0.861), std::nullopt,
                          Optional(0.84)));
  EXPECT_THAT(
      *h.Column("train_loss"),
      ElementsAre(Optional(1.2), Optional(0.9), Optional(0.7), Optional(0.5)));
  EXPECT_EQ(h.Column("bytes_sent"), nullptr);  // Not a plotted column.
  EXPECT_EQ(h.Column("fed_eval_accuracy"), nullptr);
}

TEST(ParseHistoryCsvTest, ColumnsInAnyOrder_UnknownOnesIgnored) {
  const History h = ParseOrDie(
      "\xEF\xBB\xBFversion,test_accuracy,round,comment,fed_eval_accuracy\r\n"
      "v7,0.5,1,anything at all,0.4\r\n"
      "\r\n"
      "v8,nan,2,,0.45\r\n");
  EXPECT_THAT(h.rounds, ElementsAre(1, 2));
  EXPECT_THAT(*h.Column("test_accuracy"),
              ElementsAre(Optional(0.5), std::nullopt));  // nan: missing.
  EXPECT_THAT(*h.Column("fed_eval_accuracy"),
              ElementsAre(Optional(0.4), Optional(0.45)));
}

TEST(ParseHistoryCsvTest, RepeatedRound_LastLineWinsAndRoundsSorted) {
  const History h =
      ParseOrDie("round,test_accuracy\n1,0.1\n2,0.2\n3,0.3\n2,0.25\n3,0.35\n");
  EXPECT_THAT(h.rounds, ElementsAre(1, 2, 3));
  EXPECT_THAT(*h.Column("test_accuracy"),
              ElementsAre(Optional(0.1), Optional(0.25), Optional(0.35)));
}

TEST(ParseHistoryCsvTest, EmptyOrBlank_InvalidArgument) {
  for (const char* text : {"", "\n\n", "  \r\n"}) {
    auto h = ParseHistoryCsv(text, "h.csv");
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(h.status().message(), HasSubstr("h.csv is empty"));
  }
}

TEST(ParseHistoryCsvTest, HeaderOnly_FailedPrecondition) {
  auto h = ParseHistoryCsv(absl::StrCat(kHeader, "\n"), "h.csv");
  EXPECT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(h.status().message(), HasSubstr("no rounds yet"));
}

TEST(ParseHistoryCsvTest, BadNumber_NamesLineAndColumn) {
  std::string csv = SmallHistory();
  csv.replace(csv.find("0.861000"), 8, "0.8x1");
  auto h = ParseHistoryCsv(csv, "run/h.csv");
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(h.status().message(),
              HasSubstr("run/h.csv:3: column 8 (test_accuracy): '0.8x1' is "
                        "not a number"));
}

TEST(ParseHistoryCsvTest, BadRound_NamesLineAndColumn) {
  auto h = ParseHistoryCsv("test_loss,round\n0.5,1\n0.4,two\n", "h.csv");
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(h.status().message(),
              HasSubstr("h.csv:3: column 2 (round): 'two' is not a whole"));
  h = ParseHistoryCsv("round,test_loss\n,0.5\n", "h.csv");
  EXPECT_THAT(h.status().message(), HasSubstr("h.csv:2: column 1 (round)"));
}

TEST(ParseHistoryCsvTest, WrongCellCount_NamesLine) {
  auto h = ParseHistoryCsv("round,test_loss\n1,0.5\n2\n", "h.csv");
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(h.status().message(),
              HasSubstr("h.csv:3: 1 cells but the header has 2 columns"));
}

TEST(ParseHistoryCsvTest, BadHeader_InvalidArgument) {
  for (const char* text :
       {"epoch,test_loss\n1,0.5\n", "round,num_agents\n1,3\n",
        "round,test_loss,test_loss\n1,2,3\n"}) {
    auto h = ParseHistoryCsv(text, "h.csv");
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(h.status().message(), HasSubstr("h.csv:1:"));
  }
}

class PlotFileTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(testing::TempDir(), "/fedge_plot_test.", getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(PlotFileTest, ReadHistoryFile_MissingIsNotFound) {
  auto h = ReadHistoryFile(dir_ + "/missing.csv");
  EXPECT_EQ(h.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(h.status().message(), HasSubstr("missing.csv"));
}

TEST_F(PlotFileTest, ReadHistoryFile_SampleFile) {
  auto h = ReadHistoryFile(std::string(FEDGE_SOURCE_DIR) +
                           "/tests/testdata/history_50_rounds.csv");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->rounds.size(), 50u);
  EXPECT_EQ((*h->Column("test_accuracy"))[22], std::nullopt);  // Round 23.
}

// ---------------------------------------------------------------------------
// The figure.

const Series* FindSeries(const Panel& panel, absl::string_view name) {
  for (const Series& s : panel.series) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

TEST(HistoryFigureTest, AccuracyOverLoss_TitleNamesBestRound) {
  const Figure f = HistoryFigure(ParseOrDie(SmallHistory()), "h.csv");
  EXPECT_EQ(f.title, "h.csv: 4 rounds, best test accuracy 86.1% at round 2");
  ASSERT_EQ(f.panels.size(), 2u);
  EXPECT_EQ(f.panels[0].title, "Accuracy");
  EXPECT_EQ(f.panels[0].y_format, ValueFormat::kPercent);
  EXPECT_EQ(f.panels[1].title, "Loss");
  ASSERT_EQ(f.panels[0].series.size(), 2u);  // No federated eval columns.
  EXPECT_EQ(f.panels[0].series[0].name, "test");
  EXPECT_EQ(f.panels[0].series[1].name, "train");
  // Test accuracy is missing in round 3 only: a gap between 2 and 4.
  const Series& test = f.panels[0].series[0];
  ASSERT_EQ(test.points.size(), 4u);
  EXPECT_EQ(test.points[2].y, std::nullopt);
  EXPECT_THAT(test.points[3].y, Optional(0.84));
}

TEST(HistoryFigureTest, FederatedEvalWhenPresent_SparseColumnIsOneLine) {
  // fed_eval every second round by design: no gaps.
  const Figure f = HistoryFigure(
      ParseOrDie("round,test_accuracy,fed_eval_accuracy,fed_eval_loss\n"
                 "1,0.5,,\n2,0.6,0.55,0.9\n3,0.7,,\n4,0.8,0.75,0.7\n"
                 "5,0.8,,\n6,0.85,0.8,0.6\n"),
      "h.csv");
  const Series* fed = FindSeries(f.panels[0], "federated eval");
  ASSERT_NE(fed, nullptr);
  ASSERT_EQ(fed->points.size(), 3u);
  for (const SeriesPoint& p : fed->points) EXPECT_TRUE(p.y.has_value());
  EXPECT_NE(FindSeries(f.panels[1], "federated eval"), nullptr);
  EXPECT_EQ(FindSeries(f.panels[0], "train"), nullptr);  // No such column.
  EXPECT_EQ(FindSeries(f.panels[1], "test"), nullptr);
}

TEST(HistoryFigureTest, NoTestAccuracy_TitleWithoutBest) {
  const Figure f = HistoryFigure(
      ParseOrDie("round,train_loss,test_accuracy\n1,0.5,\n"), "h.csv");
  EXPECT_EQ(f.title, "h.csv: 1 round");
  EXPECT_TRUE(f.panels[0].series.empty());
  EXPECT_EQ(f.panels[1].series.size(), 1u);
}

// ---------------------------------------------------------------------------
// Ticks.

TEST(NiceTicksTest, ExpandsToRoundSteps) {
  using plot_internal::NiceTicks;
  EXPECT_THAT(
      NiceTicks(0.698, 0.97, 8, true, false),
      ElementsAre(testing::DoubleNear(0.65, 1e-9),
                  testing::DoubleNear(0.7, 1e-9), testing::_, testing::_,
                  testing::_, testing::_, testing::DoubleNear(0.95, 1e-9),
                  testing::DoubleNear(1.0, 1e-9)));
  EXPECT_THAT(
      NiceTicks(0.1, 0.95, 6, true, false),
      ElementsAre(0, 0.2, 0.4, testing::DoubleNear(0.6, 1e-9), 0.8, 1.0));
  EXPECT_THAT(NiceTicks(1, 50, 11, false, true),
              ElementsAre(5, 10, 15, 20, 25, 30, 35, 40, 45, 50));
  EXPECT_THAT(NiceTicks(1, 4, 10, false, true), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(NiceTicks(0, 1000, 5, false, true),
              ElementsAre(0, 250, 500, 750, 1000));
}

TEST(NiceTicksTest, HugeValuesTerminate) {
  // Where k + 1 == k in doubles: still a handful of ticks.
  EXPECT_LE(plot_internal::NiceTicks(1e17, 1e17 + 64, 5, false, true).size(),
            5u);
  EXPECT_LE(plot_internal::NiceTicks(-1e300, 1e300, 5, true, false).size(), 5u);
}

TEST(NiceTicksTest, FormatTickUsesFewestDecimals) {
  using plot_internal::FormatTick;
  EXPECT_EQ(FormatTick(0.875, 0.025, ValueFormat::kPercent), "87.5%");
  EXPECT_EQ(FormatTick(0.9, 0.05, ValueFormat::kPercent), "90%");
  EXPECT_EQ(FormatTick(0.25, 0.25, ValueFormat::kNumber), "0.25");
  EXPECT_EQ(FormatTick(20, 5, ValueFormat::kNumber), "20");
  EXPECT_EQ(FormatTick(-1e-17, 0.2, ValueFormat::kNumber), "0.0");
}

// ---------------------------------------------------------------------------
// SVG.

// Checks that `xml` is well-formed enough for an SVG viewer: tags balanced
// and properly nested, attribute quotes paired, every '&' an entity. Returns
// "" or what is wrong.
std::string XmlProblem(const std::string& xml) {
  std::vector<std::string> open;
  size_t pos = 0;
  while ((pos = xml.find('<', pos)) != std::string::npos) {
    const size_t end = xml.find('>', pos);
    if (end == std::string::npos) return "unterminated tag";
    const std::string tag = xml.substr(pos + 1, end - pos - 1);
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0) {
      return "unpaired quote in <" + tag + ">";
    }
    if (tag[0] == '?') {
      // Declaration.
    } else if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1)) {
        return "unexpected </" + tag.substr(1) + ">";
      }
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find(' ')));
    }
    const size_t next = xml.find('<', end);
    const std::string text = xml.substr(end + 1, next - end - 1);
    for (size_t amp = text.find('&'); amp != std::string::npos;
         amp = text.find('&', amp + 1)) {
      const std::string rest = text.substr(amp);
      if (!absl::StartsWith(rest, "&amp;") && !absl::StartsWith(rest, "&lt;") &&
          !absl::StartsWith(rest, "&gt;") &&
          !absl::StartsWith(rest, "&quot;")) {
        return "bare & in text";
      }
    }
    pos = end;
  }
  if (!open.empty()) return "unclosed <" + open.back() + ">";
  return "";
}

// The text of the series group (panel, name) up to its </g>.
std::string SeriesGroup(const std::string& svg, absl::string_view panel,
                        absl::string_view name) {
  const std::string start = absl::StrCat("<g class=\"series\" data-panel=\"",
                                         panel, "\" data-name=\"", name, "\">");
  const size_t begin = svg.find(start);
  if (begin == std::string::npos) return "";
  return svg.substr(begin, svg.find("</g>", begin) - begin);
}

int Count(absl::string_view text, absl::string_view what) {
  int n = 0;
  for (size_t p = text.find(what); p != absl::string_view::npos;
       p = text.find(what, p + 1)) {
    ++n;
  }
  return n;
}

TEST(RenderSvgTest, WellFormedWithOneGroupPerSeries) {
  const std::string svg =
      RenderSvg(HistoryFigure(ParseOrDie(SmallHistory()), "a&b<c>.csv"));
  EXPECT_EQ(XmlProblem(svg), "");
  EXPECT_THAT(svg, HasSubstr("<svg xmlns=\"http://www.w3.org/2000/svg\" "
                             "version=\"1.1\" width=\"960\" height=\"720\""));
  EXPECT_THAT(svg, HasSubstr("a&amp;b&lt;c&gt;.csv: 4 rounds"));
  EXPECT_EQ(Count(svg, "<g class=\"series\""), 4);
  // Test accuracy: points 1-2, a gap, point 4 alone (two runs; four
  // markers since 4 points leave plenty of room).
  const std::string test = SeriesGroup(svg, "Accuracy", "test");
  EXPECT_EQ(Count(test, "<polyline"), 1);
  EXPECT_EQ(Count(test, "<circle"), 3);
  const std::string train = SeriesGroup(svg, "Loss", "train");
  EXPECT_EQ(Count(train, "<polyline"), 1);
  EXPECT_EQ(Count(train, "<circle"), 4);
  EXPECT_THAT(train, HasSubstr("stroke-dasharray"));
  EXPECT_THAT(svg, HasSubstr(">Accuracy</text>"));
  EXPECT_THAT(svg, HasSubstr(">90%</text>"));
  EXPECT_THAT(svg, HasSubstr(">round</text>"));
  EXPECT_FALSE(absl::StrContains(svg, "href"));  // Standalone.
}

TEST(RenderSvgTest, PanelWithoutDataSaysSo) {
  const std::string svg = RenderSvg(HistoryFigure(
      ParseOrDie("round,train_loss,test_accuracy\n1,0.5,\n"), "h.csv"));
  EXPECT_EQ(XmlProblem(svg), "");
  EXPECT_THAT(svg, HasSubstr(">no data</text>"));
}

TEST(RenderSvgTest, ManyPoints_LinesWithoutMarkers) {
  std::string csv = "round,test_accuracy\n";
  for (int r = 1; r <= 1000; ++r) absl::StrAppend(&csv, r, ",0.", r % 10, "\n");
  const std::string svg = RenderSvg(HistoryFigure(ParseOrDie(csv), "h.csv"));
  const std::string test = SeriesGroup(svg, "Accuracy", "test");
  EXPECT_EQ(Count(test, "<polyline"), 1);
  EXPECT_EQ(Count(test, "<circle"), 0);
}

// ---------------------------------------------------------------------------
// PNG.

uint32_t BigEndian32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<uint8_t>(s[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(s[at + 3])};
}

struct DecodedPng {
  uint32_t width = 0, height = 0;
  std::vector<std::string> chunk_types;
  std::string pixels;  // RGB, row-major.
};

// Decodes our PNGs (8-bit RGB, unfiltered rows), checking every CRC.
DecodedPng Decode(const std::string& png) {
  DecodedPng out;
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::string idat;
  for (size_t at = 8; at + 12 <= png.size();) {
    const uint32_t length = BigEndian32(png, at);
    const std::string body = png.substr(at + 4, 4 + length);
    const uint32_t crc = BigEndian32(png, at + 8 + length);
    EXPECT_EQ(
        crc, crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size()))
        << body.substr(0, 4);
    const std::string type = body.substr(0, 4), data = body.substr(4);
    out.chunk_types.push_back(type);
    if (type == "IHDR") {
      out.width = BigEndian32(data, 0);
      out.height = BigEndian32(data, 4);
      EXPECT_EQ(data.substr(8), std::string("\x08\x02\x00\x00\x00", 5));
    }
    if (type == "IDAT") idat += data;
    at += 12 + length;
  }
  const size_t row = out.width * 3 + 1;
  std::string raw(row * out.height, '\0');
  uLongf raw_size = raw.size();
  EXPECT_EQ(
      uncompress(reinterpret_cast<Bytef*>(raw.data()), &raw_size,
                 reinterpret_cast<const Bytef*>(idat.data()), idat.size()),
      Z_OK);
  EXPECT_EQ(raw_size, raw.size());
  for (uint32_t y = 0; y < out.height; ++y) {
    EXPECT_EQ(raw[y * row], 0) << "filter of row " << y;
    out.pixels += raw.substr(y * row + 1, row - 1);
  }
  return out;
}

int CountPixels(const DecodedPng& png, Rgb c) {
  int n = 0;
  for (size_t i = 0; i + 2 < png.pixels.size(); i += 3) {
    n += static_cast<uint8_t>(png.pixels[i]) == c.r &&
         static_cast<uint8_t>(png.pixels[i + 1]) == c.g &&
         static_cast<uint8_t>(png.pixels[i + 2]) == c.b;
  }
  return n;
}

TEST(RenderPngTest, ValidPngWithTheSeriesColours) {
  Figure figure = HistoryFigure(ParseOrDie(SmallHistory()), "h.csv");
  figure.width_px = 640;
  figure.height_px = 480;
  auto png = RenderPng(figure);
  ASSERT_TRUE(png.ok()) << png.status();
  const DecodedPng decoded = Decode(*png);
  EXPECT_THAT(decoded.chunk_types, ElementsAre("IHDR", "IDAT", "IEND"));
  EXPECT_EQ(decoded.width, 640u);
  EXPECT_EQ(decoded.height, 480u);
  ASSERT_EQ(decoded.pixels.size(), 640u * 480 * 3);
  const Rgb test_colour = figure.panels[0].series[0].color;
  const Rgb train_colour = figure.panels[0].series[1].color;
  EXPECT_GT(CountPixels(decoded, test_colour), 300);
  EXPECT_GT(CountPixels(decoded, train_colour), 300);
  EXPECT_GT(CountPixels(decoded, {255, 255, 255}), 640 * 480 * 7 / 10);
}

TEST(RenderPngTest, AnyCompressionLevel_SamePixels) {
  const Figure figure = HistoryFigure(ParseOrDie(SmallHistory()), "h.csv");
  auto best = RenderPng(figure);
  ASSERT_TRUE(best.ok()) << best.status();
  const std::string pixels = Decode(*best).pixels;
  for (int level : {-3, 0, 1, 6, 12}) {
    auto png = RenderPng(figure, level);
    ASSERT_TRUE(png.ok()) << "level " << level << ": " << png.status();
    EXPECT_EQ(Decode(*png).pixels, pixels) << "level " << level;
  }
  EXPECT_LT(best->size(), RenderPng(figure, 0)->size());
}

TEST(RenderPngTest, NoSeries_OnlyAxesAndText) {
  Figure figure;
  figure.title = "empty";
  figure.panels.resize(1);
  auto png = RenderPng(figure);
  ASSERT_TRUE(png.ok());
  const DecodedPng decoded = Decode(*png);
  EXPECT_EQ(decoded.width, 960u);
  EXPECT_EQ(CountPixels(decoded, {31, 119, 180}), 0);
  EXPECT_GT(CountPixels(decoded, {255, 255, 255}), 960 * 720 * 9 / 10);
}

TEST(RasterTest, TextIsDrawnFromTheFont) {
  using plot_internal::Anchor;
  using plot_internal::Canvas;
  for (int c = 33; c <= 126; ++c) {
    const uint8_t* glyph = plot_internal::Glyph(static_cast<char>(c));
    int bits = 0;
    for (int row = 0; row < 9; ++row) bits += glyph[row] != 0;
    EXPECT_GT(bits, 0) << "glyph '" << static_cast<char>(c) << "' is empty";
  }
  Canvas canvas(40, 20, {255, 255, 255});
  canvas.DrawText({1, 10}, "I", 1, Anchor::kStart, {0, 0, 0}, false);
  // 'I' at scale 1: a bar across the top row (x 2..4) and a stem at x 3.
  EXPECT_EQ(canvas.Pixel(2, 3).r, 0);
  EXPECT_EQ(canvas.Pixel(4, 3).r, 0);
  EXPECT_EQ(canvas.Pixel(3, 6).r, 0);
  EXPECT_EQ(canvas.Pixel(2, 6).r, 255);
}

TEST(RasterTest, ThickLineCoversItsWidth) {
  plot_internal::Canvas canvas(50, 20, {255, 255, 255});
  canvas.StrokePolyline({{5, 10}, {45, 10}}, 2.5, {}, {0, 0, 255});
  EXPECT_EQ(canvas.Pixel(20, 9).b, 255);
  EXPECT_EQ(canvas.Pixel(20, 9).r, 0);  // Fully covered.
  EXPECT_EQ(canvas.Pixel(20, 10).r, 0);
  EXPECT_EQ(canvas.Pixel(20, 14).r, 255);  // Untouched.
}

TEST(PlotFormatTest, ByExtension) {
  EXPECT_EQ(*PlotFormatForPath("a/b.png"), PlotFormat::kPng);
  EXPECT_EQ(*PlotFormatForPath("B.SVG"), PlotFormat::kSvg);
  for (const char* bad : {"a.jpg", "png", "a.png.txt", ""}) {
    auto f = PlotFormatForPath(bad);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(f.status().message(), HasSubstr(".png or FILE.svg"));
  }
}

}  // namespace
}  // namespace fedge
