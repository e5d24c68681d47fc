// Measures fedge-sim's training throughput against a bare single-threaded
// LibTorch loop over the same model, batch size and data, then with two
// worker threads. Prints examples/s for each and the two ratios the
// foundation issue asks for:
//   sim_1thread / bare >= 0.8   and   sim_2threads / sim_1thread >= 1.6
//
// usage: sim_speed_bench [--data_dir DIR] [--rounds N] [--model 2nn|cnn]
// (MNIST from DIR, default ../shared/data/mnist; synthetic when absent).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cstdio>
#include <numeric>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/config_loader.h"
#include "common/data/data_source.h"
#include "common/logging.h"
#include "common/ml/blas_kernels.h"
#include "common/ml/torch_trainer.h"
#include "common/partition.h"
#include "common/random.h"
#include "server/sim/sim_runner.h"

namespace fedge {
namespace {

namespace F = torch::nn::functional;

// The plain loop: one model, agent after agent, fresh SGD per agent, the
// same shuffled minibatches of B examples gathered with index_select.
double BareLoopExamplesPerSecond(const Dataset& train, const Partition& parts,
                                 const std::string& arch, int agents) {
  at::set_num_threads(1);
  ml::ModelSpec spec;
  spec.architecture = arch;
  auto net = *ml::BuildModel(spec);
  torch::Tensor x_all = ml::FeaturesView(train), y_all = ml::LabelsView(train);
  int64_t examples = 0;
  const absl::Time start = absl::Now();
  for (int a = 0; a < agents; ++a) {
    std::vector<int64_t> order = parts[a % parts.size()];
    DeterministicRng(a).Shuffle(absl::MakeSpan(order));
    torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
    for (size_t b = 0; b < order.size(); b += 10) {
      const int64_t n = std::min<int64_t>(10, order.size() - b);
      torch::Tensor idx =
          torch::from_blob(order.data() + b, {n}, torch::kInt64);
      torch::Tensor x = x_all.index_select(0, idx);
      torch::Tensor y = y_all.index_select(0, idx);
      sgd.zero_grad();
      torch::Tensor loss = F::cross_entropy(net->forward(x), y);
      loss.backward();
      sgd.step();
      examples += n;
    }
  }
  return examples / absl::ToDoubleSeconds(absl::Now() - start);
}

struct SimFigures {
  double train_eps;  // Examples / time spent in the training phase.
  double round_eps;  // Examples / whole round time (incl. aggregation).
  double round_seconds_median;
};

SimFigures SimExamplesPerSecond(const std::string& data_dir,
                                const std::string& arch, int rounds,
                                int threads) {
  v1::SimConfig c;
  c.set_num_agents(100);
  c.set_rounds(rounds);
  c.set_num_threads(threads);
  c.set_eval_every_rounds(1000000);  // Only the last round is evaluated.
  c.mutable_model()->set_architecture(arch);
  c.mutable_data()->set_data_dir(data_dir);
  c.mutable_data()->set_max_test_examples(1000);
  c.mutable_train()->set_batch_size(10);
  c.mutable_strategy()->set_fraction(0.1);
  std::FILE* devnull = std::fopen("/dev/null", "w");
  auto summary = RunSimulation(c, devnull);
  std::fclose(devnull);
  FEDGE_CHECK(summary.ok()) << summary.status();
  double examples = 0, train_s = 0, round_s = 0;
  std::vector<double> per_round;
  for (size_t i = 0; i < summary->rounds.size(); ++i) {
    const RoundRecord& r = summary->rounds[i];
    if (i + 1 == summary->rounds.size()) break;  // Skip the evaluated round.
    examples += r.num_examples;
    train_s += r.train_seconds;
    round_s += r.round_seconds;
    per_round.push_back(r.round_seconds);
  }
  std::sort(per_round.begin(), per_round.end());
  return {examples / train_s, examples / round_s,
          per_round[per_round.size() / 2]};
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  fedge::SetMinLogLevel(fedge::LogLevel::kWarning);
  fedge::ml::ChooseBlasKernels();  // Before any thread or matrix product.
  std::string data_dir = "../shared/data/mnist", arch = "2nn";
  int rounds = 21;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--data_dir") data_dir = argv[i + 1];
    if (flag == "--model") arch = argv[i + 1];
    if (flag == "--rounds") rounds = std::atoi(argv[i + 1]);
  }
  fedge::v1::DataConfig dc;
  dc.set_data_dir(data_dir);
  auto data = fedge::LoadData(dc);
  FEDGE_CHECK(data.ok()) << data.status();
  absl::PrintF("data: %s\n", data->description);
  auto parts = fedge::PartitionIid(data->train.num_examples(), 100, 42);
  FEDGE_CHECK(parts.ok());
  const int agents = (rounds - 1) * 10;
  const double bare =
      fedge::BareLoopExamplesPerSecond(data->train, *parts, arch, agents);
  absl::PrintF("bare LibTorch loop, 1 thread:   %8.0f examples/s\n", bare);
  auto one = fedge::SimExamplesPerSecond(data_dir, arch, rounds, 1);
  absl::PrintF(
      "fedge-sim, 1 worker thread:     %8.0f examples/s training "
      "(%.0f incl. aggregation), median round %.3f s\n",
      one.train_eps, one.round_eps, one.round_seconds_median);
  auto two = fedge::SimExamplesPerSecond(data_dir, arch, rounds, 2);
  absl::PrintF(
      "fedge-sim, 2 worker threads:    %8.0f examples/s training "
      "(%.0f incl. aggregation), median round %.3f s\n",
      two.train_eps, two.round_eps, two.round_seconds_median);
  absl::PrintF(
      "model=%s sim1_vs_bare=%.3f sim2_vs_sim1=%.3f "
      "round_seconds_median_2threads=%.3f\n",
      arch, one.round_eps / bare, two.round_eps / one.round_eps,
      two.round_seconds_median);
  return 0;
}
