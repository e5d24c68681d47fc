// Deterministic partitioners: split a dataset's examples among simulated
// federated clients (IID, label-Dirichlet, and the FedAvg paper's shards),
// plus label-skew measures used by tests and reports.
//
// A Partition maps client id -> the indices of that client's examples, each
// list sorted ascending; every index appears in exactly one list. Results are
// a pure function of the arguments and the seed, identical on every machine
// and standard library: randomness comes from DeterministicRng, which draws
// raw bits from std::mt19937_64 (fully specified by the C++ standard) and
// implements every distribution itself (std::*_distribution and std::shuffle
// are implementation-defined).
//
// Thread-safety: the free functions are pure and thread-safe.
// DeterministicRng is not thread-safe; use one per thread.
#ifndef FEDGE_COMMON_PARTITION_H_
#define FEDGE_COMMON_PARTITION_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/random.h"

namespace fedge {

// Client id -> sorted example indices of that client.
using Partition = std::vector<std::vector<int64_t>>;

// How the caller's configuration names the partitioners' arguments, used in
// their error messages so that they name what the user sets (fedge-sim:
// num_agents, partition.shards_per_agent, partition.dirichlet_alpha).
struct PartitionArgNames {
  std::string num_clients = "num_clients";
  std::string shards_per_client = "shards_per_client";
  std::string alpha = "alpha";
};

// IID: shuffles 0..num_examples-1 and deals it into `num_clients` contiguous
// parts whose sizes differ by at most 1 (the first num_examples % num_clients
// clients get one more).
// Returns INVALID_ARGUMENT when num_clients <= 0 or num_clients >
// num_examples. Errors name the arguments as `names` does.
absl::StatusOr<Partition> PartitionIid(int64_t num_examples, int num_clients,
                                       uint64_t seed,
                                       const PartitionArgNames& names = {});

// Label-Dirichlet(alpha), as in Hsu et al. 2019 and NIID-Bench: for each
// class, draws proportions p ~ Dir(alpha, ..., alpha) over the clients and
// cuts that class's shuffled examples at the cumulative proportions. Smaller
// alpha gives more skew (alpha -> infinity approaches IID per class). When
// some client ends up with fewer than `min_examples_per_client` examples the
// whole draw is repeated, up to kMaxDirichletAttempts times, continuing the
// same random stream.
// Returns INVALID_ARGUMENT when num_clients <= 0, alpha is not a positive
// finite number, min_examples_per_client < 0, a label is negative, or
// labels.size() < num_clients * min_examples_per_client;
// FAILED_PRECONDITION when no draw within the attempts satisfied the minimum
// (alpha too small for this many clients: raise alpha or lower
// min_examples_per_client). Errors name the arguments as `names` does.
inline constexpr int kMaxDirichletAttempts = 1000;
absl::StatusOr<Partition> PartitionDirichlet(
    absl::Span<const int64_t> labels, int num_clients, double alpha,
    uint64_t seed, int64_t min_examples_per_client = 1,
    const PartitionArgNames& names = {});

// Shards (McMahan et al. 2017, the FedAvg paper's pathological non-IID
// split): sorts the examples by label (ties by index), cuts them into
// shards_per_client * num_clients equal contiguous shards, and gives each
// client shards_per_client shards chosen at random without replacement.
// With 60000 MNIST examples, 100 clients and 2 shards each, every client
// holds 600 examples of (mostly) 2 digits.
// Returns INVALID_ARGUMENT when num_clients <= 0, shards_per_client <= 0, a
// label is negative, or labels.size() is not a positive multiple of
// shards_per_client * num_clients. Errors name the arguments as `names`
// does.
absl::StatusOr<Partition> PartitionShards(absl::Span<const int64_t> labels,
                                          int num_clients, uint64_t seed,
                                          int shards_per_client = 2,
                                          const PartitionArgNames& names = {});

// The split a PartitionConfig's `method` names ("iid", "dirichlet",
// "shards") of the examples with `labels` into `num_clients` parts: the one
// dispatch of fedge-sim and fedge-agent (alpha: the Dirichlet
// concentration, shards_per_client: the shards' count; each used by its
// method only). INVALID_ARGUMENT for another method, or as the method's
// function says.
absl::StatusOr<Partition> PartitionByMethod(const std::string& method,
                                            absl::Span<const int64_t> labels,
                                            int num_clients, uint64_t seed,
                                            double alpha, int shards_per_client,
                                            const PartitionArgNames& names);

// Mean over non-empty clients of the total-variation distance between the
// client's label distribution and the pooled distribution of all examples in
// `partition`: 0 for identical distributions, 1 - 1/num_classes for one class
// per client with balanced classes. Returns 0 for an empty partition.
// Indices must lie in [0, labels.size()) and labels in [0, num_classes)
// (checked: a violation is a bug in the caller).
double MeanLabelSkew(const Partition& partition,
                     absl::Span<const int64_t> labels, int num_classes);

// Number of distinct values of labels[i] for i in `indices`. Indices must lie
// in [0, labels.size()) (checked).
int NumDistinctLabels(absl::Span<const int64_t> indices,
                      absl::Span<const int64_t> labels);

}  // namespace fedge

#endif  // FEDGE_COMMON_PARTITION_H_
