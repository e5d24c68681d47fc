// The subcommands of fedge-export (server/export_main.cc parses the command
// line into ExportToolOptions; this runs them): export a model to
// TorchScript or ONNX, prune, fine-tune, quantize to int8, distill, and
// evaluate. Each compressing subcommand prints what the model was and
// became as key=value lines, "before ..." and "after ...":
//   file, size_bytes, parameters, nonzero_parameters, macs, nonzero_macs
//   (multiply-accumulates per example, model_cost.h; counting only
//   non-zero weights), accuracy (on the test split of the data, or "none"
//   without data).
//
// Thread-compatible: one command at a time per process.
#ifndef FEDGE_COMMON_ML_EXPORT_TOOL_H_
#define FEDGE_COMMON_ML_EXPORT_TOOL_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/ml/compress.h"
#include "common/ml/export.h"
#include "common/ml/prune.h"
#include "fedge/v1/config.pb.h"

namespace fedge::ml {

struct ExportToolOptions {
  // "model", "prune", "finetune", "quantize", "distill" or "evaluate".
  std::string command;
  ModelFiles model;
  std::string out;  // -o: the file to write.
  // model: "torchscript" or "onnx", and the ONNX opset.
  std::string format;
  int opset = 13;
  PruneOptions prune;
  // finetune, distill: local training.
  SgdOptions sgd;
  // distill: the student, a zoo architecture (with hidden_units for "mlp",
  // width_multiplier for the width-scaled networks), and the temperature.
  ModelSpec student;
  double temperature = 4;
  // quantize: engine, calibration split ("train" or "test") and examples;
  // the float TorchScript the int8 file is compared with is kept beside
  // it ("m.pt" -> "m.float.pt").
  std::string engine = "qnnpack";
  std::string calibration_split = "train";
  int64_t calibration_examples = 1000;
  // Where examples come from: training (finetune, distill, calibration) and
  // accuracy (the test split). Without data (data_given false and no data
  // at the default place) accuracy is reported as "none".
  v1::DataConfig data;
  bool data_given = false;
  // evaluate: examples used (0 = all) and .npy outputs ("" = none).
  int64_t limit = 0;
  std::string features_out;
  std::string logits_out;
  PythonOptions python;
  int num_threads = 1;  // LibTorch intra-op threads.
};

// Runs `options.command`, printing its report to `out`. INVALID_ARGUMENT
// for a bad option or input (the caller's usage error); the errors of the
// functions in export.h, prune.h and compress.h otherwise.
absl::Status RunExportTool(const ExportToolOptions& options, std::FILE* out);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_EXPORT_TOOL_H_
