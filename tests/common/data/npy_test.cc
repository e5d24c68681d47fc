// Tests of the NumPy .npy reader (common/data/npy.cc), its wiring in
// LoadData (common/data/data_source.cc) and its config validation.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/data/data_source.h"
#include "common/data/dataset.h"
#include "common/fl_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/scratch_dir.h"

namespace fedge {
namespace {

using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---------------------------------------------------------------------------
// Helpers: .npy bytes as numpy.save writes them, temp files.

// "(2, 3)", "(5,)", "()".
std::string Tuple(const std::vector<int64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

std::string Dict(const std::string& descr, const std::vector<int64_t>& shape,
                 bool fortran = false) {
  return absl::StrCat("{'descr': '", descr,
                      "', 'fortran_order': ", fortran ? "True" : "False",
                      ", 'shape': ", Tuple(shape), ", }");
}

// Magic, version `major`.0, header length, `dict` padded with spaces and a
// newline to a multiple of 64 bytes, then `data`.
std::string NpyFile(const std::string& dict, const std::string& data,
                    int major = 1) {
  const size_t preamble = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append((64 - (preamble + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) {
    out.push_back(static_cast<char>(header.size() >> (8 * i)));
  }
  return out + header + data;
}

// The values' bytes, little-endian (or big-endian).
template <typename T>
std::string Raw(const std::vector<T>& values, bool big_endian = false) {
  std::string out;
  for (T v : values) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    if (big_endian) std::reverse(bytes, bytes + sizeof(T));
    out.append(bytes, sizeof(T));
  }
  return out;
}

template <typename T>
std::string Npy(const std::string& descr, const std::vector<int64_t>& shape,
                const std::vector<T>& values, int major = 1) {
  return NpyFile(Dict(descr, shape), Raw(values, descr[0] == '>'), major);
}

std::string Labels(const std::vector<int64_t>& labels) {
  return Npy<int64_t>("<i8", {static_cast<int64_t>(labels.size())}, labels);
}

const std::string& TestDir() {
  static const std::string* dir = [] {
    auto* d = new std::string(
        absl::StrCat(::testing::TempDir(), "/fedge_npy_test.", getpid()));
    ::mkdir(d->c_str(), 0755);
    fedge::testing::RemoveAtExit(*d);
    return d;
  }();
  return *dir;
}

std::string WriteTemp(const std::string& name, const std::string& contents) {
  const std::string path = TestDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

// A valid gzip member holding `data` in stored (uncompressed) deflate blocks.
std::string Gzip(const std::string& data) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) {
      crc = (crc >> 1) ^ (0xedb88320u & (0 - (crc & 1)));
    }
  }
  crc = ~crc;
  std::string out = {'\x1f', '\x8b', 8, 0, 0, 0, 0, 0, 0, 3};
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, data.size() - pos);
    out.push_back(pos + n == data.size() ? 1 : 0);
    out += Raw<uint16_t>(
        {static_cast<uint16_t>(n), static_cast<uint16_t>(~n & 0xffff)});
    out.append(data, pos, n);
    pos += n;
  } while (pos < data.size());
  return out + Raw<uint32_t>({crc, static_cast<uint32_t>(data.size())});
}

// ---------------------------------------------------------------------------
// Features

TEST(ParseNpyTest, Float32Images_GetAChannelDimension) {
  const std::vector<float> x = {0.5f, -1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1e-3f};
  auto d = ParseNpy(Npy("<f4", {2, 2, 3}, x), Labels({1, 0}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_examples(), 2);
  EXPECT_THAT(d->example_shape, ElementsAre(1, 2, 3));
  EXPECT_EQ(d->features, x);  // Floats are kept as they are.
  EXPECT_THAT(d->labels, ElementsAre(1, 0));
  EXPECT_EQ(d->num_classes, 2);
}

TEST(ParseNpyTest, Shapes_MapToExampleShapes) {
  const std::vector<float> x(2 * 3 * 4 * 5, 1.0f);
  const std::string y = Labels({0, 1});
  struct Case {
    std::vector<int64_t> shape, example;
  };
  for (const Case& c : std::vector<Case>{{{2}, {1}},
                                         {{2, 60}, {60}},
                                         {{2, 3, 20}, {1, 3, 20}},
                                         {{2, 3, 4, 5}, {3, 4, 5}},
                                         {{2, 3, 2, 2, 5}, {3, 2, 2, 5}}}) {
    int64_t n = 1;
    for (int64_t v : c.shape) n *= v;
    const std::vector<float> values(x.begin(), x.begin() + n);
    auto d = ParseNpy(Npy("<f4", c.shape, values), y);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->example_shape, c.example) << Tuple(c.shape);
    EXPECT_EQ(d->example_size() * 2, n);
  }
}

TEST(ParseNpyTest, Float64_ConvertedToFloat) {
  auto d = ParseNpy(Npy<double>("<f8", {3, 2}, {0.25, -2, 1e-40, 3, 4, 1e30}),
                    Labels({0, 1, 2}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->example_shape, ElementsAre(2));
  EXPECT_THAT(d->features, ElementsAre(0.25f, -2.0f, static_cast<float>(1e-40),
                                       3.0f, 4.0f, 1e30f));
}

TEST(ParseNpyTest, Uint8_ScaledLikeIdxImages) {
  auto d =
      ParseNpy(Npy<uint8_t>("|u1", {2, 1, 2, 2}, {0, 51, 255, 1, 2, 3, 4, 5}),
               Labels({0, 1}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->example_shape, ElementsAre(1, 2, 2));
  EXPECT_FLOAT_EQ(d->features[0], 0.0f);
  EXPECT_FLOAT_EQ(d->features[1], 0.2f);
  EXPECT_FLOAT_EQ(d->features[2], 1.0f);
  EXPECT_FLOAT_EQ(d->features[7], 5.0f / 255.0f);
}

TEST(ParseNpyTest, IntegerFeatures_KeepTheirValues) {
  const std::string y = Labels({0, 1});
  const std::vector<float> want = {-3, 0, 7, 1000};
  for (const std::string& npy :
       {Npy<int64_t>("<i8", {2, 2}, {-3, 0, 7, 1000}),
        Npy<int32_t>("<i4", {2, 2}, {-3, 0, 7, 1000}),
        Npy<int16_t>("<i2", {2, 2}, {-3, 0, 7, 1000}),
        Npy<int64_t>(">i8", {2, 2}, {-3, 0, 7, 1000})}) {
    auto d = ParseNpy(npy, y);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->features, want);
  }
  auto u = ParseNpy(Npy<uint16_t>("<u2", {2, 2}, {0, 1, 65535, 7}), y);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_THAT(u->features, ElementsAre(0, 1, 65535, 7));
  auto i8 = ParseNpy(Npy<int8_t>("|i1", {2, 1}, {-128, 127}), y);
  ASSERT_TRUE(i8.ok()) << i8.status();
  EXPECT_THAT(i8->features, ElementsAre(-128, 127));
}

TEST(ParseNpyTest, BigEndianFloats_AreConverted) {
  const std::string y = Labels({0, 1});
  auto f4 = ParseNpy(Npy<float>(">f4", {2, 2}, {1.5f, -2, 3, 4}), y);
  auto f8 = ParseNpy(Npy<double>(">f8", {2, 2}, {1.5, -2, 3, 4}), y);
  ASSERT_TRUE(f4.ok()) << f4.status();
  ASSERT_TRUE(f8.ok()) << f8.status();
  EXPECT_THAT(f4->features, ElementsAre(1.5f, -2, 3, 4));
  EXPECT_EQ(f8->features, f4->features);
}

TEST(ParseNpyTest, FortranOrder_IsTransposedToRowMajor) {
  // x = [[0, 1, 2], [3, 4, 5]] stored column by column.
  auto d = ParseNpy(
      NpyFile(Dict("<f4", {2, 3}, true), Raw<float>({0, 3, 1, 4, 2, 5})),
      Labels({0, 1}));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->features, ElementsAre(0, 1, 2, 3, 4, 5));
  // 3-D: x[n, i, j] = 100n + 10i + j for shape [2, 2, 3], column-major.
  std::vector<float> column_major;
  for (int j = 0; j < 3; ++j) {
    for (int i = 0; i < 2; ++i) {
      for (int n = 0; n < 2; ++n) column_major.push_back(100 * n + 10 * i + j);
    }
  }
  auto e = ParseNpy(NpyFile(Dict("<f4", {2, 2, 3}, true), Raw(column_major)),
                    Labels({0, 1}), /*max_examples=*/1);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_THAT(e->example_shape, ElementsAre(1, 2, 3));
  EXPECT_THAT(e->features, ElementsAre(0, 1, 2, 10, 11, 12));
  // Fortran-ordered labels [N, 1] lie like [N].
  auto f =
      ParseNpy(Npy<float>("<f4", {3, 1}, {1, 2, 3}),
               NpyFile(Dict("<i4", {3, 1}, true), Raw<int32_t>({2, 0, 1})));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(f->labels, ElementsAre(2, 0, 1));
}

TEST(ParseNpyTest, FormatVersions_1_2_3_ReadTheSame) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  for (int major : {1, 2, 3}) {
    auto d = ParseNpy(Npy("<f4", {3, 2}, x, major),
                      Npy<int32_t>("<i4", {3}, {2, 0, 1}, major));
    ASSERT_TRUE(d.ok()) << major << ": " << d.status();
    EXPECT_EQ(d->features, x);
    EXPECT_THAT(d->labels, ElementsAre(2, 0, 1));
  }
}

TEST(ParseNpyTest, HeaderSyntaxVariants_AreAccepted) {
  const std::string data = Raw<float>({1, 2});
  for (const char* dict : {
           "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
           "{\"shape\": (2L,), \"descr\": \"<f4\", \"fortran_order\": False}",
           "{'descr':'<f4','fortran_order':False,'shape':(2, 1)}",
           "  { 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 2 ) }",
       }) {
    auto d = ParseNpy(NpyFile(dict, data), Labels({0, 1}));
    EXPECT_TRUE(d.ok()) << dict << ": " << d.status();
  }
}

// ---------------------------------------------------------------------------
// Labels

TEST(ParseNpyTest, LabelDtypes_AllIntegersAndIntegralFloats) {
  const std::string x = Npy<float>("<f4", {3, 1}, {0, 0, 0});
  for (const std::string& y : {
           Npy<uint8_t>("|u1", {3}, {2, 0, 9}),
           Npy<int8_t>("|i1", {3}, {2, 0, 9}),
           Npy<uint16_t>("<u2", {3}, {2, 0, 9}),
           Npy<int16_t>("<i2", {3}, {2, 0, 9}),
           Npy<int32_t>("<i4", {3}, {2, 0, 9}),
           Npy<uint32_t>("<u4", {3}, {2, 0, 9}),
           Npy<int64_t>("<i8", {3}, {2, 0, 9}),
           Npy<uint64_t>("<u8", {3}, {2, 0, 9}),
           Npy<int32_t>(">i4", {3}, {2, 0, 9}),
           Npy<float>("<f4", {3}, {2, 0, 9}),
           Npy<double>("<f8", {3}, {2, 0, 9}),
           Npy<double>(">f8", {3}, {2, 0, 9}),
           Npy<int64_t>("<i8", {3, 1}, {2, 0, 9}),
       }) {
    auto d = ParseNpy(x, y);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_THAT(d->labels, ElementsAre(2, 0, 9));
    EXPECT_EQ(d->num_classes, 10);
  }
}

TEST(ParseNpyTest, NumClasses_InferredOrEnforced) {
  const std::string x = Npy<float>("<f4", {3}, {0, 0, 0});
  const std::string y = Labels({0, 12, 3});
  EXPECT_EQ(ParseNpy(x, y)->num_classes, 13);
  EXPECT_EQ(ParseNpy(x, y, -1, 20)->num_classes, 20);
  auto bad = ParseNpy(x, y, -1, 10, "x.npy", "y.npy");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "y.npy: label 12 at index 1 is outside [0, 10)");
}

TEST(ParseNpyTest, MaxExamples_KeepsPrefixButValidatesAllLabels) {
  const std::string x = Npy<float>("<f4", {3, 2}, {1, 2, 3, 4, 5, 6});
  auto d = ParseNpy(x, Labels({0, 1, 2}), /*max_examples=*/2);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->features, ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(d->labels, ElementsAre(0, 1));
  EXPECT_EQ(d->num_classes, 3);
  EXPECT_EQ(ParseNpy(x, Labels({0, 1, 2}), 0)->num_examples(), 0);
  EXPECT_FALSE(ParseNpy(x, Labels({0, 1, -2}), 1).ok());
}

// ---------------------------------------------------------------------------
// Corrupt and unsupported files

struct BadCase {
  std::string features, labels, message;
};

void ExpectAllRefused(const std::vector<BadCase>& cases) {
  for (const BadCase& c : cases) {
    auto d = ParseNpy(c.features, c.labels, -1, 0, "x.npy", "y.npy");
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument)
        << c.message;
    EXPECT_THAT(d.status().message(), HasSubstr(c.message));
    EXPECT_THAT(std::string(d.status().message()),
                AnyOf(StartsWith("x.npy"), StartsWith("y.npy")));
  }
}

TEST(ParseNpyTest, CorruptPreamble_IsRefusedNamingTheFile) {
  const std::string x = Npy<float>("<f4", {2}, {1, 2});
  const std::string y = Labels({0, 1});
  std::string v4 = x, v11 = x, long_header = NpyFile(Dict("<f4", {2}), "", 2);
  v4[6] = 4;
  v11[7] = 1;
  long_header[10] = 0x10;  // Header length 0x100000 + the real one.
  std::string beyond = x.substr(0, 20);
  ExpectAllRefused({
      {"", y, "x.npy: truncated: 0 bytes, shorter than the .npy preamble"},
      {x.substr(0, 8), y, "x.npy: truncated: 8 bytes"},
      {NpyFile("{}", "", 2).substr(0, 11), y,
       "x.npy: truncated: 11 bytes, shorter than the .npy 2.0 preamble of 12"},
      {"PK\x03\x04 a zip file", y,
       "x.npy: not an .npy file: bad magic string \"PK\\x03\\x04 a\" "
       "(expected \"\\x93NUMPY\"); an .npz archive?"},
      {"\x93NUMPX\x01", y, "x.npy: not an .npy file: bad magic"},
      {v4, y, "x.npy: unsupported .npy format version 4.0"},
      {v11, y, "unsupported .npy format version 1.1"},
      {long_header, y, "exceeds the limit of 65536 bytes"},
      {beyond, y,
       "x.npy: truncated: the header needs 128 bytes, the file "
       "has 20"},
      {x, y.substr(0, 30), "y.npy: truncated: the header needs 128 bytes"},
  });
}

TEST(ParseNpyTest, BadHeaderDict_IsRefused) {
  const std::string data = Raw<float>({1, 2});
  const std::string y = Labels({0, 1});
  const auto f = [&](const std::string& dict) { return NpyFile(dict, data); };
  ExpectAllRefused({
      {f("['descr', '<f4']"), y,
       "x.npy: bad header dict at character 0: expected '{'"},
      {f("{'descr': '<f4', 'fortran_order': False}"), y, "missing key 'shape'"},
      {f("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}"), y,
       "unknown key 'x'"},
      {f("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
         "'shape': (2,)}"),
       y, "repeated key 'descr'"},
      {f("{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}"), y,
       "expected ',' or '}'"},
      {f("{'descr' '<f4'}"), y, "expected ':' after a key"},
      {f("{descr: '<f4'}"), y, "expected a quoted string"},
      {f("{'descr: '<f4'}"), y, "expected ':' after a key"},
      {f("{'descr"), y, "unterminated string"},
      {f("{'descr': '<\\x66'}"), y, "escapes in strings are not supported"},
      {f("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}"), y,
       "structured dtypes (a list descr) are not supported"},
      {f("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}"), y,
       "expected True or False"},
      {f("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}"), y,
       "expected '(' to start the shape"},
      {f("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1)}"), y,
       "expected a non-negative integer"},
      {f("{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}"), y,
       "expected ',' or ')' in the shape"},
      {f("{'descr': '<f4', 'fortran_order': False, "
         "'shape': (1234567890123456789,)}"),
       y, "dimension too large"},
      {f(absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (",
                      absl::StrJoin(std::vector<int>(65, 1), ", "), ")}")),
       y, "more than 64 dimensions"},
      {f("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x"), y,
       "unexpected text after '}'"},
      {f("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)"), y,
       "expected ',' or '}'"},
  });
}

TEST(ParseNpyTest, UnsupportedDtypes_AreRefused) {
  const std::string y = Labels({0, 1});
  const auto f = [&](const std::string& descr) {
    return NpyFile(Dict(descr, {2}), std::string(16, '\0'));
  };
  ExpectAllRefused({
      {f("<c8"), y, "x.npy: dtype '<c8' is not supported (unknown kind"},
      {f("|b1"), y, "dtype '|b1' is not supported"},
      {f("<f2"), y, "dtype '<f2' is not supported"},
      {f("<U4"), y, "dtype '<U4' is not supported"},
      {f("|O"), y, "dtype '|O' is not supported (expected <order>"},
      {f("<i3"), y, "dtype '<i3' is not supported"},
      {f("<f4x"), y, "dtype '<f4x' is not supported"},
      {f("|f4"), y, "byte order must be '<' or '>'"},
      {f("=f4"), y, "byte order must be '<' or '>'"},
      {Npy<float>("<f4", {2}, {1, 2}), f("<c8"), "y.npy: dtype '<c8'"},
  });
}

TEST(ParseNpyTest, ShapeAndDataMismatch_IsRefused) {
  const std::string y = Labels({0, 1});
  const std::string x = Npy<float>("<f4", {2, 3}, {1, 2, 3, 4, 5, 6});
  const std::string big = "(4294967296, 4294967296, 4294967296)";
  ExpectAllRefused({
      {NpyFile(Dict("<f4", {60000, 28, 28}), std::string(1000, '\0')), y,
       "x.npy: shape [60000, 28, 28] float32 needs 188160000 data bytes, "
       "the file has 1000 after its 128-byte header"},
      {x + "zz", y,
       "shape [2, 3] float32 needs 24 data bytes, the file has "
       "26 after its 128-byte header"},
      {x.substr(0, x.size() - 1), y, "needs 24 data bytes, the file has 23"},
      {NpyFile(absl::StrCat("{'descr': '<f8', 'fortran_order': False, "
                            "'shape': ",
                            big, "}"),
               "abc"),
       y,
       "shape [4294967296, 4294967296, 4294967296] float64 needs over "
       "1073741824 data bytes, the file has 3"},
      {NpyFile(Dict("<f4", {}), Raw<float>({1})), y,
       "x.npy: features must be an array [N, ...], got a scalar"},
      {NpyFile(Dict("<f4", {0, 3}), ""), Labels({}),
       "x.npy: no examples (shape [0, 3])"},
      {NpyFile(Dict("<f4", {2, 0, 9}), ""), y,
       "x.npy: dimension 1 of shape [2, 0, 9] is 0"},
  });
}

TEST(ParseNpyTest, NonFiniteFeatures_AreRefused) {
  const std::string y = Labels({0, 1});
  const float inf = std::numeric_limits<float>::infinity();
  ExpectAllRefused({
      {Npy<float>("<f4", {2, 2}, {1, 2, 3, std::nanf("")}), y,
       "x.npy: value nan at element 3 (example 1) is not finite"},
      {Npy<float>("<f4", {2, 2}, {1, -inf, 3, 4}), y,
       "value -inf at element 1 (example 0) is not finite"},
      {Npy<double>("<f8", {2, 1}, {1, 1e300}), y,
       "value 1e+300 at element 1 (example 1) is not within float32 range"},
  });
}

TEST(ParseNpyTest, BadLabels_AreRefused) {
  const std::string x = Npy<float>("<f4", {3}, {1, 2, 3});
  ExpectAllRefused({
      {x, Npy<int64_t>("<i8", {3, 2}, {0, 0, 0, 0, 0, 0}),
       "y.npy: labels must be an array [N] (or [N, 1]), got shape [3, 2]"},
      {x, Npy<int64_t>("<i8", {}, {0}),
       "y.npy: labels must be an array [N] (or [N, 1]), got shape []"},
      {x, Npy<int64_t>("<i8", {3}, {0, -1, 2}),
       "y.npy: label -1 at index 1 is outside [0, 1048576)"},
      {x, Npy<int8_t>("|i1", {3}, {0, 1, -5}), "label -5 at index 2 is "},
      {x, Npy<uint64_t>("<u8", {3}, {0, 1, uint64_t{1} << 63}),
       "label 9223372036854775808 at index 2 is outside"},
      {x, Npy<float>("<f4", {3}, {0, 1.5f, 2}),
       "y.npy: label 1.5 at index 1 is not an integer"},
      {x, Npy<double>("<f8", {3}, {std::nan(""), 1, 2}),
       "label nan at index 0 is not an integer"},
      {x, Npy<double>("<f8", {3}, {0, 1, -1}),
       "label -1 at index 2 is outside"},
      {x, Labels({0, 1}),
       "x.npy has 3 examples (shape [3]) but y.npy has 2 labels"},
  });
}

TEST(ParseNpyTest, BadOptions_AreRefused) {
  const std::string x = Npy<float>("<f4", {1}, {1});
  EXPECT_THAT(ParseNpy(x, Labels({0}), -2).status().message(),
              HasSubstr("max_examples must be >= -1, got -2"));
  EXPECT_THAT(ParseNpy(x, Labels({0}), -1, -1).status().message(),
              HasSubstr("num_classes must be in"));
}

// ---------------------------------------------------------------------------
// Files

TEST(ReadNpyTest, RawAndGzipped_ReadTheSame) {
  const std::string x = Npy<float>("<f4", {2, 2}, {1, 2, 3, 4});
  const std::string y = Labels({1, 0});
  auto raw = ReadNpy(WriteTemp("x.npy", x), WriteTemp("y.npy", y));
  auto gz =
      ReadNpy(WriteTemp("x.npy.gz", Gzip(x)), WriteTemp("y.npy.gz", Gzip(y)));
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_TRUE(gz.ok()) << gz.status();
  EXPECT_EQ(raw->features, gz->features);
  EXPECT_EQ(raw->labels, gz->labels);
}

TEST(ReadNpyTest, Errors_NameThePath) {
  const std::string y = WriteTemp("y2.npy", Labels({1, 0}));
  const std::string bad = WriteTemp("bad.npy", "not numpy");
  auto missing = ReadNpy(TestDir() + "/missing.npy", y);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("missing.npy"));
  EXPECT_THAT(std::string(ReadNpy(bad, y).status().message()),
              StartsWith(bad + ": not an .npy file"));
}

// Runs python3 with NumPy on `script`; false (with the reason in `why`) when
// either is unavailable.
bool RunNumPy(const std::string& script, std::string* why) {
  const char* python = "/usr/bin/python3";
  if (::access(python, X_OK) != 0) {
    *why = "no /usr/bin/python3";
    return false;
  }
  if (std::system(
          absl::StrCat(python, " -c 'import numpy' 2>/dev/null").c_str()) !=
      0) {
    *why = "python3 has no numpy (apt-get install python3-numpy)";
    return false;
  }
  const std::string path = WriteTemp("make_fixtures.py", script);
  const int rc = std::system(absl::StrCat(python, " ", path).c_str());
  EXPECT_EQ(rc, 0) << "python3 " << path << " failed";
  return rc == 0;
}

TEST(ReadNpyTest, FilesWrittenByNumPy_ReadAsNumPySeesThem) {
  const std::string dir = TestDir();
  std::string why;
  if (!RunNumPy(absl::StrCat(R"(
import gzip, numpy as np
from numpy.lib import format as fmt
d = ")",
                             dir, R"("
n = 5
img = (np.arange(n * 28 * 28, dtype=np.float32) % 97 / 10).reshape(n, 28, 28)
np.save(d + '/img_x.npy', img)
np.save(d + '/img_y.npy', np.arange(n, dtype=np.uint8) % 3)
rgb = (np.arange(n * 3 * 8 * 8) % 256).astype(np.uint8).reshape(n, 3, 8, 8)
with gzip.open(d + '/rgb_x.npy.gz', 'wb') as f: np.save(f, rgb)
np.save(d + '/rgb_y.npy', (np.arange(n) % 4).astype('<u2'))
vec = np.asfortranarray((np.arange(n * 6).reshape(n, 6) / 4).astype('>f8'))
assert vec.dtype.str == '>f8' and not vec.flags.c_contiguous
with open(d + '/vec_x.npy', 'wb') as f: fmt.write_array(f, vec, version=(2, 0))
with open(d + '/vec_y.npy', 'wb') as f:
    fmt.write_array(f, np.arange(n, dtype=np.int64)[::-1].copy(), version=(3, 0))
np.save(d + '/i32_x.npy', np.arange(n * 2, dtype=np.int32).reshape(n, 2) - 4)
np.save(d + '/i32_y.npy', np.array([0, 1, 0, 1, 1], dtype=np.float32))
)"),
                &why)) {
    GTEST_SKIP() << "cannot generate NumPy fixtures: " << why;
  }
  const int n = 5;
  auto img = ReadNpy(dir + "/img_x.npy", dir + "/img_y.npy");
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_THAT(img->example_shape, ElementsAre(1, 28, 28));
  ASSERT_EQ(img->features.size(), n * 28 * 28u);
  for (int i = 0; i < n * 28 * 28; ++i) {
    ASSERT_EQ(img->features[i], static_cast<float>(i % 97) / 10.0f) << i;
  }
  EXPECT_THAT(img->labels, ElementsAre(0, 1, 2, 0, 1));
  EXPECT_EQ(img->num_classes, 3);

  auto rgb = ReadNpy(dir + "/rgb_x.npy.gz", dir + "/rgb_y.npy");
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  EXPECT_THAT(rgb->example_shape, ElementsAre(3, 8, 8));
  for (int i = 0; i < n * 3 * 64; ++i) {
    ASSERT_FLOAT_EQ(rgb->features[i], static_cast<float>(i % 256) / 255.0f);
  }
  EXPECT_THAT(rgb->labels, ElementsAre(0, 1, 2, 3, 0));

  auto vec = ReadNpy(dir + "/vec_x.npy", dir + "/vec_y.npy");
  ASSERT_TRUE(vec.ok()) << vec.status();
  EXPECT_THAT(vec->example_shape, ElementsAre(6));
  for (int i = 0; i < n * 6; ++i) ASSERT_EQ(vec->features[i], i / 4.0f);
  EXPECT_THAT(vec->labels, ElementsAre(4, 3, 2, 1, 0));

  auto i32 = ReadNpy(dir + "/i32_x.npy", dir + "/i32_y.npy");
  ASSERT_TRUE(i32.ok()) << i32.status();
  EXPECT_THAT(i32->features, ElementsAre(-4, -3, -2, -1, 0, 1, 2, 3, 4, 5));
  EXPECT_THAT(i32->labels, ElementsAre(0, 1, 0, 1, 1));
}

// ---------------------------------------------------------------------------
// DataConfig source "npy"

v1::DataConfig NpyConfig(const std::string& prefix) {
  v1::DataConfig c;
  c.set_source("npy");
  c.set_npy_train_features(TestDir() + "/" + prefix + "train_x.npy");
  c.set_npy_train_labels(TestDir() + "/" + prefix + "train_y.npy");
  c.set_npy_test_features(TestDir() + "/" + prefix + "test_x.npy");
  c.set_npy_test_labels(TestDir() + "/" + prefix + "test_y.npy");
  return c;
}

TEST(LoadDataNpyTest, LoadsBothSplitsWithOneNumClasses) {
  const v1::DataConfig c = NpyConfig("a_");
  WriteTemp("a_train_x.npy",
            Npy<float>("<f4", {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8}));
  WriteTemp("a_train_y.npy", Labels({0, 1, 2, 1}));
  WriteTemp("a_test_x.npy", Npy<float>("<f4", {2, 2}, {1, 2, 3, 4}));
  WriteTemp("a_test_y.npy", Labels({4, 0}));
  ASSERT_TRUE(ValidateDataConfig(c, "data.").ok());
  auto data = LoadData(c);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train.num_examples(), 4);
  EXPECT_EQ(data->test.num_examples(), 2);
  EXPECT_EQ(data->train.num_classes, 5);
  EXPECT_EQ(data->test.num_classes, 5);
  EXPECT_THAT(data->description, HasSubstr("NumPy data from"));
  auto test_only = LoadData(c, /*test_only=*/true);
  ASSERT_TRUE(test_only.ok()) << test_only.status();
  EXPECT_EQ(test_only->train.num_examples(), 0);
  EXPECT_EQ(test_only->test.num_examples(), 2);
}

TEST(LoadDataNpyTest, DifferentExampleShapes_AreRefused) {
  const v1::DataConfig c = NpyConfig("b_");
  WriteTemp("b_train_x.npy", Npy<float>("<f4", {2, 2}, {1, 2, 3, 4}));
  WriteTemp("b_train_y.npy", Labels({0, 1}));
  WriteTemp("b_test_x.npy", Npy<float>("<f4", {1, 3}, {1, 2, 3}));
  WriteTemp("b_test_y.npy", Labels({0}));
  auto data = LoadData(c);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(data.status().message(),
              HasSubstr("b_test_x.npy: examples of shape [3] but"));
}

TEST(LoadDataNpyTest, Validation_NeedsTheTrainingFiles) {
  v1::DataConfig c;
  c.set_source("npy");
  EXPECT_THAT(ValidateDataConfig(c, "data.").message(),
              HasSubstr("'data.npy_train_features' and npy_train_labels are "
                        "required for source 'npy'"));
  c = NpyConfig("c_");
  c.clear_npy_test_labels();
  EXPECT_THAT(ValidateDataConfig(c, "data.").message(),
              HasSubstr("npy_test_labels must be set together"));
  c.set_source("parquet");
  EXPECT_THAT(ValidateDataConfig(c, "data.").message(),
              HasSubstr("mnist, idx, csv, npy, synthetic"));
}

}  // namespace
}  // namespace fedge
