// Datasets for training and evaluation, without LibTorch: readers for IDX
// files (MNIST, gzipped or not), numeric CSV and NumPy .npy, a seeded
// synthetic classification generator, and row subsets (for a client's
// partition).
//
// A Dataset is a plain value: float features, row-major, plus int64 labels.
// The ML layer converts it to tensors at its edge. Every reader treats its
// file as untrusted: sizes are validated before anything is allocated, and a
// bad file yields an error status naming the file (and line, for CSV).
//
// Thread-safety: all functions are thread-safe (they share no state). A
// Dataset is not synchronized; share it read-only or hand it over by moving.
#ifndef FEDGE_COMMON_DATA_DATASET_H_
#define FEDGE_COMMON_DATA_DATASET_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedge {

// A labelled classification dataset held in memory.
struct Dataset {
  // Shape of one example, e.g. {1, 28, 28} for MNIST, {d} for CSV.
  std::vector<int64_t> example_shape;
  // num_examples() * example_size() values, example after example, each
  // example row-major in example_shape.
  std::vector<float> features;
  // num_examples() values in [0, num_classes).
  std::vector<int64_t> labels;
  int num_classes = 0;

  int64_t num_examples() const { return static_cast<int64_t>(labels.size()); }
  // Product of example_shape (1 for an empty shape).
  int64_t example_size() const;
};

// Largest (decompressed) file the readers accept.
inline constexpr int64_t kMaxIdxBytes = int64_t{1} << 30;  // 1 GiB
inline constexpr int64_t kMaxCsvBytes = int64_t{1} << 30;  // 1 GiB
// Largest number of classes a reader or generator accepts.
inline constexpr int kMaxNumClasses = 1 << 20;

// The readers' common options: INVALID_ARGUMENT for max_examples < -1 (-1:
// all) or num_classes outside [0, kMaxNumClasses] (0: from the labels).
absl::Status CheckReaderOptions(int64_t max_examples, int num_classes);

// The contents of the file at `path`, decompressed when it starts with the
// gzip magic bytes 1f 8b (read as is otherwise).
// Returns NOT_FOUND when the file does not exist, PERMISSION_DENIED when it
// cannot be opened for reading, INVALID_ARGUMENT for a corrupt or truncated
// gzip stream, RESOURCE_EXHAUSTED when the (decompressed) contents exceed
// `max_bytes`. Messages start with the path.
absl::StatusOr<std::string> ReadFileMaybeGzipped(const std::string& path,
                                                 int64_t max_bytes);

// ---------------------------------------------------------------------------
// IDX (the MNIST file format; big-endian header, uint8 data)

// Parses in-memory, already decompressed IDX bytes: images (magic 2051:
// uint8, 3-D count x rows x cols) and labels (magic 2049: uint8, 1-D count).
// Pixels are scaled to [0, 1] (value / 255). Keeps the first `max_examples`
// examples (-1: all); the whole input is validated either way.
// num_classes = 0 infers the number of classes as max(10, max label + 1);
// a positive num_classes requires every label to lie in [0, num_classes).
// Returns INVALID_ARGUMENT for a short header, a wrong magic number, zero
// rows or columns, data shorter or longer than the header says, differing
// image and label counts, a label out of range, or a bad max_examples or
// num_classes. Messages start with `images_name` or `labels_name`.
absl::StatusOr<Dataset> ParseIdx(absl::string_view images_bytes,
                                 absl::string_view labels_bytes,
                                 int64_t max_examples = -1, int num_classes = 0,
                                 absl::string_view images_name = "images",
                                 absl::string_view labels_name = "labels");

// Reads an IDX image file and an IDX label file (each gzipped or not) and
// parses them as ParseIdx does. Returns ReadFileMaybeGzipped's errors (with
// max_bytes = kMaxIdxBytes) and ParseIdx's, each naming the file.
absl::StatusOr<Dataset> ReadIdx(const std::string& images_path,
                                const std::string& labels_path,
                                int64_t max_examples = -1, int num_classes = 0);

// Reads MNIST from `dir`: split "train" reads train-images-idx3-ubyte[.gz]
// and train-labels-idx1-ubyte[.gz]; split "test" the t10k-* files (the .gz
// name is tried first). Labels must lie in [0, 10).
// Returns NOT_FOUND naming the missing file and pointing at
// scripts/fetch-mnist.sh, INVALID_ARGUMENT for another split, and ReadIdx's
// errors.
absl::StatusOr<Dataset> ReadMnistDir(const std::string& dir,
                                     const std::string& split,
                                     int64_t max_examples = -1);

// ---------------------------------------------------------------------------
// CSV

// Options for ParseCsv/ReadCsv. The format is plain: one example per line
// ("\n" or "\r\n"), fields separated by `delimiter`, no quoting; surrounding
// spaces are trimmed and blank lines skipped. Every data line has the same
// number of fields: numeric features (finite, parsed locale-independently)
// and one integer label column. num_classes = max label + 1.
struct CsvOptions {
  // Column holding the integer label; negative counts from the end
  // (-1 = last column).
  int label_column = -1;
  // true: the first non-blank line is a header and is skipped.
  // false: auto-detect; the first line is a header when one of its fields
  // is not a number (a data row cannot contain one anyway).
  bool has_header = false;
  char delimiter = ',';
  // More data rows than this is an error (RESOURCE_EXHAUSTED).
  int64_t max_rows = 10'000'000;
};

// Parses CSV `text`; errors start with "<name_for_errors>:<line>:" and name
// the 1-based column where there is one.
// Returns INVALID_ARGUMENT for a malformed number or label, a negative or
// too large (>= kMaxNumClasses) label, a row with a different number of
// fields, a label_column outside the row, fewer than 2 columns, or no data
// rows; RESOURCE_EXHAUSTED for more than max_rows rows.
absl::StatusOr<Dataset> ParseCsv(absl::string_view text,
                                 const CsvOptions& options,
                                 const std::string& name_for_errors);

// Reads the CSV file at `path` (gzipped or not) and parses it as ParseCsv
// does. Returns ReadFileMaybeGzipped's errors (max_bytes = kMaxCsvBytes)
// and ParseCsv's.
absl::StatusOr<Dataset> ReadCsv(const std::string& path,
                                const CsvOptions& options = {});

// ---------------------------------------------------------------------------
// NumPy .npy (format versions 1.0, 2.0 and 3.0)
//
// A features file and a labels file, as written by numpy.save. Features are
// an array [N, ...]: float32 ('<f4') and float64 ('<f8') values are kept as
// they are (and must be finite and, for float64, within float32 range),
// uint8 ('|u1') values are scaled to [0, 1] (value / 255) like IDX images,
// and other integer dtypes (int8/16/32/64, uint16/32/64) are kept as their
// values. One example has shape [...]: [N, H, W] gives [1, H, W], [N, C, H,
// W] gives [C, H, W], [N, D] gives [D] and [N] gives [1]. Image arrays must
// be channels-first (NCHW): transpose NHWC arrays before saving.
// Labels are an array [N] (or [N, 1]) of any integer dtype, or a float
// dtype holding integral values. Big-endian dtypes ('>f4') are converted;
// fortran_order arrays are transposed to row-major order. Structured
// dtypes, complex, bool, float16 and object arrays are refused.

// Largest (decompressed) .npy file, and largest header, the readers accept.
// (NumPy itself refuses headers over 10000 bytes unless told otherwise.)
inline constexpr int64_t kMaxNpyBytes = int64_t{1} << 30;  // 1 GiB
inline constexpr int64_t kMaxNpyHeaderBytes = int64_t{1} << 16;
// Most dimensions an .npy array may have (NumPy 2's limit).
inline constexpr int kMaxNpyDims = 64;

// Parses in-memory, already decompressed .npy bytes of features and labels.
// Keeps the first `max_examples` examples (-1: all); the headers, sizes and
// every label are validated either way (feature values only where they are
// converted). num_classes = 0 infers the number of classes as max label + 1;
// a positive num_classes requires every label to lie in [0, num_classes).
// Returns INVALID_ARGUMENT for a short file, a wrong magic string, an
// unsupported format version, an over-long or malformed header dictionary
// (missing, unknown or repeated keys, a bad descr, fortran_order or shape),
// an unsupported dtype, a shape whose data is larger than kMaxNpyBytes or
// does not match the bytes that follow the header, no examples or a zero
// example dimension, a non-finite feature, labels that are not [N] or [N, 1],
// a label that is negative, not integral or out of range, differing example
// and label counts, or a bad max_examples or num_classes. Messages start
// with `features_name` or `labels_name`.
absl::StatusOr<Dataset> ParseNpy(absl::string_view features_bytes,
                                 absl::string_view labels_bytes,
                                 int64_t max_examples = -1, int num_classes = 0,
                                 absl::string_view features_name = "features",
                                 absl::string_view labels_name = "labels");

// Reads a features .npy file and a labels .npy file (each gzipped or not)
// and parses them as ParseNpy does. Returns ReadFileMaybeGzipped's errors
// (with max_bytes = kMaxNpyBytes) and ParseNpy's, each naming the file.
absl::StatusOr<Dataset> ReadNpy(const std::string& features_path,
                                const std::string& labels_path,
                                int64_t max_examples = -1, int num_classes = 0);

// ---------------------------------------------------------------------------
// Synthetic data

// A seeded Gaussian-clusters classification task, shaped like images so
// that the same models train on it as on MNIST.
//
// Each class c has a mean m_c whose d = prod(example_shape) features are
// drawn i.i.d. from N(0, separation^2); an example of class c is
// m_c + N(0, I). Labels are balanced (i % num_classes) and shuffled. The
// optimal classifier is linear. Two class means lie about
// separation * sqrt(2d) noise standard deviations apart, so pick separation
// for the dimension: with d = 784 and 10 classes, nearest-true-mean accuracy
// is about 0.35 at separation 0.035, 0.5 at 0.05, 0.69 at 0.07, 0.88 at 0.1
// (the config default, proto/fedge/v1/config.proto) and 1.0 from 0.2 up
// (the default 1.0 is trivially separable at that size; it suits small d).
// Deterministic for a seed on every platform: std::mt19937_64 bits with our
// own samplers (no std::*_distribution).
struct SyntheticOptions {
  int64_t num_examples = 10000;
  int num_classes = 10;
  std::vector<int64_t> example_shape = {1, 28, 28};
  // Standard deviation of each class-mean feature, in noise standard
  // deviations.
  double separation = 1.0;
  uint64_t seed = 1;
};

// `options.num_examples` examples of the task above.
// Returns INVALID_ARGUMENT when num_examples < 0, num_classes is not in
// [1, kMaxNumClasses], a dimension of example_shape is <= 0 (or it is
// empty), separation is negative or not finite, or the features would exceed
// 2^28 floats (1 GiB).
absl::StatusOr<Dataset> MakeSynthetic(const SyntheticOptions& options);

// A train set (options.num_examples) and a test set (num_test) from the same
// distribution: the same class means (from options.seed), independent
// points. The train set equals MakeSynthetic(options).
// Returns MakeSynthetic's errors, and INVALID_ARGUMENT when num_test < 0.
absl::StatusOr<std::pair<Dataset, Dataset>> MakeSyntheticSplit(
    const SyntheticOptions& options, int64_t num_test);

// ---------------------------------------------------------------------------

// A copy of the examples of `dataset` at `indices` (in that order; repeats
// allowed), with the same shape and num_classes. Indices must lie in
// [0, dataset.num_examples()) (checked: a violation is a bug).
Dataset Subset(const Dataset& dataset, absl::Span<const int64_t> indices);

}  // namespace fedge

#endif  // FEDGE_COMMON_DATA_DATASET_H_
