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

}  // namespace fedge
