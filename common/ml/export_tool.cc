#include "common/ml/export_tool.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/data/data_source.h"
#include "common/ml/model_cost.h"
#include "common/ml/model_files.h"
#include "common/ml/torch_converters.h"
#include "common/ml/torch_status.h"
#include "common/ml/torchscript_model.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

// What a model is and does, for the before / after lines.
struct Report {
  std::string file;
  int64_t size_bytes = -1;
  SparsityStats stats;
  std::optional<double> accuracy;
};

std::string OrNone(int64_t v) { return v < 0 ? "none" : absl::StrCat(v); }

std::string AccuracyText(const std::optional<double>& a) {
  return a.has_value() ? absl::StrFormat("%.4f", *a) : "none";
}

void PrintReport(std::FILE* out, absl::string_view label, const Report& r) {
  absl::FPrintF(out,
                "%s file=%s size_bytes=%s parameters=%d nonzero_parameters=%d "
                "macs=%s nonzero_macs=%s accuracy=%s\n",
                label, r.file, OrNone(r.size_bytes), r.stats.parameters,
                r.stats.nonzero_parameters, OrNone(r.stats.macs),
                OrNone(r.stats.nonzero_macs), AccuracyText(r.accuracy));
}

// Examples for training and accuracy. `required`: fail without them;
// otherwise no data is reported as nullopt (accuracy "none").
absl::StatusOr<std::optional<LoadedData>> LoadExamples(
    const ExportToolOptions& o, bool need_train, bool required,
    std::FILE* out) {
  absl::StatusOr<LoadedData> data = LoadData(o.data, !need_train);
  if (!data.ok()) {
    if (required || o.data_given) {
      return Annotate(data.status(),
                      "cannot load the data (set it with --data.source, "
                      "--data_dir, ...)");
    }
    absl::FPrintF(out, "# no data (%s): accuracy=none\n",
                  data.status().message());
    return std::optional<LoadedData>();
  }
  absl::FPrintF(out, "# data: %s\n", data->description);
  return std::optional<LoadedData>(*std::move(data));
}

// The split accuracy is measured on: test, else train.
const Dataset& EvalSplit(const LoadedData& data) {
  return data.test.num_examples() > 0 ? data.test : data.train;
}

absl::Status CheckFits(const Dataset& data, const ModelSpec& spec) {
  if (data.example_shape == spec.input_shape &&
      data.num_classes <= spec.num_classes) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "the data's examples are [", absl::StrJoin(data.example_shape, ","),
      "] with ", data.num_classes, " classes; the model takes [",
      absl::StrJoin(spec.input_shape, ","), "] with ", spec.num_classes));
}

// The report of `net` (holding `state`) stored in `file`.
absl::StatusOr<Report> Describe(const std::string& file, const ModelSpec& spec,
                                const ModelState& state, Net& net,
                                const std::optional<LoadedData>& data) {
  Report r;
  r.file = file;
  ASSIGN_OR_RETURN(r.size_bytes, FileSize(file));
  ASSIGN_OR_RETURN(r.stats, MeasureSparsity(spec, state));
  if (data.has_value()) {
    RETURN_IF_ERROR(CheckFits(EvalSplit(*data), spec));
    ASSIGN_OR_RETURN(r.accuracy, EvaluateAccuracy(net, EvalSplit(*data)));
  }
  return r;
}

// Writes `state` (sparse where that is smaller) and its spec beside it.
absl::Status WriteModel(const std::string& path, const ModelSpec& spec,
                        const ModelState& state) {
  RETURN_IF_ERROR(WriteSparseModelFile(path, state));
  return WriteSpecFile(DefaultSpecPath(path), spec);
}

absl::Status CheckOut(const ExportToolOptions& o) {
  if (o.out.empty()) {
    return absl::InvalidArgumentError("-o OUT is required");
  }
  return absl::OkStatus();
}

absl::Status RunModel(const ExportToolOptions& o, std::FILE* out) {
  RETURN_IF_ERROR(CheckOut(o));
  if (o.format != "torchscript" && o.format != "onnx") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--format must be torchscript or onnx, got '", o.format, "'"));
  }
  ASSIGN_OR_RETURN(LoadedModel m, LoadModel(o.model));
  const std::string script =
      o.format == "torchscript" ? o.out : o.out + ".torchscript.pt";
  int64_t removed = 0;
  RETURN_IF_ERROR(SaveTorchScript(*m.net, m.spec, script, &removed));
  if (o.format == "onnx") {
    absl::Status converted =
        ConvertToOnnx(script, m.spec, o.out, o.opset, o.python);
    std::remove(script.c_str());
    RETURN_IF_ERROR(converted);
  }
  ASSIGN_OR_RETURN(int64_t size, FileSize(o.out));
  ASSIGN_OR_RETURN(ModelState exported,
                   RemoveZeroChannels(m.spec, m.state, &removed));
  ASSIGN_OR_RETURN(SparsityStats stats, MeasureSparsity(m.spec, exported));
  absl::FPrintF(out,
                "exported format=%s file=%s size_bytes=%d parameters=%d "
                "macs=%s removed_channels=%d input_shape=%s num_classes=%d\n",
                o.format, o.out, size, stats.parameters, OrNone(stats.macs),
                removed, absl::StrJoin(m.spec.input_shape, ","),
                m.spec.num_classes);
  return absl::OkStatus();
}

absl::Status RunPrune(const ExportToolOptions& o, std::FILE* out) {
  RETURN_IF_ERROR(CheckOut(o));
  ASSIGN_OR_RETURN(LoadedModel m, LoadModel(o.model));
  ASSIGN_OR_RETURN(std::optional<LoadedData> data,
                   LoadExamples(o, false, false, out));
  ASSIGN_OR_RETURN(Report before,
                   Describe(o.model.model_path, m.spec, m.state, *m.net, data));
  ASSIGN_OR_RETURN(PruneResult r, Prune(m.spec, m.state, o.prune));
  RETURN_IF_ERROR(WriteModel(o.out, r.spec, r.state));
  ASSIGN_OR_RETURN(std::shared_ptr<Net> net, BuildNet(r.spec));
  RETURN_IF_ERROR(ImportState(r.state, *net));
  ASSIGN_OR_RETURN(Report after, Describe(o.out, r.spec, r.state, *net, data));
  PrintReport(out, "before", before);
  PrintReport(out, "after", after);
  absl::FPrintF(out, "pruned sparsity=%.4f weight_sparsity=%.4f structured=%s",
                o.prune.sparsity, after.stats.weight_sparsity(),
                o.prune.structured ? "true" : "false");
  if (o.prune.structured) {
    absl::FPrintF(out, " channels_pruned=%d channels_total=%d",
                  r.channels_pruned, r.channels_total);
  }
  absl::FPrintF(out, "\n");
  if (!r.note.empty()) absl::FPrintF(out, "# %s\n", r.note);
  return absl::OkStatus();
}

absl::Status RunFinetune(const ExportToolOptions& o, std::FILE* out) {
  RETURN_IF_ERROR(CheckOut(o));
  ASSIGN_OR_RETURN(LoadedModel m, LoadModel(o.model));
  ASSIGN_OR_RETURN(std::optional<LoadedData> data,
                   LoadExamples(o, true, true, out));
  RETURN_IF_ERROR(CheckFits(data->train, m.spec));
  ASSIGN_OR_RETURN(Report before,
                   Describe(o.model.model_path, m.spec, m.state, *m.net, data));
  ASSIGN_OR_RETURN(ModelState mask, PruningMask(m.spec, m.state));
  ASSIGN_OR_RETURN(TrainStats stats,
                   FinetuneMasked(*m.net, data->train, o.sgd, mask));
  ASSIGN_OR_RETURN(ModelState state, ExportState(*m.net));
  RETURN_IF_ERROR(WriteModel(o.out, m.spec, state));
  ASSIGN_OR_RETURN(Report after, Describe(o.out, m.spec, state, *m.net, data));
  PrintReport(out, "before", before);
  PrintReport(out, "after", after);
  absl::FPrintF(out,
                "finetuned epochs=%d steps=%d last_epoch_loss=%.4f "
                "weight_sparsity=%.4f seconds=%.1f\n",
                o.sgd.epochs, stats.steps, stats.last_epoch_loss,
                after.stats.weight_sparsity(), stats.seconds);
  return absl::OkStatus();
}

// The first `n` examples of the calibration split.
absl::StatusOr<Dataset> CalibrationSet(const ExportToolOptions& o,
                                       const LoadedData& data) {
  if (o.calibration_split != "train" && o.calibration_split != "test") {
    return absl::InvalidArgumentError(
        absl::StrCat("--calibration-data must be train or test, got '",
                     o.calibration_split, "'"));
  }
  if (o.calibration_examples < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--calibration-examples must be >= 1, got ", o.calibration_examples));
  }
  const Dataset& split =
      o.calibration_split == "train" ? data.train : data.test;
  std::vector<int64_t> first(
      std::min(o.calibration_examples, split.num_examples()));
  for (size_t i = 0; i < first.size(); ++i) first[i] = i;
  return Subset(split, first);
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// Where the float TorchScript goes beside int8 file `out`: "m.pt" ->
// "m.float.pt".
std::string FloatPath(const std::string& out) {
  const std::string stem =
      absl::EndsWith(out, ".pt") ? out.substr(0, out.size() - 3) : out;
  return stem + ".float.pt";
}

absl::Status RunQuantize(const ExportToolOptions& o, std::FILE* out) {
  RETURN_IF_ERROR(CheckOut(o));
  ASSIGN_OR_RETURN(LoadedModel m, LoadModel(o.model));
  ASSIGN_OR_RETURN(std::optional<LoadedData> data,
                   LoadExamples(o, o.calibration_split == "train", true, out));
  ASSIGN_OR_RETURN(Dataset calibration, CalibrationSet(o, *data));
  RETURN_IF_ERROR(CheckFits(calibration, m.spec));
  const std::string float_path = FloatPath(o.out);
  RETURN_IF_ERROR(SaveTorchScript(*m.net, m.spec, float_path));
  ASSIGN_OR_RETURN(Report before,
                   Describe(float_path, m.spec, m.state, *m.net, data));
  QuantizeOptions q;
  q.engine = o.engine;
  q.python = o.python;
  RETURN_IF_ERROR(
      QuantizeInt8(float_path, calibration, DirOf(o.out), o.out, q));
  RETURN_IF_ERROR(SetQuantizedEngine(o.engine));
  ASSIGN_OR_RETURN(torch::jit::Module int8, LoadTorchScriptFile(o.out));
  Report after = before;
  after.file = o.out;
  ASSIGN_OR_RETURN(after.size_bytes, FileSize(o.out));
  ASSIGN_OR_RETURN(after.accuracy, EvaluateAccuracy(int8, EvalSplit(*data)));
  PrintReport(out, "before", before);
  PrintReport(out, "after", after);
  absl::FPrintF(out,
                "int8 size_ratio=%.4f accuracy_drop_pp=%.2f engine=%s "
                "calibration_examples=%d calibration_split=%s\n",
                static_cast<double>(after.size_bytes) / before.size_bytes,
                100 * (*before.accuracy - *after.accuracy), o.engine,
                calibration.num_examples(), o.calibration_split);
  return absl::OkStatus();
}

absl::StatusOr<ModelSpec> StudentSpec(const ExportToolOptions& o,
                                      const ModelSpec& teacher) {
  ModelSpec s = o.student;
  s.input_shape = teacher.input_shape;
  s.num_classes = teacher.num_classes;
  if (s.architecture.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--student ARCH is required (one of ",
                     absl::StrJoin(ZooNames(), ", "), ")"));
  }
  RETURN_IF_ERROR(Annotate(CheckModelSpec(s), "--student"));
  return s;
}

absl::Status RunDistill(const ExportToolOptions& o, std::FILE* out) {
  RETURN_IF_ERROR(CheckOut(o));
  ASSIGN_OR_RETURN(LoadedModel teacher, LoadModel(o.model));
  ASSIGN_OR_RETURN(ModelSpec spec, StudentSpec(o, teacher.spec));
  ASSIGN_OR_RETURN(std::optional<LoadedData> data,
                   LoadExamples(o, true, true, out));
  RETURN_IF_ERROR(CheckFits(data->train, teacher.spec));
  ASSIGN_OR_RETURN(Report before, Describe(o.model.model_path, teacher.spec,
                                           teacher.state, *teacher.net, data));
  ASSIGN_OR_RETURN(std::shared_ptr<Net> student, BuildModel(spec));
  DistillOptions d;
  d.sgd = o.sgd;
  d.temperature = o.temperature;
  ASSIGN_OR_RETURN(TrainStats stats,
                   Distill(*teacher.net, *student, data->train, d));
  ASSIGN_OR_RETURN(ModelState state, ExportState(*student));
  RETURN_IF_ERROR(WriteModel(o.out, spec, state));
  ASSIGN_OR_RETURN(Report after, Describe(o.out, spec, state, *student, data));
  PrintReport(out, "before", before);
  PrintReport(out, "after", after);
  absl::FPrintF(out,
                "distilled_student=%s params=%d macs=%s accuracy=%s "
                "teacher=%s teacher_params=%d teacher_accuracy=%s "
                "temperature=%g epochs=%d steps=%d seconds=%.1f\n",
                spec.architecture, after.stats.parameters,
                OrNone(after.stats.macs), AccuracyText(after.accuracy),
                teacher.spec.architecture, before.stats.parameters,
                AccuracyText(before.accuracy), o.temperature, o.sgd.epochs,
                stats.steps, stats.seconds);
  return absl::OkStatus();
}

absl::Status WriteOutputs(const ExportToolOptions& o, const Dataset& set,
                          const Logits& logits) {
  if (!o.logits_out.empty()) {
    RETURN_IF_ERROR(WriteNpy(o.logits_out,
                             {logits.num_examples, logits.num_classes},
                             logits.values));
  }
  if (o.features_out.empty()) return absl::OkStatus();
  std::vector<int64_t> shape = {logits.num_examples};
  shape.insert(shape.end(), set.example_shape.begin(), set.example_shape.end());
  return WriteNpy(o.features_out, shape,
                  absl::MakeConstSpan(set.features)
                      .subspan(0, logits.num_examples * set.example_size()));
}

// Accuracy of the first logits.num_examples examples.
double AccuracyOf(const Logits& logits, const Dataset& set) {
  int64_t correct = 0;
  for (int64_t i = 0; i < logits.num_examples; ++i) {
    const float* row = logits.values.data() + i * logits.num_classes;
    const int64_t top = std::max_element(row, row + logits.num_classes) - row;
    correct += top == set.labels[i];
  }
  return logits.num_examples > 0
             ? static_cast<double>(correct) / logits.num_examples
             : 0;
}

absl::Status RunEvaluate(const ExportToolOptions& o, std::FILE* out) {
  if (o.limit < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--limit must be >= 0, got ", o.limit));
  }
  ASSIGN_OR_RETURN(std::optional<LoadedData> data,
                   LoadExamples(o, false, true, out));
  const Dataset& set = EvalSplit(*data);
  Logits logits;
  if (absl::EndsWith(o.model.model_path, ".pt")) {
    RETURN_IF_ERROR(SetQuantizedEngine(o.engine));
    ASSIGN_OR_RETURN(torch::jit::Module module,
                     LoadTorchScriptFile(o.model.model_path));
    ASSIGN_OR_RETURN(logits, ComputeLogits(module, set, o.limit));
  } else {
    ASSIGN_OR_RETURN(LoadedModel m, LoadModel(o.model));
    RETURN_IF_ERROR(CheckFits(set, m.spec));
    ASSIGN_OR_RETURN(logits, ComputeLogits(*m.net, set, o.limit));
  }
  RETURN_IF_ERROR(WriteOutputs(o, set, logits));
  ASSIGN_OR_RETURN(int64_t size, FileSize(o.model.model_path));
  absl::FPrintF(out,
                "evaluate file=%s size_bytes=%d num_examples=%d "
                "accuracy=%.4f\n",
                o.model.model_path, size, logits.num_examples,
                AccuracyOf(logits, set));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunExportTool(const ExportToolOptions& options, std::FILE* out) {
  at::set_num_threads(std::max(1, options.num_threads));
  const std::string& c = options.command;
  if (c == "model") return RunModel(options, out);
  if (c == "prune") return RunPrune(options, out);
  if (c == "finetune") return RunFinetune(options, out);
  if (c == "quantize") return RunQuantize(options, out);
  if (c == "distill") return RunDistill(options, out);
  if (c == "evaluate") return RunEvaluate(options, out);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command '", c,
                   "' (model, prune, finetune, quantize, distill, evaluate)"));
}

}  // namespace fedge::ml
