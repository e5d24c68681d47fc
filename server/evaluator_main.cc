// fedge-evaluator: the coordinator's LibTorch helper, run as a child process
// so that the coordinator never loads LibTorch. Not meant to be run by hand.
//
//   fedge-evaluator CONFIG.binpb
//       Evaluates models on a central test set for fedge-coordinator (see
//       server/evaluator_process.h for the protocol). CONFIG is a serialized
//       fedge.v1.EvaluatorConfig; its model may be a zoo network or a
//       TorchScript archive (architecture "torchscript", torchscript_path).
//
//   fedge-evaluator --export-initial ARCHIVE OUT.fedge
//                   [--input_shape 1,28,28] [--num_classes 10]
//       Loads and checks a TorchScript archive (common/ml/torchscript_model.h)
//       for examples of input_shape and num_classes classes (defaults as
//       above), and writes its parameters and buffers, the federation's
//       initial model and tensor schema, to OUT.fedge in the canonical model
//       encoding (common/model_codec.h), atomically. Prints
//       "ok <sha256 of the encoding>" and exits 0, or "error <message>" and
//       exits 1.
#include <ATen/Parallel.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/data/data_source.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/ml/blas_kernels.h"
#include "common/ml/model_spec.h"
#include "common/ml/torch_trainer.h"
#include "common/ml/torchscript_model.h"
#include "common/model_codec.h"
#include "common/status_macros.h"
#include "fedge/v1/config.pb.h"

namespace {

constexpr char kUsage[] =
    "usage: fedge-evaluator CONFIG.binpb | fedge-evaluator --export-initial "
    "ARCHIVE OUT.fedge [--input_shape 1,28,28] [--num_classes 10]";

constexpr char kHelp[] =
    "\n"
    "fedge-evaluator is fedge-coordinator's LibTorch helper, started by it\n"
    "(config field evaluator_path); it is not meant to be run by hand.\n"
    "  CONFIG.binpb   serve central evaluations: a serialized\n"
    "                 fedge.v1.EvaluatorConfig; models come on stdin\n"
    "                 (server/evaluator_process.h)\n"
    "  --export-initial ARCHIVE OUT.fedge\n"
    "                 write a TorchScript archive's parameters as the\n"
    "                 federation's initial model\n";

int Fail(absl::string_view message) {
  absl::PrintF("error %s\n", message);
  std::fflush(stdout);
  return 1;
}

// Reads one length-prefixed model from stdin; false at EOF.
bool ReadModel(fedge::ModelDecoder& decoder, absl::Status* status) {
  uint64_t size;
  if (std::fread(&size, sizeof(size), 1, stdin) != 1) return false;
  decoder.SetExpectedSize(static_cast<int64_t>(size));
  std::string buf(1 << 20, '\0');
  while (size > 0 && status->ok()) {
    const size_t n =
        std::fread(buf.data(), 1, std::min<uint64_t>(size, buf.size()), stdin);
    if (n == 0) {
      *status = absl::DataLossError("truncated model on stdin");
      return false;
    }
    *status = decoder.Feed(absl::string_view(buf.data(), n));
    size -= n;
  }
  return true;
}

// The evaluation service: "ready", then one answer per model on stdin.
int ServeEvaluations(const char* config_path) {
  std::ifstream in(config_path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  fedge::v1::EvaluatorConfig config;
  if (!in || !config.ParseFromString(bytes.str())) {
    return Fail(std::string("cannot read ") + config_path);
  }
  at::set_num_threads(config.num_threads());
  // The coordinator's evaluation data: its flag is --eval_data.data_dir.
  auto data = fedge::LoadData(config.data(), /*test_only=*/true,
                              "--eval_data.data_dir");
  if (!data.ok()) return Fail(data.status().message());
  fedge::ml::TorchTrainerOptions options;
  options.model = fedge::ml::SpecFromConfig(config.model());
  options.train = &data->test;
  options.eval = &data->test;
  auto trainer = fedge::ml::TorchTrainer::Create(options);
  if (!trainer.ok()) return Fail(trainer.status().message());
  absl::PrintF("ready %s\n", data->description);
  std::fflush(stdout);
  while (true) {
    fedge::ModelDecoder decoder;
    absl::Status status;
    if (!ReadModel(decoder, &status)) break;
    absl::StatusOr<fedge::ModelState> model =
        status.ok() ? decoder.Finish()
                    : absl::StatusOr<fedge::ModelState>(status);
    absl::StatusOr<fedge::EvalMetrics> m =
        model.ok() ? (*trainer)->Evaluate(*model)
                   : absl::StatusOr<fedge::EvalMetrics>(model.status());
    if (m.ok()) {
      absl::PrintF("ok %d %.9g %.9g\n", m->num_examples, m->loss, m->accuracy);
    } else {
      absl::PrintF("error %s\n", m.status().message());
    }
    std::fflush(stdout);
  }
  return 0;
}

// Parses "--export-initial ARCHIVE OUT [flags]" (argv[1] is the mode).
absl::Status ParseExportArgs(int argc, char** argv, fedge::ml::ModelSpec* spec,
                             std::string* out) {
  std::vector<std::string> positional;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (!absl::StartsWith(arg, "--")) {
      positional.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    }
    if (arg == "--input_shape") {
      spec->input_shape.clear();
      for (absl::string_view d : absl::StrSplit(value, ',')) {
        int64_t dim;
        if (!absl::SimpleAtoi(d, &dim)) {
          return absl::InvalidArgumentError(
              "--input_shape must be comma-separated integers, got '" + value +
              "'");
        }
        spec->input_shape.push_back(dim);
      }
    } else if (arg == "--num_classes") {
      if (!absl::SimpleAtoi(value, &spec->num_classes)) {
        return absl::InvalidArgumentError(
            "--num_classes must be an integer, got '" + value + "'");
      }
    } else {
      return absl::InvalidArgumentError("unknown flag " + arg + "; " + kUsage);
    }
  }
  if (positional.size() != 2) return absl::InvalidArgumentError(kUsage);
  spec->torchscript_path = positional[0];
  *out = positional[1];
  return absl::OkStatus();
}

// The archive's state, written to `out`; its model digest.
absl::StatusOr<std::string> ExportInitial(const fedge::ml::ModelSpec& spec,
                                          const std::string& out) {
  ASSIGN_OR_RETURN(fedge::ModelState state, fedge::ml::InitialState(spec));
  fedge::ModelEncoder encoder(state);
  RETURN_IF_ERROR(fedge::WriteFileAtomically(
      out, [&encoder](std::string* chunk) { return encoder.Next(chunk); }));
  return fedge::ToHex(fedge::ModelDigest(state));
}

int RunExportInitial(int argc, char** argv) {
  at::set_num_threads(1);
  fedge::ml::ModelSpec spec;
  spec.architecture = "torchscript";
  std::string out;
  absl::Status parsed = ParseExportArgs(argc, argv, &spec, &out);
  if (!parsed.ok()) return Fail(parsed.message());
  absl::StatusOr<std::string> digest = ExportInitial(spec, out);
  if (!digest.ok()) return Fail(digest.status().message());
  absl::PrintF("ok %s\n", *digest);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  fedge::SetMinLogLevel(fedge::LogLevel::kWarning);
  fedge::ml::ChooseBlasKernels();  // Before any thread or matrix product.
  if (argc >= 2 && std::string(argv[1]) == "--export-initial") {
    return RunExportInitial(argc, argv);
  }
  if (argc == 2 &&
      (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    absl::PrintF("%s\n%s", kUsage, kHelp);
    return 0;
  }
  if (argc != 2) return Fail(kUsage);
  return ServeEvaluations(argv[1]);
}
