#include "common/data/data_source.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

absl::StatusOr<LoadedData> LoadSynthetic(const v1::DataConfig& c,
                                         bool test_only) {
  SyntheticOptions options;
  options.num_examples = test_only ? 0 : c.synthetic_train_examples();
  options.num_classes = c.synthetic_num_classes();
  options.separation = c.synthetic_separation();
  options.seed = c.synthetic_seed();
  options.example_shape = {1, 28, 28};
  ASSIGN_OR_RETURN(auto split,
                   MakeSyntheticSplit(options, c.synthetic_test_examples()));
  LoadedData data;
  data.train = std::move(split.first);
  data.test = std::move(split.second);
  data.description =
      absl::StrCat("synthetic data (seed ", c.synthetic_seed(), ", ",
                   c.synthetic_num_classes(), " classes, separation ",
                   c.synthetic_separation(), ")");
  return data;
}

absl::StatusOr<LoadedData> LoadMnist(const v1::DataConfig& c, bool test_only,
                                     absl::string_view data_dir_flag) {
  absl::StatusOr<Dataset> first =
      ReadMnistDir(c.data_dir(), test_only ? "test" : "train");
  if (absl::IsNotFound(first.status()) && c.synthetic_fallback()) {
    ASSIGN_OR_RETURN(LoadedData data, LoadSynthetic(c, test_only));
    data.used_fallback = true;
    data.description =
        absl::StrCat("MNIST not found in '", c.data_dir(), "' (",
                     first.status().message(), "); using ", data.description,
                     " instead. Run scripts/fetch-mnist.sh or pass ",
                     data_dir_flag, " DIR for real data");
    return data;
  }
  RETURN_IF_ERROR(first.status());
  LoadedData data;
  if (test_only) {
    data.test = *std::move(first);
  } else {
    data.train = *std::move(first);
    ASSIGN_OR_RETURN(data.test, ReadMnistDir(c.data_dir(), "test"));
  }
  data.description = absl::StrCat("IDX data from '", c.data_dir(), "'");
  return data;
}

absl::StatusOr<LoadedData> LoadFiles(const v1::DataConfig& c, bool test_only) {
  LoadedData data;
  if (c.source() == "idx") {
    if (!test_only) {
      ASSIGN_OR_RETURN(data.train,
                       ReadIdx(c.idx_train_images(), c.idx_train_labels()));
    }
    if (!c.idx_test_images().empty()) {
      ASSIGN_OR_RETURN(data.test,
                       ReadIdx(c.idx_test_images(), c.idx_test_labels()));
    }
    data.description =
        absl::StrCat("IDX data from '", c.idx_train_images(), "'");
    return data;
  }
  CsvOptions options;
  options.label_column = c.csv_label_column();
  if (!test_only) {
    ASSIGN_OR_RETURN(data.train, ReadCsv(c.csv_train_path(), options));
  }
  if (!c.csv_test_path().empty()) {
    ASSIGN_OR_RETURN(data.test, ReadCsv(c.csv_test_path(), options));
  }
  data.description = absl::StrCat("CSV data from '", c.csv_train_path(), "'");
  return data;
}

// Source "npy": both splits share one num_classes (the larger inferred one)
// and must have the same example shape.
absl::StatusOr<LoadedData> LoadNpy(const v1::DataConfig& c, bool test_only) {
  LoadedData data;
  if (!test_only) {
    ASSIGN_OR_RETURN(data.train,
                     ReadNpy(c.npy_train_features(), c.npy_train_labels()));
  }
  if (!c.npy_test_features().empty()) {
    ASSIGN_OR_RETURN(data.test,
                     ReadNpy(c.npy_test_features(), c.npy_test_labels()));
  }
  if (!test_only && data.test.num_examples() > 0) {
    if (data.test.example_shape != data.train.example_shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(c.npy_test_features(), ": examples of shape [",
                       absl::StrJoin(data.test.example_shape, ", "), "] but ",
                       c.npy_train_features(), " has examples of shape [",
                       absl::StrJoin(data.train.example_shape, ", "), "]"));
    }
    const int classes = std::max(data.train.num_classes, data.test.num_classes);
    data.train.num_classes = data.test.num_classes = classes;
  }
  data.description = absl::StrCat(
      "NumPy data from '",
      test_only ? c.npy_test_features() : c.npy_train_features(), "'");
  return data;
}

Dataset Truncate(Dataset d, int64_t max_examples) {
  if (max_examples <= 0 || d.num_examples() <= max_examples) return d;
  std::vector<int64_t> first(max_examples);
  std::iota(first.begin(), first.end(), 0);
  return Subset(d, first);
}

// (x - mean) / std over every feature of `d`.
void Standardize(Dataset& d, double mean, double std) {
  const float m = static_cast<float>(mean), inv = static_cast<float>(1 / std);
  for (float& x : d.features) x = (x - m) * inv;
}

// The configured mean/std, or the training set's when not configured.
absl::Status StandardizeAll(const v1::DataConfig& c, LoadedData& data) {
  double mean = c.feature_mean(), std = c.feature_std();
  if (std <= 0) {
    if (data.train.features.empty()) {
      return absl::InvalidArgumentError(
          "data.standardize needs data.feature_mean and data.feature_std "
          "when there is no training set");
    }
    double sum = 0, sum_sq = 0;
    for (float x : data.train.features) {
      sum += x;
      sum_sq += static_cast<double>(x) * x;
    }
    const double n = static_cast<double>(data.train.features.size());
    mean = sum / n;
    std = std::sqrt(std::max(1e-12, sum_sq / n - mean * mean));
  }
  Standardize(data.train, mean, std);
  Standardize(data.test, mean, std);
  absl::StrAppend(
      &data.description,
      absl::StrFormat(", standardized (mean %.4f, std %.4f)", mean, std));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoadedData> LoadData(const v1::DataConfig& config,
                                    bool test_only,
                                    absl::string_view data_dir_flag) {
  absl::StatusOr<LoadedData> data;
  if (config.source() == "synthetic") {
    data = LoadSynthetic(config, test_only);
  } else if (config.source() == "mnist") {
    data = LoadMnist(config, test_only, data_dir_flag);
  } else if (config.source() == "npy") {
    data = LoadNpy(config, test_only);
  } else {
    data = LoadFiles(config, test_only);
  }
  RETURN_IF_ERROR(data.status());
  data->train = Truncate(std::move(data->train), config.max_train_examples());
  data->test = Truncate(std::move(data->test), config.max_test_examples());
  if (config.standardize()) RETURN_IF_ERROR(StandardizeAll(config, *data));
  absl::StrAppend(&data->description, ": ", data->train.num_examples(),
                  " train and ", data->test.num_examples(), " test examples");
  return data;
}

}  // namespace fedge
