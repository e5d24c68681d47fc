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
#include "common/data/dataset.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"

namespace fedge {

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
  RETURN_IF_ERROR(CheckReaderOptions(max_examples, num_classes));
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
  RETURN_IF_ERROR(CheckReaderOptions(max_examples, num_classes));
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

}  // namespace fedge
