#include "common/ml/model_spec.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedge::ml {

std::vector<std::string> ZooNames() {
  return {"logreg", "2nn", "mlp", "cnn", "mobile_cnn"};
}

absl::Status CheckModelSpec(const ModelSpec& spec) {
  const std::vector<std::string> names = ZooNames();
  const std::string& arch = spec.architecture;
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
  return p;
}

ModelSpec SpecFromProto(const v1::ModelSpecProto& p) {
  ModelSpec spec;
  spec.architecture = p.architecture();
  spec.hidden_units.assign(p.hidden_units().begin(), p.hidden_units().end());
  spec.input_shape.assign(p.input_shape().begin(), p.input_shape().end());
  spec.num_classes = p.num_classes();
  return spec;
}

}  // namespace fedge::ml
