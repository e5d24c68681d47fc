#include "common/partition.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge {

// ---------------------------------------------------------------------------
// DeterministicRng

namespace {

// ---------------------------------------------------------------------------
// Helpers

absl::Status ValidateNumClients(int num_clients,
                                const PartitionArgNames& names) {
  if (num_clients > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(names.num_clients, " must be > 0, got ", num_clients));
}

absl::Status ValidateLabels(absl::Span<const int64_t> labels) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "labels must be >= 0, got labels[", i, "] = ", labels[i]));
    }
  }
  return absl::OkStatus();
}

// The indices of each label present, ascending by label and then by index.
// (Sorting rather than bucketing: labels may be large and sparse.)
std::vector<std::vector<int64_t>> GroupByClass(
    absl::Span<const int64_t> labels) {
  std::vector<int64_t> order(labels.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return labels[a] < labels[b]; });
  std::vector<std::vector<int64_t>> by_class;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i == 0 || labels[order[i]] != labels[order[i - 1]]) {
      by_class.emplace_back();
    }
    by_class.back().push_back(order[i]);
  }
  return by_class;
}

void SortEach(Partition& partition) {
  for (auto& client : partition) std::sort(client.begin(), client.end());
}

// Proportions p ~ Dir(alpha) over `k` clients. When every Gamma draw
// underflows to 0 (tiny alpha), returns the limit of Dir(alpha) as alpha -> 0:
// all mass on one uniformly chosen client.
std::vector<double> DrawDirichlet(int k, double alpha, DeterministicRng& rng) {
  std::vector<double> p(k);
  double sum = 0.0;
  for (double& x : p) {
    x = rng.Gamma(alpha);
    sum += x;
  }
  if (!(sum > 0.0) || !std::isfinite(sum)) {
    std::fill(p.begin(), p.end(), 0.0);
    p[rng.UniformInt(k)] = 1.0;
    return p;
  }
  for (double& x : p) x /= sum;
  return p;
}

// End offsets (exclusive) of each client's slice of a class of `n` examples
// cut at the cumulative proportions `p`; the last end is n.
std::vector<int64_t> CutPoints(const std::vector<double>& p, int64_t n) {
  std::vector<int64_t> ends(p.size());
  double cumulative = 0.0;
  for (size_t j = 0; j + 1 < p.size(); ++j) {
    cumulative += p[j];
    const auto end = static_cast<int64_t>(cumulative * static_cast<double>(n));
    ends[j] = std::clamp<int64_t>(end, j == 0 ? 0 : ends[j - 1], n);
  }
  ends.back() = n;
  return ends;
}

// One Dirichlet draw: ends[c] are the cut points of class c.
std::vector<std::vector<int64_t>> DrawAllCuts(
    const std::vector<std::vector<int64_t>>& by_class, int num_clients,
    double alpha, DeterministicRng& rng) {
  std::vector<std::vector<int64_t>> ends;
  ends.reserve(by_class.size());
  for (const auto& members : by_class) {
    ends.push_back(CutPoints(DrawDirichlet(num_clients, alpha, rng),
                             static_cast<int64_t>(members.size())));
  }
  return ends;
}

int64_t MinClientSize(const std::vector<std::vector<int64_t>>& ends,
                      int num_clients) {
  std::vector<int64_t> sizes(num_clients, 0);
  for (const auto& e : ends) {
    for (int j = 0; j < num_clients; ++j) {
      sizes[j] += e[j] - (j == 0 ? 0 : e[j - 1]);
    }
  }
  return *std::min_element(sizes.begin(), sizes.end());
}

Partition AssembleDirichlet(const std::vector<std::vector<int64_t>>& by_class,
                            const std::vector<std::vector<int64_t>>& ends,
                            int num_clients) {
  Partition partition(num_clients);
  for (size_t c = 0; c < by_class.size(); ++c) {
    for (int j = 0; j < num_clients; ++j) {
      const int64_t begin = j == 0 ? 0 : ends[c][j - 1];
      partition[j].insert(partition[j].end(), by_class[c].begin() + begin,
                          by_class[c].begin() + ends[c][j]);
    }
  }
  SortEach(partition);
  return partition;
}

absl::Status ValidateDirichletArgs(absl::Span<const int64_t> labels,
                                   int num_clients, double alpha,
                                   int64_t min_examples_per_client,
                                   const PartitionArgNames& names) {
  RETURN_IF_ERROR(ValidateNumClients(num_clients, names));
  if (!(alpha > 0.0) || !std::isfinite(alpha)) {
    return absl::InvalidArgumentError(absl::StrCat(
        names.alpha, " must be a positive finite number, got ", alpha));
  }
  if (min_examples_per_client < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min_examples_per_client must be >= 0, got ", min_examples_per_client));
  }
  if (min_examples_per_client >
      static_cast<int64_t>(labels.size()) / num_clients) {
    return absl::InvalidArgumentError(absl::StrCat(
        names.num_clients, " = ", num_clients,
        " with min_examples_per_client = ", min_examples_per_client,
        " needs more examples than the ", labels.size(), " given"));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------
// Partitioners

absl::StatusOr<Partition> PartitionIid(int64_t num_examples, int num_clients,
                                       uint64_t seed,
                                       const PartitionArgNames& names) {
  RETURN_IF_ERROR(ValidateNumClients(num_clients, names));
  if (num_examples < num_clients) {
    return absl::InvalidArgumentError(
        absl::StrCat(names.num_clients, " = ", num_clients, " exceeds the ",
                     num_examples, " examples to split"));
  }
  std::vector<int64_t> order(num_examples);
  std::iota(order.begin(), order.end(), int64_t{0});
  DeterministicRng rng(seed);
  rng.Shuffle(absl::MakeSpan(order));
  Partition partition(num_clients);
  const int64_t base = num_examples / num_clients;
  const int64_t extra = num_examples % num_clients;
  auto next = order.begin();
  for (int j = 0; j < num_clients; ++j) {
    const int64_t size = base + (j < extra ? 1 : 0);
    partition[j].assign(next, next + size);
    next += size;
  }
  SortEach(partition);
  return partition;
}

absl::StatusOr<Partition> PartitionDirichlet(absl::Span<const int64_t> labels,
                                             int num_clients, double alpha,
                                             uint64_t seed,
                                             int64_t min_examples_per_client,
                                             const PartitionArgNames& names) {
  RETURN_IF_ERROR(ValidateDirichletArgs(labels, num_clients, alpha,
                                        min_examples_per_client, names));
  RETURN_IF_ERROR(ValidateLabels(labels));
  DeterministicRng rng(seed);
  std::vector<std::vector<int64_t>> by_class = GroupByClass(labels);
  for (auto& members : by_class) rng.Shuffle(absl::MakeSpan(members));
  int64_t best = 0;
  for (int attempt = 0; attempt < kMaxDirichletAttempts; ++attempt) {
    const auto ends = DrawAllCuts(by_class, num_clients, alpha, rng);
    const int64_t smallest = MinClientSize(ends, num_clients);
    if (smallest >= min_examples_per_client) {
      return AssembleDirichlet(by_class, ends, num_clients);
    }
    best = std::max(best, smallest);
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "Dirichlet partition with ", names.alpha, " = ", alpha, " over ",
      names.num_clients, " = ", num_clients, " clients: no draw in ",
      kMaxDirichletAttempts,
      " attempts gave every client at least min_examples_per_client = ",
      min_examples_per_client, " examples (best smallest client: ", best,
      "); raise ", names.alpha, ", use fewer clients or lower the minimum"));
}

absl::StatusOr<Partition> PartitionShards(absl::Span<const int64_t> labels,
                                          int num_clients, uint64_t seed,
                                          int shards_per_client,
                                          const PartitionArgNames& names) {
  RETURN_IF_ERROR(ValidateNumClients(num_clients, names));
  if (shards_per_client <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        names.shards_per_client, " must be > 0, got ", shards_per_client));
  }
  const int64_t num_shards = int64_t{num_clients} * shards_per_client;
  const auto n = static_cast<int64_t>(labels.size());
  if (n == 0 || n % num_shards != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "number of examples (", n, ") must be a positive multiple of ",
        names.num_clients, " * ", names.shards_per_client, " = ", num_clients,
        " * ", shards_per_client, " = ", num_shards));
  }
  RETURN_IF_ERROR(ValidateLabels(labels));
  // Concatenating the per-class lists sorts by (label, index).
  std::vector<int64_t> sorted;
  sorted.reserve(n);
  for (const auto& members : GroupByClass(labels)) {
    sorted.insert(sorted.end(), members.begin(), members.end());
  }
  std::vector<int64_t> shard_ids(num_shards);
  std::iota(shard_ids.begin(), shard_ids.end(), int64_t{0});
  DeterministicRng rng(seed);
  rng.Shuffle(absl::MakeSpan(shard_ids));
  const int64_t shard_size = n / num_shards;
  Partition partition(num_clients);
  for (int64_t s = 0; s < num_shards; ++s) {
    auto begin = sorted.begin() + shard_ids[s] * shard_size;
    auto& client = partition[s / shards_per_client];
    client.insert(client.end(), begin, begin + shard_size);
  }
  SortEach(partition);
  return partition;
}

// ---------------------------------------------------------------------------
// Skew measures

absl::StatusOr<Partition> PartitionByMethod(const std::string& method,
                                            absl::Span<const int64_t> labels,
                                            int num_clients, uint64_t seed,
                                            double alpha, int shards_per_client,
                                            const PartitionArgNames& names) {
  if (method == "iid") {
    return PartitionIid(static_cast<int64_t>(labels.size()), num_clients, seed,
                        names);
  }
  if (method == "dirichlet") {
    return PartitionDirichlet(labels, num_clients, alpha, seed,
                              /*min_examples_per_client=*/1, names);
  }
  if (method == "shards") {
    return PartitionShards(labels, num_clients, seed, shards_per_client, names);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown partition method '", method, "'"));
}

double MeanLabelSkew(const Partition& partition,
                     absl::Span<const int64_t> labels, int num_classes) {
  FEDGE_CHECK(num_classes > 0) << "num_classes = " << num_classes;
  std::vector<std::vector<int64_t>> counts;
  std::vector<double> pooled(num_classes, 0.0);
  int64_t total = 0;
  for (const auto& client : partition) {
    if (client.empty()) continue;
    auto& c = counts.emplace_back(num_classes, 0);
    for (int64_t i : client) {
      FEDGE_CHECK(i >= 0 && i < static_cast<int64_t>(labels.size()))
          << "index " << i << " outside [0, " << labels.size() << ")";
      const int64_t y = labels[i];
      FEDGE_CHECK(y >= 0 && y < num_classes)
          << "label " << y << " outside [0, " << num_classes << ")";
      ++c[y];
      ++pooled[y];
    }
    total += static_cast<int64_t>(client.size());
  }
  if (counts.empty()) return 0.0;
  for (double& p : pooled) p /= static_cast<double>(total);
  double sum = 0.0;
  for (const auto& c : counts) {
    const double size = std::accumulate(c.begin(), c.end(), 0.0);
    double tv = 0.0;
    for (int k = 0; k < num_classes; ++k) {
      tv += std::abs(static_cast<double>(c[k]) / size - pooled[k]);
    }
    sum += 0.5 * tv;
  }
  return sum / static_cast<double>(counts.size());
}

int NumDistinctLabels(absl::Span<const int64_t> indices,
                      absl::Span<const int64_t> labels) {
  std::vector<int64_t> seen;
  seen.reserve(indices.size());
  for (int64_t i : indices) {
    FEDGE_CHECK(i >= 0 && i < static_cast<int64_t>(labels.size()))
        << "index " << i << " outside [0, " << labels.size() << ")";
    seen.push_back(labels[i]);
  }
  std::sort(seen.begin(), seen.end());
  return static_cast<int>(std::unique(seen.begin(), seen.end()) - seen.begin());
}

}  // namespace fedge
