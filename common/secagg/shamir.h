// Shamir t-of-n secret sharing of 32-byte secrets over the prime field
// GF(p), p = 2^61 - 1 (a Mersenne prime: reduction is a shift and an add).
//
// A secret is cut into kShareElements chunks of 7 bytes (the last one 4),
// each a field element below 2^56; each chunk gets its own random polynomial
// of degree t - 1 with that chunk as constant term, evaluated at the share
// indices 1..n. Any t shares give back the secret (Lagrange interpolation at
// 0); any t - 1 shares are consistent with every secret (for each candidate
// there is exactly one polynomial through them), so they reveal nothing.
//
// Shares are not authenticated: a wrong share gives a wrong secret (which
// may still decode). Callers check the result against a commitment (secagg
// does: a hash of each self-mask seed, the public key of each masking key).
//
// Pure functions; thread-safe.
#ifndef FEDGE_COMMON_SECAGG_SHAMIR_H_
#define FEDGE_COMMON_SECAGG_SHAMIR_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/secagg/config.h"

namespace fedge::secagg {

inline constexpr uint64_t kFieldPrime = (uint64_t{1} << 61) - 1;
inline constexpr size_t kSecretBytes = 32;
inline constexpr int kShareElements = 5;  // ceil(32 / 7)
// Largest number of shares (indices must be distinct field elements; this
// bound keeps interpolation cheap).
inline constexpr int kMaxShares = 1 << 16;

using Secret = std::array<uint8_t, kSecretBytes>;

// One share: the evaluations at x = index of the kShareElements polynomials.
struct ShamirShare {
  int index = 0;                                  // 1..kMaxShares
  std::array<uint64_t, kShareElements> values{};  // each < kFieldPrime
};

// Field arithmetic (operands < kFieldPrime).
uint64_t FieldAdd(uint64_t a, uint64_t b);
uint64_t FieldSub(uint64_t a, uint64_t b);
uint64_t FieldMul(uint64_t a, uint64_t b);
// Multiplicative inverse of a != 0 (checked).
uint64_t FieldInv(uint64_t a);

// Shares of `secret` at indices 1..num_shares, any `threshold` of which
// rebuild it; coefficients come from `random` (see config.h).
// INVALID_ARGUMENT unless 1 <= threshold <= num_shares <= kMaxShares.
absl::StatusOr<std::vector<ShamirShare>> ShamirSplit(
    const Secret& secret, int threshold, int num_shares,
    const RandomSource& random = {});

// Like ShamirSplit, but only the shares at `indices` (distinct, each in
// 1..kMaxShares), in that order: for sparse share holders (SecAgg+).
absl::StatusOr<std::vector<ShamirShare>> ShamirSplitAt(
    const Secret& secret, int threshold, absl::Span<const int> indices,
    const RandomSource& random = {});

// The secret from the first `threshold` of `shares`. INVALID_ARGUMENT when
// fewer than `threshold` shares are given, an index is out of range or
// repeated among them, or a value is not a field element; DATA_LOSS when the
// interpolated chunks are not a valid encoding (some share was wrong).
absl::StatusOr<Secret> ShamirReconstruct(absl::Span<const ShamirShare> shares,
                                         int threshold);

}  // namespace fedge::secagg

#endif  // FEDGE_COMMON_SECAGG_SHAMIR_H_
