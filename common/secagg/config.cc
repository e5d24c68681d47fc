#include "common/secagg/config.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/little_endian.h"
#include "common/logging.h"
#include "common/random.h"

namespace fedge::secagg {
namespace {

int NeighbourhoodSize(const SecAggConfig& config) {
  return config.neighbors == 0 ? config.num_clients : config.neighbors + 1;
}

absl::Status ValidateGraph(const SecAggConfig& config) {
  if (config.neighbors != 0 &&
      (config.neighbors < 2 || config.neighbors % 2 != 0 ||
       config.neighbors > config.num_clients - 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("neighbors must be 0 (complete graph) or even in [2, ",
                     config.num_clients - 1, "], got ", config.neighbors));
  }
  const int64_t edges =
      int64_t{config.num_clients} * int64_t{NeighbourhoodSize(config)};
  if (edges > kMaxEdges) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_clients * neighbourhood size = ", edges, " exceeds ",
                     kMaxEdges, " (use a k-regular graph: neighbors > 0)"));
  }
  const int size = NeighbourhoodSize(config);
  if (config.threshold < 2 || config.threshold > size ||
      2 * config.threshold <= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("threshold must be in [", size / 2 + 1, ", ", size,
                     "] (more than half of each neighbourhood of ", size,
                     "), got ", config.threshold));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateConfig(const SecAggConfig& config) {
  if (config.session_id.empty() ||
      config.session_id.size() > kMaxSessionIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("session_id must be 1..", kMaxSessionIdBytes,
                     " bytes, got ", config.session_id.size()));
  }
  if (config.num_clients < 2 || config.num_clients > kMaxClients) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_clients must be in [2, ", kMaxClients, "], got ",
                     config.num_clients));
  }
  if (config.vector_length < 1 || config.vector_length > kMaxVectorLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("vector_length must be in [1, ", kMaxVectorLength,
                     "], got ", config.vector_length));
  }
  if (!std::isfinite(config.max_abs_value) || config.max_abs_value <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_abs_value must be finite and > 0, got ", config.max_abs_value));
  }
  return ValidateGraph(config);
}

Sha256Digest ConfigDigest(const SecAggConfig& config) {
  std::string bytes = "fedge-secagg-v1";
  AppendLE(&bytes, config.session_id.size(), 8);
  bytes += config.session_id;
  AppendLE(&bytes, static_cast<uint64_t>(config.threshold), 8);
  AppendLE(&bytes, static_cast<uint64_t>(config.num_clients), 8);
  AppendLE(&bytes, static_cast<uint64_t>(config.neighbors), 8);
  AppendLE(&bytes, static_cast<uint64_t>(config.vector_length), 8);
  uint64_t bits;
  static_assert(sizeof(bits) == sizeof(config.max_abs_value));
  std::memcpy(&bits, &config.max_abs_value, sizeof(bits));
  AppendLE(&bytes, bits, 8);
  return Sha256Of(bytes);
}

void FillRandom(const RandomSource& random, absl::Span<uint8_t> out) {
  if (out.empty()) return;
  if (random) {
    random(out);
    return;
  }
  FEDGE_CHECK(RAND_bytes(out.data(), static_cast<int>(out.size())) == 1)
      << "RAND_bytes failed";
}

CommunicationGraph::CommunicationGraph(const SecAggConfig& config)
    : num_clients_(config.num_clients), half_degree_(config.neighbors / 2) {
  if (half_degree_ == 0) return;
  ring_.resize(num_clients_);
  std::iota(ring_.begin(), ring_.end(), 1);
  const Sha256Digest digest = ConfigDigest(config);
  uint64_t seed = 0;
  for (int i = 0; i < 8; ++i) seed |= uint64_t{digest[i]} << (8 * i);
  DeterministicRng rng(MixSeed({seed, 0x5eca99ULL}));
  rng.Shuffle(absl::MakeSpan(ring_));
  ring_index_.assign(num_clients_ + 1, -1);
  for (int pos = 0; pos < num_clients_; ++pos) ring_index_[ring_[pos]] = pos;
}

int CommunicationGraph::neighbourhood_size() const {
  return half_degree_ == 0 ? num_clients_ : 2 * half_degree_ + 1;
}

bool CommunicationGraph::AreNeighbours(int u, int v) const {
  if (u == v || u < 1 || v < 1 || u > num_clients_ || v > num_clients_) {
    return false;
  }
  if (half_degree_ == 0) return true;
  const int d = std::abs(ring_index_[u] - ring_index_[v]);
  return std::min(d, num_clients_ - d) <= half_degree_;
}

std::vector<int> CommunicationGraph::Neighbours(int u) const {
  std::vector<int> out;
  if (u < 1 || u > num_clients_) return out;
  if (half_degree_ == 0) {
    out.reserve(num_clients_ - 1);
    for (int v = 1; v <= num_clients_; ++v) {
      if (v != u) out.push_back(v);
    }
    return out;
  }
  out.reserve(2 * half_degree_);
  for (int step = 1; step <= half_degree_; ++step) {
    out.push_back(ring_[(ring_index_[u] + step) % num_clients_]);
    out.push_back(ring_[(ring_index_[u] - step + num_clients_) % num_clients_]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace fedge::secagg
