#include "common/secagg/shamir.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace fedge::secagg {
namespace {

constexpr size_t kChunkBytes = 7;

size_t ChunkSize(int chunk) {
  return std::min(kChunkBytes, kSecretBytes - chunk * kChunkBytes);
}

uint64_t ChunkOf(const Secret& secret, int chunk) {
  uint64_t v = 0;
  for (size_t i = 0; i < ChunkSize(chunk); ++i) {
    v |= uint64_t{secret[chunk * kChunkBytes + i]} << (8 * i);
  }
  return v;
}

// A uniform element of GF(p): 61 random bits, redrawn in the one case
// (all ones) that equals p.
uint64_t RandomElement(const RandomSource& random) {
  for (;;) {
    uint8_t bytes[8];
    FillRandom(random, absl::MakeSpan(bytes));
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{bytes[i]} << (8 * i);
    v &= kFieldPrime;
    if (v != kFieldPrime) return v;
  }
}

// Horner evaluation of sum_k coeffs[k] x^k.
uint64_t Evaluate(absl::Span<const uint64_t> coeffs, uint64_t x) {
  uint64_t y = 0;
  for (size_t k = coeffs.size(); k-- > 0;) {
    y = FieldAdd(FieldMul(y, x), coeffs[k]);
  }
  return y;
}

absl::Status CheckShares(absl::Span<const ShamirShare> shares) {
  absl::flat_hash_set<int> seen;
  for (const ShamirShare& share : shares) {
    if (share.index < 1 || share.index > kMaxShares) {
      return absl::InvalidArgumentError(absl::StrCat(
          "share index ", share.index, " is out of [1, ", kMaxShares, "]"));
    }
    if (!seen.insert(share.index).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("share index ", share.index, " appears twice"));
    }
    for (uint64_t v : share.values) {
      if (v >= kFieldPrime) {
        return absl::InvalidArgumentError(absl::StrCat(
            "share ", share.index, " holds a value outside the field"));
      }
    }
  }
  return absl::OkStatus();
}

// Lagrange basis coefficients at x = 0 for the given share indices.
std::vector<uint64_t> LagrangeAtZero(absl::Span<const ShamirShare> shares) {
  std::vector<uint64_t> lambda(shares.size());
  for (size_t i = 0; i < shares.size(); ++i) {
    uint64_t num = 1, den = 1;
    const uint64_t xi = static_cast<uint64_t>(shares[i].index);
    for (size_t j = 0; j < shares.size(); ++j) {
      if (j == i) continue;
      const uint64_t xj = static_cast<uint64_t>(shares[j].index);
      num = FieldMul(num, xj);
      den = FieldMul(den, FieldSub(xj, xi));
    }
    lambda[i] = FieldMul(num, FieldInv(den));
  }
  return lambda;
}

}  // namespace

uint64_t FieldAdd(uint64_t a, uint64_t b) {
  const uint64_t s = a + b;
  return s >= kFieldPrime ? s - kFieldPrime : s;
}

uint64_t FieldSub(uint64_t a, uint64_t b) {
  return a >= b ? a - b : a + kFieldPrime - b;
}

uint64_t FieldMul(uint64_t a, uint64_t b) {
  const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
  const uint64_t r =
      (static_cast<uint64_t>(p) & kFieldPrime) + static_cast<uint64_t>(p >> 61);
  return r >= kFieldPrime ? r - kFieldPrime : r;
}

uint64_t FieldInv(uint64_t a) {
  FEDGE_CHECK(a != 0 && a < kFieldPrime) << "FieldInv of " << a;
  // a^(p-2) by square and multiply.
  uint64_t result = 1, base = a, e = kFieldPrime - 2;
  while (e != 0) {
    if (e & 1) result = FieldMul(result, base);
    base = FieldMul(base, base);
    e >>= 1;
  }
  return result;
}

absl::StatusOr<std::vector<ShamirShare>> ShamirSplitAt(
    const Secret& secret, int threshold, absl::Span<const int> indices,
    const RandomSource& random) {
  if (threshold < 1 || static_cast<size_t>(threshold) > indices.size() ||
      indices.size() > static_cast<size_t>(kMaxShares)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot split ", threshold, "-of-", indices.size()));
  }
  std::vector<ShamirShare> shares(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) shares[i].index = indices[i];
  RETURN_IF_ERROR(CheckShares(shares));
  std::vector<uint64_t> coeffs(threshold);
  for (int chunk = 0; chunk < kShareElements; ++chunk) {
    coeffs[0] = ChunkOf(secret, chunk);
    for (int k = 1; k < threshold; ++k) coeffs[k] = RandomElement(random);
    for (ShamirShare& share : shares) {
      share.values[chunk] =
          Evaluate(coeffs, static_cast<uint64_t>(share.index));
    }
  }
  std::fill(coeffs.begin(), coeffs.end(), 0);
  return shares;
}

absl::StatusOr<std::vector<ShamirShare>> ShamirSplit(
    const Secret& secret, int threshold, int num_shares,
    const RandomSource& random) {
  if (num_shares < 1 || num_shares > kMaxShares) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot split into ", num_shares, " shares"));
  }
  std::vector<int> indices(num_shares);
  for (int i = 0; i < num_shares; ++i) indices[i] = i + 1;
  return ShamirSplitAt(secret, threshold, indices, random);
}

absl::StatusOr<Secret> ShamirReconstruct(absl::Span<const ShamirShare> shares,
                                         int threshold) {
  if (threshold < 1 || shares.size() < static_cast<size_t>(threshold)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "need ", threshold, " shares to reconstruct, got ", shares.size()));
  }
  shares = shares.subspan(0, threshold);
  absl::Status status = CheckShares(shares);
  if (!status.ok()) return status;
  const std::vector<uint64_t> lambda = LagrangeAtZero(shares);
  Secret secret{};
  for (int chunk = 0; chunk < kShareElements; ++chunk) {
    uint64_t v = 0;
    for (size_t i = 0; i < shares.size(); ++i) {
      v = FieldAdd(v, FieldMul(lambda[i], shares[i].values[chunk]));
    }
    const size_t size = ChunkSize(chunk);
    if (v >> (8 * size) != 0) {
      return absl::DataLossError(
          "the shares do not encode a secret (a share is wrong)");
    }
    for (size_t i = 0; i < size; ++i) {
      secret[chunk * kChunkBytes + i] = static_cast<uint8_t>(v >> (8 * i));
    }
  }
  return secret;
}

}  // namespace fedge::secagg
