#include "common/ml/model_spec.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace fedge::ml {

std::vector<std::string> ZooNames() {
  return {"logreg", "2nn", "mlp", "cnn", "mobile_cnn"};
}

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
  const auto& s = spec.input_shape;
  if ((arch == "cnn" || arch == "mobile_cnn") &&
      (s.size() != 3 || s[1] < 4 || s[2] < 4)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", arch, "' needs image input [C,H,W] with H,W >= 4, got [",
        absl::StrJoin(s, ","), "]"));
  }
  return absl::OkStatus();
}

ModelSpec SpecFromConfig(const v1::ModelConfig& config,
                         const std::vector<int64_t>& data_shape,
                         int data_num_classes) {
  ModelSpec spec;
  spec.architecture = config.architecture();
  spec.hidden_units.assign(config.hidden_units().begin(),
                           config.hidden_units().end());
  spec.init_seed = config.init_seed();
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
  spec.torchscript_sha256 = p.torchscript_sha256();
  spec.torchscript_size_bytes = p.torchscript_size_bytes();
  return spec;
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
