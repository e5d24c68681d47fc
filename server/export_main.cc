// fedge-export: makes what is deployed small and portable (see kUsage and
// docs/deploy.md). Parses the command line into ExportToolOptions; the work
// is in common/ml/export_tool.h.
//
// Exit codes: 0 done, 1 runtime failure, 2 bad usage.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/config_loader.h"
#include "common/fl_config.h"
#include "common/logging.h"
#include "common/ml/blas_kernels.h"
#include "common/ml/export_tool.h"
#include "common/status_macros.h"

namespace {

constexpr char kUsage[] =
    "fedge-export: makes a fedge model small and portable for deployment.\n"
    "\n"
    "usage: fedge-export COMMAND MODEL.fedge [--spec MODEL.spec] "
    "[--archive A.pt] [flags]\n"
    "   or: fedge export|prune|finetune|quantize|distill|evaluate MODEL.fedge "
    "...\n"
    "       (`fedge export` is `fedge-export model`)\n"
    "\n"
    "  model     --format torchscript|onnx -o OUT [--opset 13]\n"
    "            TorchScript (PyTorch, LibTorch) or ONNX (OpenCV DNN, ONNX\n"
    "            Runtime, TensorRT, ...); input [batch, input_shape...],\n"
    "            output logits [batch, num_classes], batch dynamic.\n"
    "  prune     --sparsity 0.8 [--structured] -o OUT.fedge\n"
    "            global magnitude pruning of conv/linear weights, or whole\n"
    "            channels by L1 norm (--structured).\n"
    "  finetune  -o OUT.fedge [--epochs 1 --batch_size 32 "
    "--learning_rate 0.01\n"
    "            --momentum 0.9 --weight_decay 0 --seed 1]\n"
    "            trains on the data's train split; zeros stay zero (mask).\n"
    "  quantize  -o OUT.pt [--calibration-data train|test]\n"
    "            [--calibration-examples 1000] [--engine qnnpack|onednn]\n"
    "            post-training static int8 quantization, as TorchScript (the\n"
    "            float TorchScript it started from is kept as OUT.float.pt).\n"
    "  distill   --student ARCH -o OUT.fedge [--temperature 4] [--epochs 5\n"
    "            --student_hidden_units 100,100 --student_width_multiplier 1]\n"
    "            trains a zoo student on the teacher's softened outputs\n"
    "            (the data's labels are not used).\n"
    "  evaluate  [--limit N] [--features_out F.npy] [--logits_out L.npy]\n"
    "            accuracy on the test split; MODEL may also be a TorchScript\n"
    "            .pt file (float or int8, --engine).\n"
    "\n"
    "MODEL's spec defaults to MODEL with .fedge replaced by .spec (the\n"
    "coordinator writes final_model.fedge and final_model.spec); a\n"
    "'torchscript' model needs its archive (--archive). Written .fedge\n"
    "models get their .spec beside them. Compressing commands print\n"
    "'before' and 'after' lines: file, size_bytes, parameters,\n"
    "nonzero_parameters, macs, nonzero_macs, accuracy.\n"
    "\n"
    "Data (training, calibration, accuracy), as in fedge-sim:\n"
    "  --data_dir DIR (MNIST IDX files; default data/mnist)\n"
    "  --data.<field>=VALUE (fedge.v1.DataConfig: source, csv_*, npy_*,\n"
    "  standardize, feature_mean, feature_std, max_train_examples, ...).\n"
    "Other: --num_threads 1, --python /usr/bin/python3, --scripts_dir DIR\n"
    "(the repository's scripts/; env FEDGE_SCRIPTS_DIR).\n"
    "\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 bad usage.\n";

// Flags of each command (beyond the common ones), with dashes as
// underscores.
const std::map<std::string, std::set<std::string>>& CommandFlags() {
  static const auto* flags = new std::map<std::string, std::set<std::string>>{
      {"model", {"format", "opset"}},
      {"prune", {"sparsity", "structured"}},
      {"finetune",
       {"epochs", "batch_size", "learning_rate", "momentum", "weight_decay",
        "seed"}},
      {"quantize", {"calibration_data", "calibration_examples", "engine"}},
      {"distill",
       {"student", "student_hidden_units", "student_width_multiplier",
        "temperature", "epochs", "batch_size", "learning_rate", "momentum",
        "weight_decay", "seed"}},
      {"evaluate", {"limit", "features_out", "logits_out", "engine"}},
  };
  return *flags;
}

const std::set<std::string>& CommonFlags() {
  static const auto* flags = new std::set<std::string>{
      "o",        "out",         "spec",   "archive",
      "data_dir", "num_threads", "python", "scripts_dir"};
  return *flags;
}

// The command line: command, model path, flags (name -> value; "true" for
// --structured), data overrides.
struct Parsed {
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
  std::vector<std::pair<std::string, std::string>> data;
};

absl::StatusOr<Parsed> Parse(int argc, char** argv) {
  Parsed p;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return absl::CancelledError("help");
    if (arg.empty() || arg[0] != '-') {
      (p.command.empty() ? p.command : p.positional.emplace_back()) = arg;
      continue;
    }
    std::string name = arg.substr(arg.find_first_not_of('-')), value;
    const size_t eq = name.find('=');
    const bool has_value = eq != std::string::npos;
    if (has_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (!absl::StartsWith(name, "data.")) {
      name = absl::StrReplaceAll(name, {{"-", "_"}});
    }
    if (name == "structured" && !has_value) {
      value = "true";
    } else if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError("flag " + arg + " needs a value");
      }
      value = argv[++i];
    }
    if (absl::StartsWith(name, "data.")) {
      p.data.emplace_back(name.substr(5), value);
    } else {
      p.flags[name] = value;
    }
  }
  return p;
}

absl::Status CheckFlags(const Parsed& p) {
  auto allowed = CommandFlags().find(p.command);
  if (allowed == CommandFlags().end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        p.command.empty() ? "no command"
                          : "unknown command '" + p.command + "'",
        " (model, prune, finetune, quantize, distill, evaluate; see --help)"));
  }
  if (p.positional.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("fedge-export ", p.command, " takes one model file, got ",
                     p.positional.size(), " (see --help)"));
  }
  for (const auto& [name, value] : p.flags) {
    if (!CommonFlags().count(name) && !allowed->second.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " does not apply to 'fedge-export ",
                       p.command, "' (see --help)"));
    }
  }
  return absl::OkStatus();
}

// Reads flag `name` into `out` when present.
template <typename T>
absl::Status Read(const Parsed& p, const std::string& name, T* out) {
  auto it = p.flags.find(name);
  if (it == p.flags.end()) return absl::OkStatus();
  bool ok;
  if constexpr (std::is_same_v<T, std::string>) {
    *out = it->second;
    ok = true;
  } else if constexpr (std::is_same_v<T, bool>) {
    ok = absl::SimpleAtob(it->second, out);
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = absl::SimpleAtod(it->second, out);
  } else {
    ok = absl::SimpleAtoi(it->second, out);
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "--", name, " got '", it->second, "', which is not a valid value"));
}

absl::Status ReadList(const Parsed& p, const std::string& name,
                      std::vector<int64_t>* out) {
  auto it = p.flags.find(name);
  if (it == p.flags.end()) return absl::OkStatus();
  out->clear();
  for (absl::string_view part : absl::StrSplit(it->second, ',')) {
    int64_t v;
    if (!absl::SimpleAtoi(part, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " must be comma-separated integers, got '",
                       it->second, "'"));
    }
    out->push_back(v);
  }
  return absl::OkStatus();
}

absl::Status ReadData(const Parsed& p, fedge::ml::ExportToolOptions* o) {
  o->data.set_synthetic_fallback(false);  // Accuracy on real data or none.
  o->data_given = !p.data.empty() || p.flags.count("data_dir");
  if (auto it = p.flags.find("data_dir"); it != p.flags.end()) {
    o->data.set_data_dir(it->second);
  }
  for (const auto& [field, value] : p.data) {
    RETURN_IF_ERROR(fedge::Annotate(
        fedge::SetFieldByPath(field, value, &o->data), "--data." + field));
  }
  // The rules fedge-sim and the agents apply (a known source, its paths).
  return fedge::ValidateDataConfig(o->data, "data.");
}

absl::Status ToOptions(const Parsed& p, fedge::ml::ExportToolOptions* o) {
  o->command = p.command;
  o->model.model_path = p.positional[0];
  RETURN_IF_ERROR(Read(p, "out", &o->out));
  RETURN_IF_ERROR(Read(p, "o", &o->out));
  RETURN_IF_ERROR(Read(p, "spec", &o->model.spec_path));
  RETURN_IF_ERROR(Read(p, "archive", &o->model.archive_path));
  RETURN_IF_ERROR(Read(p, "format", &o->format));
  RETURN_IF_ERROR(Read(p, "opset", &o->opset));
  RETURN_IF_ERROR(Read(p, "sparsity", &o->prune.sparsity));
  RETURN_IF_ERROR(Read(p, "structured", &o->prune.structured));
  RETURN_IF_ERROR(Read(p, "epochs", &o->sgd.epochs));
  RETURN_IF_ERROR(Read(p, "batch_size", &o->sgd.batch_size));
  RETURN_IF_ERROR(Read(p, "learning_rate", &o->sgd.learning_rate));
  RETURN_IF_ERROR(Read(p, "momentum", &o->sgd.momentum));
  RETURN_IF_ERROR(Read(p, "weight_decay", &o->sgd.weight_decay));
  RETURN_IF_ERROR(Read(p, "seed", &o->sgd.seed));
  RETURN_IF_ERROR(Read(p, "student", &o->student.architecture));
  RETURN_IF_ERROR(
      ReadList(p, "student_hidden_units", &o->student.hidden_units));
  RETURN_IF_ERROR(
      Read(p, "student_width_multiplier", &o->student.width_multiplier));
  RETURN_IF_ERROR(Read(p, "temperature", &o->temperature));
  RETURN_IF_ERROR(Read(p, "calibration_data", &o->calibration_split));
  RETURN_IF_ERROR(Read(p, "calibration_examples", &o->calibration_examples));
  RETURN_IF_ERROR(Read(p, "engine", &o->engine));
  RETURN_IF_ERROR(Read(p, "limit", &o->limit));
  RETURN_IF_ERROR(Read(p, "features_out", &o->features_out));
  RETURN_IF_ERROR(Read(p, "logits_out", &o->logits_out));
  RETURN_IF_ERROR(Read(p, "num_threads", &o->num_threads));
  RETURN_IF_ERROR(Read(p, "python", &o->python.python));
  RETURN_IF_ERROR(Read(p, "scripts_dir", &o->python.scripts_dir));
  return ReadData(p, o);
}

int Fail(int code, absl::string_view message) {
  absl::FPrintF(stderr, "fedge-export: %s\n", message);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  fedge::SetMinLogLevel(fedge::LogLevel::kWarning);
  fedge::ml::ChooseBlasKernels();  // Before any thread or matrix product.
  absl::StatusOr<Parsed> parsed = Parse(argc, argv);
  if (absl::IsCancelled(parsed.status()) || argc == 1) {
    absl::PrintF("%s", kUsage);
    return argc == 1 ? 2 : 0;
  }
  if (!parsed.ok()) return Fail(2, parsed.status().message());
  if (absl::Status s = CheckFlags(*parsed); !s.ok()) {
    return Fail(2, s.message());
  }
  fedge::ml::ExportToolOptions options;
  const char* scripts = std::getenv("FEDGE_SCRIPTS_DIR");
  options.python.scripts_dir = scripts != nullptr ? scripts : FEDGE_SCRIPTS_DIR;
  if (absl::Status s = ToOptions(*parsed, &options); !s.ok()) {
    return Fail(2, s.message());
  }
  absl::Status status = fedge::ml::RunExportTool(options, stdout);
  if (!status.ok()) {
    return Fail(absl::IsInvalidArgument(status) ? 2 : 1, status.ToString());
  }
  return 0;
}
