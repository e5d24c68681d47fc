// Turns a DataConfig (proto/fedge/v1/config.proto) into train and test
// Datasets: MNIST-style IDX folders, explicit IDX files, CSV files, or the
// seeded synthetic set. When MNIST files are missing and the config allows
// it, it falls back to the synthetic set and says so in `description`.
#ifndef FEDGE_COMMON_DATA_DATA_SOURCE_H_
#define FEDGE_COMMON_DATA_DATA_SOURCE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/data/dataset.h"
#include "fedge/v1/config.pb.h"

namespace fedge {

struct LoadedData {
  Dataset train;
  Dataset test;                // Empty (0 examples) when the source has none.
  std::string description;     // e.g. "MNIST from data/mnist: 60000 train ..."
  bool used_fallback = false;  // True when synthetic data replaced MNIST.
  // True when train and test already hold only this agent's partition (an
  // agent with a configured partition_index keeps nothing else): take them
  // whole.
  bool partitioned = false;
};

// Loads what `config` names. Errors from the readers name the file and the
// problem; NOT_FOUND for missing MNIST files when synthetic_fallback is off.
// With `test_only`, the training split is not read (train stays empty).
// `data_dir_flag` is the program's flag for config.data_dir, which the
// fallback's description tells the user to pass (fedge-sim and fedge-agent:
// --data_dir; the coordinator's evaluation data: --eval_data.data_dir).
absl::StatusOr<LoadedData> LoadData(
    const v1::DataConfig& config, bool test_only = false,
    absl::string_view data_dir_flag = "--data_dir");

}  // namespace fedge

#endif  // FEDGE_COMMON_DATA_DATA_SOURCE_H_
