// fedge-evaluator: evaluates models on a central test set for
// fedge-coordinator, which starts it as a child process (see
// server/evaluator_process.h for the protocol). Not meant to be run by hand.
//
//   fedge-evaluator CONFIG.binpb   (a serialized fedge.v1.EvaluatorConfig)
#include <ATen/Parallel.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_format.h"
#include "common/data/data_source.h"
#include "common/logging.h"
#include "common/ml/model_spec.h"
#include "common/ml/torch_trainer.h"
#include "common/model_codec.h"
#include "fedge/v1/config.pb.h"

namespace {

int Fail(const std::string& message) {
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

}  // namespace

int main(int argc, char** argv) {
  fedge::SetMinLogLevel(fedge::LogLevel::kWarning);
  if (argc != 2) return Fail("usage: fedge-evaluator CONFIG.binpb");
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  fedge::v1::EvaluatorConfig config;
  if (!in || !config.ParseFromString(bytes.str())) {
    return Fail(std::string("cannot read ") + argv[1]);
  }
  at::set_num_threads(config.num_threads());
  auto data = fedge::LoadData(config.data(), /*test_only=*/true);
  if (!data.ok()) return Fail(std::string(data.status().message()));
  fedge::ml::TorchTrainerOptions options;
  options.model = fedge::ml::SpecFromConfig(config.model());
  options.train = &data->test;
  options.eval = &data->test;
  auto trainer = fedge::ml::TorchTrainer::Create(options);
  if (!trainer.ok()) return Fail(std::string(trainer.status().message()));
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
