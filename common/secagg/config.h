// Parameters of one secure-aggregation session, shared by the server and
// every client, and the communication graph they imply.
//
// A session sums the float32 vectors of up to `num_clients` clients, with
// ids 1..num_clients (the coordinator maps its agents to ids; the id is also
// the client's Shamir share index). Two graphs are supported:
//   - complete (neighbors == 0): Bonawitz et al., CCS 2017. Every client
//     masks with, and secret-shares among, all others. Per-client cost
//     O(n + D), server O(n^2 + n D) with n clients and D elements.
//   - k-regular (neighbors == k > 0, k even): Bell et al., CCS 2020
//     ("SecAgg+"). Clients sit on a ring in a pseudo-random order derived
//     from ConfigDigest (a Harary graph H(k, n) under a random relabelling)
//     and each pairs with the k nearest on the ring. Per-client cost
//     O(k + D), server O(n k + n D). The guarantees then hold with high
//     probability rather than always, for k = O(log n) and t chosen from
//     Bell et al.'s analysis for the tolerated fractions of corrupt and
//     dropped clients: choosing them is the caller's job (bench/secagg_bench
//     uses k = 2 ceil(log2 n), t = k/2 + 1 as a cost illustration only).
//     The order is public and fixed by the session id, which the server
//     picks: fine for an honest-but-curious server, not against one that
//     would grind session ids for a favourable graph.
// The threshold t applies to each client's closed neighbourhood N[u] (u and
// its neighbours; all clients for the complete graph): each client's secrets
// are split t-of-|N[u]|, and 2t > |N[u]| so that no server can collect t
// shares of both secrets of one client from honest clients, each of whom
// reveals one kind per peer (the reason Bonawitz et al. ask each client for
// one kind of share per peer).
//
// Everything here is a value type or a pure function: thread-safe.
#ifndef FEDGE_COMMON_SECAGG_CONFIG_H_
#define FEDGE_COMMON_SECAGG_CONFIG_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "common/sha256.h"

namespace fedge::secagg {

// Limits checked by ValidateConfig (and thus before any allocation).
inline constexpr int kMaxClients = 10000;
// Upper bound on num_clients * (|N[u]|): the server keeps one ciphertext
// (108 bytes) and one share per edge, so this caps that state near 200 MB.
inline constexpr int64_t kMaxEdges = int64_t{1} << 21;
inline constexpr int64_t kMaxVectorLength = int64_t{1} << 31;
inline constexpr size_t kMaxSessionIdBytes = 256;

struct SecAggConfig {
  // Names the aggregation (e.g. "run-3/round-17"); must be unique per
  // session. Every key, mask seed and message is bound to it. 1..256 bytes.
  std::string session_id;
  // t: shares needed to rebuild a client's secret. 2 <= t <= |N[u]|, and
  // 2t > |N[u]| (|N[u]| = num_clients, or neighbors + 1).
  int threshold = 0;
  // n: clients that may take part, with ids 1..n. 2 <= n <= kMaxClients.
  int num_clients = 0;
  // k: 0 for the complete graph (Bonawitz), else the even degree of the
  // k-regular graph (SecAgg+), 2 <= k <= num_clients - 1.
  int neighbors = 0;
  // D: float32 elements in each client's input, 1..kMaxVectorLength.
  int64_t vector_length = 0;
  // C: each input element is clipped to [-C, C] before quantization (after
  // whatever weighting the caller applies). Finite, > 0. Inputs are
  // quantized with QuantizationOptions{num_clients, max_abs_value}: see
  // quantization.h for the scale and the precision of the sum.
  double max_abs_value = 0.0;
};

// OK, or INVALID_ARGUMENT naming the first field out of range.
absl::Status ValidateConfig(const SecAggConfig& config);

// SHA-256 of the config's canonical encoding: every message carries it, so
// peers configured differently refuse each other's messages.
Sha256Digest ConfigDigest(const SecAggConfig& config);

// Fills a buffer with cryptographically secure random bytes. The default
// (an empty function) is OpenSSL's RAND_bytes; tests may inject a seeded
// generator to make a session reproducible (never do that in production).
using RandomSource = std::function<void(absl::Span<uint8_t>)>;

// Fills `out` from `random`, or from RAND_bytes when `random` is empty
// (a RAND_bytes failure is a crash: there is no safe way on).
void FillRandom(const RandomSource& random, absl::Span<uint8_t> out);

// Who pairs with whom: the complete graph or the ring-ordered k-regular
// graph of a (validated) config. Immutable; O(n) memory.
class CommunicationGraph {
 public:
  explicit CommunicationGraph(const SecAggConfig& config);

  int num_clients() const { return num_clients_; }
  // |N[u]|: the size of every closed neighbourhood (u and its neighbours).
  int neighbourhood_size() const;
  // True when u != v are neighbours (ids in 1..n).
  bool AreNeighbours(int u, int v) const;
  // u's neighbours (without u), ascending.
  std::vector<int> Neighbours(int u) const;

 private:
  int num_clients_;
  int half_degree_;              // k / 2; 0 for the complete graph.
  std::vector<int> ring_index_;  // ring_index_[id]: position on the ring.
  std::vector<int> ring_;        // ring_[position]: id.
};

}  // namespace fedge::secagg

#endif  // FEDGE_COMMON_SECAGG_CONFIG_H_
