#include "common/ml/model_spec.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/ml/model_cost.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace fedge::ml {

std::vector<std::string> ZooNames() {
  return {"logreg",     "2nn",          "mlp",           "cnn",
          "mobile_cnn", "mobilenet_v2", "shufflenet_v2", "squeezenet"};
}

namespace {

bool HasWidthMultiplier(const std::string& arch) {
  return arch == "mobilenet_v2" || arch == "shufflenet_v2" ||
         arch == "squeezenet";
}

// INVALID_ARGUMENT unless the input is [C, H, W] with H, W >= min_size.
absl::Status CheckImageInput(const ModelSpec& spec, int64_t min_size) {
  const auto& s = spec.input_shape;
  if (s.size() == 3 && s[0] >= 1 && s[1] >= min_size && s[2] >= min_size) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "model '", spec.architecture, "' needs image input [C,H,W] with H,W >= ",
      min_size, ", got [", absl::StrJoin(s, ","), "]"));
}

absl::Status CheckWidthMultiplier(const ModelSpec& spec) {
  const double w = spec.width_multiplier;
  if (!(w > 0 && w <= 4)) {
    return absl::InvalidArgumentError(
        absl::StrCat("width_multiplier must be in (0, 4], got ", w));
  }
  if (w != 1 && !HasWidthMultiplier(spec.architecture)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "width_multiplier applies to mobilenet_v2, shufflenet_v2 and "
        "squeezenet only; got ",
        w, " for '", spec.architecture, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckModelSpec(const ModelSpec& spec) {
  const std::vector<std::string> names = ZooNames();
  const std::string& arch = spec.architecture;
  if (arch == "torchscript") {
    return absl::InvalidArgumentError(
        "model 'torchscript' is not built by the zoo: its network and initial "
        "weights come from the archive (ml::BuildNet in "
        "common/ml/torchscript_model.h, fedge-evaluator --export-initial)");
  }
  if (std::find(names.begin(), names.end(), arch) == names.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown model architecture '", arch,
                     "'; known: ", absl::StrJoin(names, ", ")));
  }
  if (spec.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes must be >= 2, got ", spec.num_classes));
  }
  if (arch == "mlp" && spec.hidden_units.empty()) {
    return absl::InvalidArgumentError(
        "model 'mlp' needs hidden_units (e.g. hidden_units: [200, 200])");
  }
  if (arch == "cnn" || arch == "mobile_cnn") {
    RETURN_IF_ERROR(CheckImageInput(spec, 4));
  }
  if (HasWidthMultiplier(arch)) RETURN_IF_ERROR(CheckImageInput(spec, 8));
  RETURN_IF_ERROR(CheckWidthMultiplier(spec));
  return CheckModelSize(spec);
}

ModelSpec SpecFromConfig(const v1::ModelConfig& config,
                         const std::vector<int64_t>& data_shape,
                         int data_num_classes) {
  ModelSpec spec;
  spec.architecture = config.architecture();
  spec.hidden_units.assign(config.hidden_units().begin(),
                           config.hidden_units().end());
  spec.init_seed = config.init_seed();
  spec.width_multiplier = config.width_multiplier();
  spec.torchscript_path = config.torchscript_path();
  if (!data_shape.empty()) {
    spec.input_shape = data_shape;
  } else if (config.input_shape_size() > 0) {
    spec.input_shape.assign(config.input_shape().begin(),
                            config.input_shape().end());
  }
  spec.num_classes =
      data_num_classes > 0 ? data_num_classes : config.num_classes();
  return spec;
}

v1::ModelSpecProto SpecToProto(const ModelSpec& spec) {
  v1::ModelSpecProto p;
  p.set_architecture(spec.architecture);
  for (int64_t h : spec.hidden_units)
    p.add_hidden_units(static_cast<int32_t>(h));
  for (int64_t d : spec.input_shape) p.add_input_shape(d);
  p.set_num_classes(static_cast<int32_t>(spec.num_classes));
  p.set_width_multiplier(spec.width_multiplier);
  p.set_torchscript_sha256(spec.torchscript_sha256);
  p.set_torchscript_size_bytes(spec.torchscript_size_bytes);
  return p;
}

ModelSpec SpecFromProto(const v1::ModelSpecProto& p) {
  ModelSpec spec;
  spec.architecture = p.architecture();
  spec.hidden_units.assign(p.hidden_units().begin(), p.hidden_units().end());
  spec.input_shape.assign(p.input_shape().begin(), p.input_shape().end());
  spec.num_classes = p.num_classes();
  if (p.width_multiplier() != 0) spec.width_multiplier = p.width_multiplier();
  spec.torchscript_sha256 = p.torchscript_sha256();
  spec.torchscript_size_bytes = p.torchscript_size_bytes();
  return spec;
}

int64_t ScaledChannels(int64_t channels, double width_multiplier) {
  constexpr int64_t kDivisor = 8;
  const double scaled = static_cast<double>(channels) * width_multiplier;
  int64_t rounded = std::max<int64_t>(
      kDivisor,
      static_cast<int64_t>(scaled + kDivisor / 2.0) / kDivisor * kDivisor);
  if (static_cast<double>(rounded) < 0.9 * scaled) rounded += kDivisor;
  return rounded;
}

MobileNetV2Layout MobileNetV2LayoutOf(const ModelSpec& spec) {
  // MobileNetV2's (expansion t, channels c, repeats n, stride s) table, cut
  // to five stages and three stride-2 steps for 28x28 to 32x32 inputs; a
  // stride-1 stem and a 320-wide head (the original's: stride 2, 1280).
  struct Stage {
    int64_t t, c, n, s;
  };
  constexpr Stage kStages[] = {{1, 16, 1, 1},
                               {6, 24, 2, 2},
                               {6, 32, 3, 2},
                               {6, 64, 2, 2},
                               {6, 96, 1, 1}};
  const double w = spec.width_multiplier;
  MobileNetV2Layout layout;
  layout.stem = ScaledChannels(32, w);
  int64_t in = layout.stem;
  for (const Stage& stage : kStages) {
    const int64_t out = ScaledChannels(stage.c, w);
    for (int64_t i = 0; i < stage.n; ++i) {
      layout.blocks.push_back({in, out, i == 0 ? stage.s : 1, stage.t});
      in = out;
    }
  }
  layout.head = ScaledChannels(320, w);
  return layout;
}

ShuffleNetV2Layout ShuffleNetV2LayoutOf(const ModelSpec& spec) {
  // ShuffleNet V2 0.5x's stage widths with half its repeats; a stride-1 stem
  // without max-pool and a 512-wide head (the original's: stride 2 and a
  // max-pool, 1024).
  constexpr int64_t kWidths[] = {48, 96, 192};
  constexpr int64_t kRepeats[] = {2, 4, 2};
  const double w = spec.width_multiplier;
  ShuffleNetV2Layout layout;
  layout.stem = ScaledChannels(24, w);
  int64_t in = layout.stem;
  for (int stage = 0; stage < 3; ++stage) {
    const int64_t out = ScaledChannels(kWidths[stage], w);
    for (int64_t i = 0; i < kRepeats[stage]; ++i) {
      layout.units.push_back({in, out, i == 0 ? 2 : 1});
      in = out;
    }
  }
  layout.head = ScaledChannels(512, w);
  return layout;
}

SqueezeNetLayout SqueezeNetLayoutOf(const ModelSpec& spec) {
  // SqueezeNet 1.1's first six fire modules (squeeze, expand, pool before);
  // a stride-1 3x3 stem (the original's: stride 2).
  struct Fire {
    int64_t squeeze, expand;
    bool pool;
  };
  constexpr Fire kFires[] = {{16, 64, true},  {16, 64, false},
                             {32, 128, true}, {32, 128, false},
                             {48, 192, true}, {64, 256, false}};
  const double w = spec.width_multiplier;
  SqueezeNetLayout layout;
  layout.stem = ScaledChannels(64, w);
  int64_t in = layout.stem;
  for (const Fire& fire : kFires) {
    const int64_t expand = ScaledChannels(fire.expand, w);
    layout.fires.push_back(
        {in, ScaledChannels(fire.squeeze, w), expand, fire.pool});
    in = 2 * expand;
  }
  return layout;
}

namespace {

struct ArchiveDigest {
  std::string sha256;
  int64_t size_bytes = 0;
};

absl::StatusOr<ArchiveDigest> DigestArchive(const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "model 'torchscript' needs torchscript_path (the archive)");
  }
  Sha256 sha;
  ArchiveDigest digest;
  RETURN_IF_ERROR(ReadFileChunks(path, 1 << 20, [&](absl::string_view chunk) {
    sha.Update(chunk);
    digest.size_bytes += static_cast<int64_t>(chunk.size());
    return absl::OkStatus();
  }));
  digest.sha256 = ToHex(sha.Finish());
  return digest;
}

}  // namespace

absl::Status StampArchive(ModelSpec& spec) {
  ASSIGN_OR_RETURN(ArchiveDigest digest, DigestArchive(spec.torchscript_path));
  spec.torchscript_sha256 = std::move(digest.sha256);
  spec.torchscript_size_bytes = digest.size_bytes;
  return absl::OkStatus();
}

absl::Status VerifyArchive(const ModelSpec& spec) {
  ASSIGN_OR_RETURN(ArchiveDigest digest, DigestArchive(spec.torchscript_path));
  if (digest.sha256 != spec.torchscript_sha256 ||
      digest.size_bytes != spec.torchscript_size_bytes) {
    return absl::DataLossError(absl::StrCat(
        "torchscript archive ", spec.torchscript_path, " has sha256 ",
        digest.sha256, " (", digest.size_bytes, " bytes), expected ",
        spec.torchscript_sha256, " (", spec.torchscript_size_bytes, " bytes)"));
  }
  return absl::OkStatus();
}

}  // namespace fedge::ml
