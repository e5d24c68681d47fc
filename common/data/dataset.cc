#include "common/data/dataset.h"

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
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace fedge {

int64_t Dataset::example_size() const {
  int64_t size = 1;
  for (int64_t d : example_shape) size *= d;
  return size;
}

// ===========================================================================
// Files
namespace {

absl::Status ErrnoError(const std::string& path, int error) {
  const std::string message = absl::StrCat(path, ": ", std::strerror(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InvalidArgumentError(message);
  }
}

absl::Status TooLarge(const std::string& path, int64_t max_bytes) {
  return absl::ResourceExhaustedError(absl::StrCat(
      path, ": contents exceed the limit of ", max_bytes, " bytes"));
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

// Reads exactly `size` bytes (the file's size from stat) of a plain file.
absl::StatusOr<std::string> ReadPlain(std::FILE* f, const std::string& path,
                                      int64_t size) {
  std::string out(static_cast<size_t>(size), '\0');
  if (std::fseek(f, 0, SEEK_SET) != 0 ||
      std::fread(out.data(), 1, out.size(), f) != out.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": read failed after ", size, " bytes expected"));
  }
  return out;
}

// The gzip trailer's ISIZE (uncompressed size mod 2^32), used only as a
// capacity hint; 0 when unreadable.
int64_t GzipSizeHint(std::FILE* f) {
  unsigned char b[4];
  if (std::fseek(f, -4, SEEK_END) != 0 || std::fread(b, 1, 4, f) != 4) return 0;
  return int64_t{b[0]} | int64_t{b[1]} << 8 | int64_t{b[2]} << 16 |
         int64_t{b[3]} << 24;
}

absl::StatusOr<std::string> ReadGzip(const std::string& path, int64_t max_bytes,
                                     int64_t size_hint) {
  std::unique_ptr<gzFile_s, GzCloser> gz(gzopen(path.c_str(), "rb"));
  if (gz == nullptr) return ErrnoError(path, errno ? errno : EIO);
  gzbuffer(gz.get(), 1 << 20);
  std::string out;
  out.reserve(static_cast<size_t>(std::min(size_hint, max_bytes)) + 1);
  constexpr int64_t kChunk = int64_t{16} << 20;
  while (true) {
    const auto size = static_cast<int64_t>(out.size());
    if (size > max_bytes) return TooLarge(path, max_bytes);
    const auto room = static_cast<int64_t>(out.capacity()) - size;
    const int64_t want =
        std::min({kChunk, max_bytes + 1 - size, room > 0 ? room : kChunk});
    out.resize(size + want);
    const int n =
        gzread(gz.get(), out.data() + size, static_cast<unsigned>(want));
    out.resize(size + std::max(n, 0));
    if (n <= 0) break;
  }
  int error = Z_OK;
  const char* message = gzerror(gz.get(), &error);
  if (error != Z_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": corrupt or truncated gzip data (", message,
                     ") after ", out.size(), " decompressed bytes"));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadFileMaybeGzipped(const std::string& path,
                                                 int64_t max_bytes) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return ErrnoError(path, errno);
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (f == nullptr) return ErrnoError(path, errno);
  unsigned char magic[2] = {0, 0};
  const size_t got = std::fread(magic, 1, 2, f.get());
  if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    // Deflate expands at most ~1032:1: a bound on an untrusted ISIZE.
    const int64_t hint = std::min(GzipSizeHint(f.get()), info.st_size * 1032);
    f.reset();
    return ReadGzip(path, max_bytes, hint);
  }
  if (info.st_size > max_bytes) return TooLarge(path, max_bytes);
  return ReadPlain(f.get(), path, info.st_size);
}

// ===========================================================================
// IDX
namespace {

constexpr uint32_t kIdxImagesMagic = 0x00000803;  // 2051: uint8, 3-D
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // 2049: uint8, 1-D

uint32_t ReadBigEndian32(absl::string_view bytes, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + offset;
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 |
         uint32_t{p[3]};
}

std::string MagicName(uint32_t magic) {
  char hex[16];
  std::snprintf(hex, sizeof(hex), "0x%08x", magic);
  std::string name = absl::StrCat(magic, " (", hex, ")");
  if (magic == kIdxImagesMagic) absl::StrAppend(&name, ", an IDX images file");
  if (magic == kIdxLabelsMagic) absl::StrAppend(&name, ", an IDX labels file");
  return name;
}

// An IDX file's dimensions and its data bytes, checked against each other.
struct IdxContents {
  std::vector<int64_t> dims;
  absl::string_view data;
};

// "60000 images of 28x28 (47040000 bytes)" / "60000 labels (60000 bytes)".
std::string DescribeIdx(const std::vector<int64_t>& dims, int64_t bytes) {
  std::string what =
      absl::StrCat(dims[0], dims.size() == 1 ? " labels" : " images of ");
  for (size_t i = 1; i < dims.size(); ++i) {
    absl::StrAppend(&what, i > 1 ? "x" : "", dims[i]);
  }
  if (bytes > kMaxIdxBytes) {
    return absl::StrCat(what, " (over ", kMaxIdxBytes, " bytes)");
  }
  return absl::StrCat(what, " (", bytes, " bytes)");
}

// Validates header and length of `bytes`, an IDX file with `magic`.
absl::StatusOr<IdxContents> ParseIdxFile(absl::string_view bytes,
                                         absl::string_view name,
                                         uint32_t magic) {
  const int ndims = static_cast<int>(magic & 0xff);
  const size_t header_size = 4 + 4 * static_cast<size_t>(ndims);
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", parts...));
  };
  if (bytes.size() < 4) return error("truncated: ", bytes.size(), " bytes");
  const uint32_t found = ReadBigEndian32(bytes, 0);
  if (found != magic) {
    return error("bad magic number ", MagicName(found), "; expected ",
                 MagicName(magic));
  }
  if (bytes.size() < header_size) {
    return error("truncated: the IDX header needs ", header_size,
                 " bytes, the file has ", bytes.size());
  }
  IdxContents contents;
  int64_t size = 1;  // Saturates at kMaxIdxBytes + 1: never overflows.
  for (int i = 0; i < ndims; ++i) {
    const int64_t dim = ReadBigEndian32(bytes, 4 + 4 * i);
    if (i > 0 && dim == 0) return error("dimension ", i, " is 0");
    contents.dims.push_back(dim);
    size = std::min(size * dim, kMaxIdxBytes + 1);
  }
  contents.data = bytes.substr(header_size);
  const auto follow = static_cast<int64_t>(contents.data.size());
  if (follow != size) {
    return error(follow < size ? "truncated" : "trailing data",
                 ": header says ", DescribeIdx(contents.dims, size), " but ",
                 follow < size ? "only " : "", follow, " bytes follow");
  }
  return contents;
}

absl::Status CheckIdxOptions(int64_t max_examples, int num_classes) {
  if (max_examples < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_examples must be >= -1, got ", max_examples));
  }
  if (num_classes < 0 || num_classes > kMaxNumClasses) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_classes must be in [0, ", kMaxNumClasses, "], got ", num_classes));
  }
  return absl::OkStatus();
}

// Labels from `data` (all validated), then truncated to `keep`.
absl::StatusOr<std::vector<int64_t>> IdxLabels(absl::string_view data,
                                               absl::string_view name,
                                               int* num_classes, int64_t keep) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  std::vector<int64_t> labels(bytes, bytes + data.size());
  const int64_t max_label =
      labels.empty() ? -1 : *std::max_element(labels.begin(), labels.end());
  if (*num_classes > 0 && max_label >= *num_classes) {
    const auto at = std::find(labels.begin(), labels.end(), max_label);
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": label ", max_label, " at index ", at - labels.begin(),
        " is outside [0, ", *num_classes, ")"));
  }
  if (*num_classes == 0) *num_classes = std::max<int>(10, max_label + 1);
  labels.resize(keep);
  return labels;
}

}  // namespace

absl::StatusOr<Dataset> ParseIdx(absl::string_view images_bytes,
                                 absl::string_view labels_bytes,
                                 int64_t max_examples, int num_classes,
                                 absl::string_view images_name,
                                 absl::string_view labels_name) {
  RETURN_IF_ERROR(CheckIdxOptions(max_examples, num_classes));
  ASSIGN_OR_RETURN(const IdxContents images,
                   ParseIdxFile(images_bytes, images_name, kIdxImagesMagic));
  ASSIGN_OR_RETURN(const IdxContents labels,
                   ParseIdxFile(labels_bytes, labels_name, kIdxLabelsMagic));
  const int64_t count = images.dims[0];
  if (labels.dims[0] != count) {
    return absl::InvalidArgumentError(
        absl::StrCat(images_name, " has ", count, " images but ", labels_name,
                     " has ", labels.dims[0], " labels"));
  }
  const int64_t keep = max_examples < 0 ? count : std::min(count, max_examples);
  Dataset dataset;
  dataset.num_classes = num_classes;
  ASSIGN_OR_RETURN(dataset.labels, IdxLabels(labels.data, labels_name,
                                             &dataset.num_classes, keep));
  dataset.example_shape = {1, images.dims[1], images.dims[2]};
  std::array<float, 256> scale;
  for (int v = 0; v < 256; ++v) scale[v] = static_cast<float>(v) / 255.0f;
  dataset.features.resize(keep * images.dims[1] * images.dims[2]);
  const auto* pixels =
      reinterpret_cast<const unsigned char*>(images.data.data());
  for (size_t i = 0; i < dataset.features.size(); ++i) {
    dataset.features[i] = scale[pixels[i]];
  }
  return dataset;
}

absl::StatusOr<Dataset> ReadIdx(const std::string& images_path,
                                const std::string& labels_path,
                                int64_t max_examples, int num_classes) {
  RETURN_IF_ERROR(CheckIdxOptions(max_examples, num_classes));
  ASSIGN_OR_RETURN(const std::string images,
                   ReadFileMaybeGzipped(images_path, kMaxIdxBytes));
  ASSIGN_OR_RETURN(const std::string labels,
                   ReadFileMaybeGzipped(labels_path, kMaxIdxBytes));
  return ParseIdx(images, labels, max_examples, num_classes, images_path,
                  labels_path);
}

namespace {

// `dir`/`base`.gz if it exists, else `dir`/`base` if it exists.
absl::StatusOr<std::string> FindMnistFile(const std::string& dir,
                                          const std::string& base) {
  const std::string stem = absl::StrCat(dir, dir.empty() ? "" : "/", base);
  struct stat info;
  for (const std::string& path : {stem + ".gz", stem}) {
    if (::stat(path.c_str(), &info) == 0) return path;
  }
  return absl::NotFoundError(
      absl::StrCat(stem, "[.gz] not found; run scripts/fetch-mnist.sh ", dir,
                   " to download MNIST"));
}

}  // namespace

absl::StatusOr<Dataset> ReadMnistDir(const std::string& dir,
                                     const std::string& split,
                                     int64_t max_examples) {
  if (split != "train" && split != "test") {
    return absl::InvalidArgumentError(absl::StrCat(
        "split must be \"train\" or \"test\", got \"", split, "\""));
  }
  const std::string prefix = split == "train" ? "train" : "t10k";
  ASSIGN_OR_RETURN(const std::string images,
                   FindMnistFile(dir, prefix + "-images-idx3-ubyte"));
  ASSIGN_OR_RETURN(const std::string labels,
                   FindMnistFile(dir, prefix + "-labels-idx1-ubyte"));
  return ReadIdx(images, labels, max_examples, /*num_classes=*/10);
}

// ===========================================================================
// CSV
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
namespace {

constexpr int64_t kMaxSyntheticFloats = int64_t{1} << 28;

// Independent stream `stream` of `seed`.
uint64_t StreamSeed(uint64_t seed, uint64_t stream) {
  return SplitMix64(seed + stream * 0x9e3779b97f4a7c15ULL);
}

absl::Status CheckSyntheticOptions(const SyntheticOptions& o, int64_t rows) {
  auto error = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  if (o.num_examples < 0)
    return error("num_examples must be >= 0, got ", o.num_examples);
  if (o.num_classes < 1 || o.num_classes > kMaxNumClasses) {
    return error("num_classes must be in [1, ", kMaxNumClasses, "], got ",
                 o.num_classes);
  }
  if (!(o.separation >= 0.0) || !std::isfinite(o.separation)) {
    return error("separation must be finite and >= 0, got ", o.separation);
  }
  if (o.example_shape.empty()) return error("example_shape must not be empty");
  int64_t size = std::max<int64_t>(rows, o.num_classes);
  for (int64_t d : o.example_shape) {
    if (d <= 0) return error("example_shape dimensions must be > 0, got ", d);
    size = std::min(size * std::min(d, kMaxSyntheticFloats + 1),
                    kMaxSyntheticFloats + 1);
  }
  if (size > kMaxSyntheticFloats) {
    return error("synthetic data would exceed ", kMaxSyntheticFloats,
                 " floats; lower num_examples or example_shape");
  }
  return absl::OkStatus();
}

// `n` examples around `means` (num_classes x d), drawn from stream `seed`.
Dataset SampleSynthetic(const SyntheticOptions& o,
                        const std::vector<double>& means, int64_t n,
                        uint64_t seed) {
  Dataset dataset;
  dataset.example_shape = o.example_shape;
  dataset.num_classes = o.num_classes;
  const int64_t d = dataset.example_size();
  DeterministicRng rng(seed);
  dataset.labels.resize(n);
  for (int64_t i = 0; i < n; ++i) dataset.labels[i] = i % o.num_classes;
  for (int64_t i = n; i > 1; --i) {
    std::swap(dataset.labels[i - 1], dataset.labels[rng.UniformInt(i)]);
  }
  dataset.features.resize(n * d);
  for (int64_t i = 0; i < n; ++i) {
    const double* mean = &means[dataset.labels[i] * d];
    float* x = &dataset.features[i * d];
    for (int64_t k = 0; k < d; ++k) {
      x[k] = static_cast<float>(mean[k] + rng.Normal());
    }
  }
  return dataset;
}

}  // namespace

absl::StatusOr<std::pair<Dataset, Dataset>> MakeSyntheticSplit(
    const SyntheticOptions& options, int64_t num_test) {
  if (num_test < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_test must be >= 0, got ", num_test));
  }
  RETURN_IF_ERROR(
      CheckSyntheticOptions(options, std::max(options.num_examples, num_test)));
  int64_t d = 1;
  for (int64_t dim : options.example_shape) d *= dim;
  std::vector<double> means(options.num_classes * d);
  DeterministicRng rng(StreamSeed(options.seed, 0));
  for (double& m : means) m = options.separation * rng.Normal();
  return std::make_pair(
      SampleSynthetic(options, means, options.num_examples,
                      StreamSeed(options.seed, 1)),
      SampleSynthetic(options, means, num_test, StreamSeed(options.seed, 2)));
}

absl::StatusOr<Dataset> MakeSynthetic(const SyntheticOptions& options) {
  ASSIGN_OR_RETURN(auto split, MakeSyntheticSplit(options, 0));
  return std::move(split.first);
}

// ===========================================================================

Dataset Subset(const Dataset& dataset, absl::Span<const int64_t> indices) {
  Dataset out;
  out.example_shape = dataset.example_shape;
  out.num_classes = dataset.num_classes;
  const int64_t d = dataset.example_size();
  out.labels.reserve(indices.size());
  out.features.reserve(indices.size() * d);
  for (int64_t i : indices) {
    FEDGE_CHECK(i >= 0 && i < dataset.num_examples())
        << "Subset index " << i << " outside [0, " << dataset.num_examples()
        << ")";
    out.labels.push_back(dataset.labels[i]);
    const auto begin = dataset.features.begin() + i * d;
    out.features.insert(out.features.end(), begin, begin + d);
  }
  return out;
}

}  // namespace fedge
