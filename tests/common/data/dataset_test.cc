#include "common/data/dataset.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/scratch_dir.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------
// Helpers: IDX bytes, gzip without zlib (stored deflate blocks), temp files.

void AppendBigEndian32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

std::string IdxImages(uint32_t count, uint32_t rows, uint32_t cols,
                      const std::vector<uint8_t>& pixels) {
  std::string out;
  for (uint32_t v : {2051u, count, rows, cols}) AppendBigEndian32(out, v);
  out.append(pixels.begin(), pixels.end());
  return out;
}

std::string IdxLabels(const std::vector<uint8_t>& labels) {
  std::string out;
  AppendBigEndian32(out, 2049);
  AppendBigEndian32(out, static_cast<uint32_t>(labels.size()));
  out.append(labels.begin(), labels.end());
  return out;
}

uint32_t Crc32(const std::string& data) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k)
      crc = (crc >> 1) ^ (0xedb88320u & (0 - (crc & 1)));
  }
  return ~crc;
}

void AppendLittleEndian(std::string& out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out.push_back(static_cast<char>(v >> (8 * i)));
}

// A valid gzip member holding `data` in stored (uncompressed) deflate blocks.
std::string Gzip(const std::string& data) {
  std::string out = {'\x1f', '\x8b', 8, 0, 0, 0, 0, 0, 0, 3};
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, data.size() - pos);
    out.push_back(pos + n == data.size() ? 1 : 0);  // BFINAL, BTYPE=00
    AppendLittleEndian(out, static_cast<uint32_t>(n), 2);
    AppendLittleEndian(out, static_cast<uint32_t>(~n & 0xffff), 2);
    out.append(data, pos, n);
    pos += n;
  } while (pos < data.size());
  AppendLittleEndian(out, Crc32(data), 4);
  AppendLittleEndian(out, static_cast<uint32_t>(data.size()), 4);
  return out;
}

// A directory of this process's own under ::testing::TempDir() (which other
// test binaries share), created on first use.
const std::string& TestDir() {
  static const std::string* dir = [] {
    auto* d = new std::string(
        absl::StrCat(::testing::TempDir(), "/fedge_dataset_test.", getpid()));
    ::mkdir(d->c_str(), 0755);
    ::mkdir((*d + "/mnist-small").c_str(), 0755);
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

// 5 images of 2x3 with pixel i*j-ish values and labels 0..4.
std::vector<uint8_t> FivePixels() {
  std::vector<uint8_t> pixels(30);
  for (int i = 0; i < 30; ++i) pixels[i] = static_cast<uint8_t>(i * 51 % 256);
  return pixels;
}
const std::vector<uint8_t> kFiveLabels = {3, 1, 4, 1, 5};

absl::StatusCode Code(const absl::Status& s) { return s.code(); }

// ---------------------------------------------------------------------------
// IDX

TEST(ParseIdxTest, ScalesPixelsAndKeepsLabels) {
  auto d = ParseIdx(IdxImages(5, 2, 3, FivePixels()), IdxLabels(kFiveLabels));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_examples(), 5);
  EXPECT_THAT(d->example_shape, ElementsAre(1, 2, 3));
  EXPECT_EQ(d->example_size(), 6);
  EXPECT_EQ(d->num_classes, 10);
  EXPECT_THAT(d->labels, ElementsAre(3, 1, 4, 1, 5));
  ASSERT_EQ(d->features.size(), 30u);
  EXPECT_FLOAT_EQ(d->features[0], 0.0f);
  EXPECT_FLOAT_EQ(d->features[1], 0.2f);
  EXPECT_FLOAT_EQ(d->features[5], 1.0f);
}

TEST(ParseIdxTest, MaxExamples_KeepsPrefix) {
  auto d = ParseIdx(IdxImages(5, 2, 3, FivePixels()), IdxLabels(kFiveLabels),
                    /*max_examples=*/2);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->labels, ElementsAre(3, 1));
  EXPECT_EQ(d->features.size(), 12u);
  EXPECT_EQ(
      ParseIdx(IdxImages(5, 2, 3, FivePixels()), IdxLabels(kFiveLabels), 0)
          ->num_examples(),
      0);
}

TEST(ParseIdxTest, NumClasses_InferredOrEnforced) {
  const std::string images = IdxImages(5, 2, 3, FivePixels());
  const std::string labels = IdxLabels({0, 1, 12, 2, 3});
  EXPECT_EQ(ParseIdx(images, labels)->num_classes, 13);
  EXPECT_EQ(ParseIdx(images, IdxLabels(kFiveLabels), -1, 6)->num_classes, 6);
  auto bad = ParseIdx(images, labels, -1, 10, "img", "lab");
  EXPECT_EQ(Code(bad.status()), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("lab: label 12 at index 2 is outside [0, 10)"));
}

TEST(ParseIdxTest, MalformedInputs_InvalidArgumentNamingFile) {
  const std::string images = IdxImages(5, 2, 3, FivePixels());
  const std::string labels = IdxLabels(kFiveLabels);
  struct Case {
    std::string images, labels, message;
  };
  const Case cases[] = {
      {images.substr(0, 26), labels,
       "img: truncated: header says 5 images of 2x3 (30 bytes) but only 10 "
       "bytes follow"},
      {images.substr(0, 9), labels,
       "img: truncated: the IDX header needs 16 bytes, the file has 9"},
      {images.substr(0, 2), labels, "img: truncated: 2 bytes"},
      {images + "xy", labels,
       "img: trailing data: header says 5 images of 2x3 (30 bytes) but 32"},
      {labels, labels,
       "img: bad magic number 2049 (0x00000801), an IDX "
       "labels file; expected 2051"},
      {images, images, "lab: bad magic number 2051"},
      {images, IdxLabels({1, 2, 3}), "img has 5 images but lab has 3 labels"},
      {IdxImages(0, 0, 3, {}), IdxLabels({}), "img: dimension 1 is 0"},
      {IdxImages(60000, 28, 28, {1, 2}), labels,
       "60000 images of 28x28 (47040000 bytes) but only 2 bytes follow"},
      {IdxImages(0xffffffffu, 0xffffffffu, 0xffffffffu, {}), labels,
       "(over 1073741824 bytes) but only 0 bytes"},
  };
  for (const Case& c : cases) {
    auto d = ParseIdx(c.images, c.labels, -1, 0, "img", "lab");
    EXPECT_EQ(Code(d.status()), absl::StatusCode::kInvalidArgument)
        << c.message;
    EXPECT_THAT(d.status().message(), HasSubstr(c.message));
  }
  EXPECT_THAT(ParseIdx(images, labels, -2).status().message(),
              HasSubstr("max_examples must be >= -1, got -2"));
  EXPECT_THAT(ParseIdx(images, labels, -1, -1).status().message(),
              HasSubstr("num_classes must be in"));
}

TEST(ReadIdxTest, RawAndGzipped_ReadTheSame) {
  const std::string images = IdxImages(5, 2, 3, FivePixels());
  const std::string labels = IdxLabels(kFiveLabels);
  auto raw =
      ReadIdx(WriteTemp("raw-images", images), WriteTemp("raw-labels", labels));
  auto gz = ReadIdx(WriteTemp("gz-images.gz", Gzip(images)),
                    WriteTemp("gz-labels.gz", Gzip(labels)));
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_TRUE(gz.ok()) << gz.status();
  EXPECT_EQ(raw->features, gz->features);
  EXPECT_EQ(raw->labels, gz->labels);
  EXPECT_EQ(gz->example_shape, raw->example_shape);
}

TEST(ReadIdxTest, ErrorsNameTheFile) {
  const std::string labels = WriteTemp("ok-labels", IdxLabels(kFiveLabels));
  const std::string missing = TestDir() + "/no-such-file.gz";
  auto d = ReadIdx(missing, labels);
  EXPECT_EQ(Code(d.status()), absl::StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr(missing));

  const std::string images = IdxImages(5, 2, 3, FivePixels());
  const std::string cut =
      WriteTemp("cut-images.gz", Gzip(images.substr(0, 20)));
  d = ReadIdx(cut, labels);
  EXPECT_EQ(Code(d.status()), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(),
              HasSubstr(cut + ": truncated: header says 5 images of 2x3 (30 "
                              "bytes) but only 4 bytes follow"));

  const std::string gz = Gzip(images);
  const std::string broken =
      WriteTemp("broken.gz", gz.substr(0, gz.size() - 12));
  d = ReadIdx(broken, labels);
  EXPECT_EQ(Code(d.status()), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(),
              HasSubstr(broken + ": corrupt or truncated gzip data"));
}

TEST(ReadFileMaybeGzippedTest, EnforcesLimitOnDecompressedSize) {
  const std::string data(1000, 'x');
  const std::string raw = WriteTemp("limit-raw", data);
  const std::string gz = WriteTemp("limit.gz", Gzip(data));
  EXPECT_EQ(ReadFileMaybeGzipped(raw, 1000)->size(), 1000u);
  EXPECT_EQ(*ReadFileMaybeGzipped(gz, 1000), data);
  for (const std::string& path : {raw, gz}) {
    auto r = ReadFileMaybeGzipped(path, 999);
    EXPECT_EQ(Code(r.status()), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(r.status().message(), HasSubstr(path + ": contents exceed"));
  }
  EXPECT_EQ(*ReadFileMaybeGzipped(WriteTemp("empty", ""), 10), "");
  EXPECT_EQ(Code(ReadFileMaybeGzipped(TestDir(), 10).status()),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReadMnistDirTest, ReadsGzOrRawByName) {
  const std::string dir = TestDir() + "/mnist-small";
  const std::string images = IdxImages(5, 2, 3, FivePixels());
  const std::string labels = IdxLabels(kFiveLabels);
  WriteTemp("mnist-small/train-images-idx3-ubyte.gz", Gzip(images));
  WriteTemp("mnist-small/train-labels-idx1-ubyte.gz", Gzip(labels));
  WriteTemp("mnist-small/t10k-images-idx3-ubyte", images.substr(0, 28));
  WriteTemp("mnist-small/t10k-labels-idx1-ubyte", IdxLabels({7, 9}));
  auto train = ReadMnistDir(dir, "train");
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->num_examples(), 5);
  auto test = ReadMnistDir(dir, "test");
  ASSERT_EQ(Code(test.status()), absl::StatusCode::kInvalidArgument);
  WriteTemp("mnist-small/t10k-images-idx3-ubyte",
            IdxImages(2, 2, 3, std::vector<uint8_t>(12, 0)));
  test = ReadMnistDir(dir, "test");
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_THAT(test->labels, ElementsAre(7, 9));
  WriteTemp("mnist-small/t10k-labels-idx1-ubyte", IdxLabels({7, 10}));
  EXPECT_THAT(ReadMnistDir(dir, "test").status().message(),
              HasSubstr("label 10 at index 1 is outside [0, 10)"));
}

TEST(ReadMnistDirTest, MissingOrBadSplit) {
  const std::string dir = TestDir() + "/no-mnist-here";
  auto d = ReadMnistDir(dir, "train");
  EXPECT_EQ(Code(d.status()), absl::StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(),
              HasSubstr(dir + "/train-images-idx3-ubyte[.gz] not found; run "
                              "scripts/fetch-mnist.sh"));
  EXPECT_THAT(ReadMnistDir(dir, "validation").status().message(),
              HasSubstr("split must be \"train\" or \"test\""));
}

TEST(ReadMnistDirTest, RealMnist_IfPresent) {
  const std::string dir = FEDGE_SOURCE_DIR "/../shared/data/mnist";
  if (!ReadFileMaybeGzipped(dir + "/t10k-labels-idx1-ubyte.gz", 1 << 20).ok()) {
    GTEST_SKIP() << "MNIST not found at " << dir
                 << ": run scripts/fetch-mnist.sh";
  }
  const auto start = std::chrono::steady_clock::now();
  auto train = ReadMnistDir(dir, "train");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  ASSERT_TRUE(train.ok()) << train.status();
  RecordProperty("train_read_seconds", std::to_string(seconds));
  EXPECT_LT(seconds, 5.0);  // ~0.3 s on one core; generous for shared CI.
  auto test = ReadMnistDir(dir, "test");
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(train->num_examples(), 60000);
  EXPECT_EQ(test->num_examples(), 10000);
  EXPECT_THAT(train->example_shape, ElementsAre(1, 28, 28));
  EXPECT_EQ(train->num_classes, 10);
  std::vector<int> counts(10, 0);
  for (int64_t y : train->labels) ++counts[y];
  EXPECT_THAT(counts, ElementsAre(5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                  6265, 5851, 5949));
  double sum = 0;
  for (float x : train->features) sum += x;
  EXPECT_NEAR(sum / train->features.size(), 0.1307, 1e-3);  // Known mean.
}

// ---------------------------------------------------------------------------
// CSV

TEST(ParseCsvTest, HeaderDetectedAndLabelLast) {
  auto d = ParseCsv("x1,x2,y\n1.5, -2,0\r\n\n3e1,4,2\n", {}, "t.csv");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->example_shape, ElementsAre(2));
  EXPECT_THAT(d->features, ElementsAre(1.5f, -2.0f, 30.0f, 4.0f));
  EXPECT_THAT(d->labels, ElementsAre(0, 2));
  EXPECT_EQ(d->num_classes, 3);
}

TEST(ParseCsvTest, LabelColumnOptionsAndDelimiter) {
  CsvOptions first;
  first.label_column = 0;
  first.delimiter = ';';
  auto d = ParseCsv("1;0.5;0.25\n0;1;2", first, "t.csv");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->labels, ElementsAre(1, 0));
  EXPECT_THAT(d->features, ElementsAre(0.5f, 0.25f, 1.0f, 2.0f));
  CsvOptions middle;
  middle.label_column = -2;
  EXPECT_THAT(ParseCsv("5,1,6\n", middle, "t.csv")->features,
              ElementsAre(5.0f, 6.0f));
  CsvOptions header;
  header.has_header = true;  // A numeric first line is skipped too.
  EXPECT_EQ(ParseCsv("9,9\n1,2\n", header, "t.csv")->num_examples(), 1);
  EXPECT_EQ(ParseCsv("9,9\n1,2\n", {}, "t.csv")->num_examples(), 2);
}

TEST(ParseCsvTest, BadValues_NameLineAndColumn) {
  struct Case {
    std::string text, message;
  };
  const Case cases[] = {
      {"a,b,y\n1,2,0\n1,zz,1\n", "t.csv:3: column 2: 'zz' is not a finite"},
      {"1,2,0\n1,inf,1\n", "t.csv:2: column 2: 'inf' is not a finite number"},
      {"1,2,0\n1,2,x\n", "t.csv:2: column 3: label 'x' is not an integer"},
      {"1,2,0\n1,2,1.5\n", "t.csv:2: column 3: label '1.5' is not an integer"},
      {"1,2,-1\n", "t.csv:1: column 3: label -1 is outside [0, 1048576)"},
      {"1,2,0\n\n1,2\n", "t.csv:3: 2 fields, expected 3 (as on line 1)"},
      {"a,b,y\n1,2,0,4\n", "t.csv:2: 4 fields, expected 3 (as on line 1)"},
      {"x,y\n", "t.csv: no data rows"},
      {"", "t.csv: no data rows"},
      {"1\n2\n", "t.csv:1: need at least 2 columns"},
  };
  for (const Case& c : cases) {
    auto d = ParseCsv(c.text, {}, "t.csv");
    EXPECT_EQ(Code(d.status()), absl::StatusCode::kInvalidArgument)
        << c.message;
    EXPECT_THAT(d.status().message(), HasSubstr(c.message));
  }
  CsvOptions far;
  far.label_column = 3;
  EXPECT_THAT(ParseCsv("1,2,0\n", far, "t.csv").status().message(),
              HasSubstr("t.csv:1: label_column 3 is outside a row of 3"));
}

TEST(ParseCsvTest, MaxRows_ResourceExhausted) {
  CsvOptions options;
  options.max_rows = 2;
  EXPECT_TRUE(ParseCsv("1,0\n2,1\n", options, "t.csv").ok());
  auto d = ParseCsv("1,0\n2,1\n3,0\n", options, "t.csv");
  EXPECT_EQ(Code(d.status()), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(d.status().message(), HasSubstr("t.csv:3: more than max_rows"));
}

TEST(ReadCsvTest, ReadsFileAndNamesItInErrors) {
  const std::string path = WriteTemp("data.csv", "f,y\n0.5,1\n0.25,0\n");
  auto d = ReadCsv(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_examples(), 2);
  const std::string gz = WriteTemp("data.csv.gz", Gzip("f,y\n0.5,1\n"));
  EXPECT_EQ(ReadCsv(gz)->num_examples(), 1);
  const std::string bad = WriteTemp("bad.csv", "1,0\n1;1\n");
  EXPECT_THAT(ReadCsv(bad).status().message(), HasSubstr(bad + ":2: "));
  EXPECT_EQ(Code(ReadCsv(path + ".missing").status()),
            absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------
// Synthetic

// Accuracy on `test` of the nearest class mean estimated from `train`.
double NearestMeanAccuracy(const Dataset& train, const Dataset& test) {
  const int64_t d = train.example_size();
  std::vector<double> means(train.num_classes * d, 0.0);
  std::vector<int64_t> counts(train.num_classes, 0);
  for (int64_t i = 0; i < train.num_examples(); ++i) {
    ++counts[train.labels[i]];
    for (int64_t k = 0; k < d; ++k) {
      means[train.labels[i] * d + k] += train.features[i * d + k];
    }
  }
  for (int64_t j = 0; j < static_cast<int64_t>(means.size()); ++j) {
    means[j] /= std::max<int64_t>(1, counts[j / d]);
  }
  int64_t correct = 0;
  for (int64_t i = 0; i < test.num_examples(); ++i) {
    int best = 0;
    double best_distance = INFINITY;
    for (int c = 0; c < train.num_classes; ++c) {
      double distance = 0;
      for (int64_t k = 0; k < d; ++k) {
        const double t = test.features[i * d + k] - means[c * d + k];
        distance += t * t;
      }
      if (distance < best_distance) best_distance = distance, best = c;
    }
    correct += best == test.labels[i];
  }
  return static_cast<double>(correct) / test.num_examples();
}

TEST(SyntheticTest, ShapeAndBalancedLabels) {
  SyntheticOptions options;
  options.num_examples = 1000;
  auto d = MakeSynthetic(options);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->example_shape, ElementsAre(1, 28, 28));
  EXPECT_EQ(d->num_classes, 10);
  EXPECT_EQ(d->features.size(), 1000u * 784);
  std::vector<int> counts(10, 0);
  for (int64_t y : d->labels) ++counts[y];
  for (int c : counts) EXPECT_EQ(c, 100);
  EXPECT_NE(d->labels[0] + 10 * d->labels[1], 1);  // Shuffled, not 0,1,...
}

TEST(SyntheticTest, DeterministicForSeed) {
  SyntheticOptions options;
  options.num_examples = 200;
  options.example_shape = {5};
  const Dataset a = *MakeSynthetic(options);
  const Dataset b = *MakeSynthetic(options);
  EXPECT_EQ(a.features, b.features);
  EXPECT_EQ(a.labels, b.labels);
  options.seed = 2;
  EXPECT_NE(a.features, MakeSynthetic(options)->features);
}

TEST(SyntheticTest, SplitSharesMeans_ClassesSeparable) {
  SyntheticOptions options;
  options.num_examples = 5000;
  options.separation = 0.1;  // The config default for 28x28.
  auto split = MakeSyntheticSplit(options, 1000);
  ASSERT_TRUE(split.ok()) << split.status();
  const auto& [train, test] = *split;
  EXPECT_EQ(train.features, MakeSynthetic(options)->features);
  EXPECT_EQ(test.num_examples(), 1000);
  EXPECT_NE(
      std::vector<float>(train.features.begin(), train.features.begin() + 784),
      std::vector<float>(test.features.begin(), test.features.begin() + 784));
  const double accuracy = NearestMeanAccuracy(train, test);
  EXPECT_GT(accuracy, 0.6);   // Learnable (chance is 0.1) ...
  EXPECT_LT(accuracy, 0.97);  // ... but not trivially.
  options.separation = 1.0;   // The struct default: trivial at d = 784.
  auto easy = MakeSyntheticSplit(options, 500);
  EXPECT_GT(NearestMeanAccuracy(easy->first, easy->second), 0.99);
}

TEST(SyntheticTest, BadOptions_InvalidArgument) {
  const std::pair<SyntheticOptions, const char*> cases[] = {
      {{-1, 10, {4}, 1.0, 1}, "num_examples must be >= 0, got -1"},
      {{10, 0, {4}, 1.0, 1}, "num_classes must be in [1, "},
      {{10, 10, {}, 1.0, 1}, "example_shape must not be empty"},
      {{10, 10, {1, 0}, 1.0, 1}, "example_shape dimensions must be > 0, got 0"},
      {{10, 10, {4}, -1.0, 1}, "separation must be finite and >= 0"},
      {{10, 10, {4}, NAN, 1}, "separation"},
      {{1 << 20, 10, {1, 28, 28}, 1.0, 1}, "would exceed 268435456 floats"},
  };
  for (const auto& [options, message] : cases) {
    auto d = MakeSynthetic(options);
    EXPECT_EQ(Code(d.status()), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(d.status().message(), HasSubstr(message));
  }
  EXPECT_THAT(MakeSyntheticSplit({}, -1).status().message(),
              HasSubstr("num_test must be >= 0, got -1"));
}

// ---------------------------------------------------------------------------
// Subset

TEST(SubsetTest, CopiesRowsInOrder) {
  Dataset d;
  d.example_shape = {2};
  d.features = {0, 1, 10, 11, 20, 21};
  d.labels = {5, 6, 7};
  d.num_classes = 8;
  const Dataset s = Subset(d, std::vector<int64_t>{2, 0, 2});
  EXPECT_THAT(s.example_shape, ElementsAre(2));
  EXPECT_EQ(s.num_classes, 8);
  EXPECT_THAT(s.labels, ElementsAre(7, 5, 7));
  EXPECT_THAT(s.features, ElementsAre(20, 21, 0, 1, 20, 21));
  EXPECT_EQ(Subset(d, {}).num_examples(), 0);
}

TEST(SubsetDeathTest, IndexOutOfRange_Crashes) {
  Dataset d;
  d.example_shape = {1};
  d.features = {1};
  d.labels = {0};
  EXPECT_DEATH(Subset(d, std::vector<int64_t>{1}), "Subset index 1 outside");
}

}  // namespace
}  // namespace fedge
