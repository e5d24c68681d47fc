// ModelSpec: which zoo network to build, without LibTorch, and its
// conversions from the configuration (ModelConfig) and to/from the wire
// (ModelSpecProto), so the simulator, coordinator and agent agree on it.
// Also the channel layouts of the width-scaled networks, shared by the
// LibTorch modules (model_zoo.cc) and the torch-free layer list
// (model_cost.h), so that each layout is written down once.
//
// Plain values and pure functions: thread-safe.
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
  // Scales the channel widths of "mobilenet_v2", "shufflenet_v2" and
  // "squeezenet" (see ScaledChannels); must be 1 for the other networks.
  double width_multiplier = 1.0;
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
// hidden_units, "cnn" or "mobile_cnn" on input that is not [C, H, W] with
// H, W >= 4, "mobilenet_v2", "shufflenet_v2" or "squeezenet" on input that
// is not [C, H, W] with H, W >= 8, a width_multiplier outside (0, 4] (or
// other than 1 for a network that has no width multiplier), or sizes that
// cannot be counted: an input dimension < 1 or more than 2^32 input
// elements, a hidden width outside [1, 2^31), 2^31 classes or more, a
// parameter or MAC count beyond int64 (CheckModelSize, model_cost.h).
absl::Status CheckModelSpec(const ModelSpec& spec);

// From the config; input shape and number of classes from the data when
// given (non-empty / > 0), else from the config (input_shape defaults to
// [1, 28, 28]).
ModelSpec SpecFromConfig(const v1::ModelConfig& config,
                         const std::vector<int64_t>& data_shape = {},
                         int data_num_classes = 0);
v1::ModelSpecProto SpecToProto(const ModelSpec& spec);
// A proto without width_multiplier (0, from an older peer) means 1.
ModelSpec SpecFromProto(const v1::ModelSpecProto& proto);

// ---------------------------------------------------------------------------
// Layouts of the width-scaled networks, for a spec that CheckModelSpec
// accepts.

// `channels` * `width_multiplier` rounded as MobileNet rounds it: to the
// nearest multiple of 8, at least 8, and never more than 10% below.
int64_t ScaledChannels(int64_t channels, double width_multiplier);

// "mobilenet_v2": a 3x3 stem convolution, inverted-residual blocks, a 1x1
// head convolution. A block expands `in` to in * expansion channels (1x1,
// skipped when expansion is 1), filters them depthwise (3x3, `stride`) and
// projects them linearly to `out` (1x1); it adds its input when stride is 1
// and in == out.
struct InvertedResidualBlock {
  int64_t in, out, stride, expansion;
};
struct MobileNetV2Layout {
  int64_t stem;
  std::vector<InvertedResidualBlock> blocks;
  int64_t head;
};
MobileNetV2Layout MobileNetV2LayoutOf(const ModelSpec& spec);

// "shufflenet_v2": a 3x3 stem convolution, ShuffleNet V2 units, a 1x1 head
// convolution. A stride-1 unit (in == out) splits its channels in halves and
// transforms one; a stride-2 unit transforms its whole input in two branches
// of out / 2 channels each.
struct ShuffleUnit {
  int64_t in, out, stride;
};
struct ShuffleNetV2Layout {
  int64_t stem;
  std::vector<ShuffleUnit> units;
  int64_t head;
};
ShuffleNetV2Layout ShuffleNetV2LayoutOf(const ModelSpec& spec);

// "squeezenet": a 3x3 stem convolution, fire modules (squeeze 1x1 to
// `squeeze` channels, expand to `expand` channels with 1x1 and `expand`
// with 3x3, concatenated: 2 * expand out), a 1x1 classifier convolution.
// pool_before: a 3x3, stride-2 max-pool precedes the module.
struct FireModule {
  int64_t in, squeeze, expand;
  bool pool_before;
};
struct SqueezeNetLayout {
  int64_t stem;
  std::vector<FireModule> fires;
};
SqueezeNetLayout SqueezeNetLayoutOf(const ModelSpec& spec);
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
