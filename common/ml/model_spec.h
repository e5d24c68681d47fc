// ModelSpec: which zoo network to build, without LibTorch, and its
// conversions from the configuration (ModelConfig) and to/from the wire
// (ModelSpecProto), so the simulator, coordinator and agent agree on it.
#ifndef FEDGE_COMMON_ML_MODEL_SPEC_H_
#define FEDGE_COMMON_ML_MODEL_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "fedge/v1/config.pb.h"
#include "fedge/v1/federation.pb.h"

namespace fedge::ml {

struct ModelSpec {
  std::string architecture = "2nn";
  std::vector<int64_t> input_shape = {1, 28, 28};  // C, H, W of one example.
  int64_t num_classes = 10;
  std::vector<int64_t> hidden_units;  // "mlp" only.
  uint64_t init_seed = 1;             // Seed of the initial weights.
  // Architecture "torchscript" (common/ml/torchscript_model.h): the archive
  // on this machine (not on the wire: each party has its own copy), and the
  // SHA-256 (lower-case hex) and size of the archive the coordinator
  // publishes (StampArchive), which a copy must match (VerifyArchive).
  std::string torchscript_path;
  std::string torchscript_sha256;
  int64_t torchscript_size_bytes = 0;
};

// The zoo's names, for help texts and errors.
std::vector<std::string> ZooNames();

// OK when the zoo can build `spec`; INVALID_ARGUMENT for an unknown
// architecture (listing the known ones), fewer than 2 classes, "mlp" without
// hidden_units, or a CNN on input that is not [C, H, W] with H, W >= 4.
absl::Status CheckModelSpec(const ModelSpec& spec);

// From the config; input shape and number of classes from the data when
// given (non-empty / > 0), else from the config (input_shape defaults to
// [1, 28, 28]).
ModelSpec SpecFromConfig(const v1::ModelConfig& config,
                         const std::vector<int64_t>& data_shape = {},
                         int data_num_classes = 0);
v1::ModelSpecProto SpecToProto(const ModelSpec& spec);
ModelSpec SpecFromProto(const v1::ModelSpecProto& proto);

// Sets spec.torchscript_sha256 and torchscript_size_bytes from the file at
// spec.torchscript_path. INVALID_ARGUMENT when the path is empty; the file's
// read errors (common/file_util.h ErrnoStatus: NOT_FOUND, ...).
absl::Status StampArchive(ModelSpec& spec);

// OK when the file at spec.torchscript_path has spec.torchscript_sha256 and
// torchscript_size_bytes. DATA_LOSS (naming the file, expected vs found)
// when it differs (fetch it again); the file's read errors.
absl::Status VerifyArchive(const ModelSpec& spec);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_MODEL_SPEC_H_
