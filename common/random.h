// Deterministic randomness that gives the same numbers for a seed on every
// machine and standard library, for partitions, synthetic data, agent
// selection, initial weights and local shuffling. Raw bits come from
// std::mt19937_64 (fully specified by the C++ standard); every distribution
// is implemented here (std::*_distribution and std::shuffle are
// implementation-defined).
//
// DeterministicRng is not thread-safe; give each thread its own, with a seed
// derived by MixSeed.
#ifndef FEDGE_COMMON_RANDOM_H_
#define FEDGE_COMMON_RANDOM_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <utility>

#include "absl/types/span.h"

namespace fedge {

// SplitMix64 step: a good 64-bit mix of `x`.
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// One seed from several values (e.g. base seed, round, agent index).
inline uint64_t MixSeed(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x243f6a8885a308d3ULL;
  for (uint64_t p : parts) h = SplitMix64(h ^ p);
  return h;
}

// A 64-bit hash of `bytes` that is the same on every platform and standard
// library (FNV-1a, then SplitMix64): for seeds derived from names (std::hash
// is implementation-defined).
inline uint64_t StableHash64(const char* bytes, size_t size) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < size; ++i) {
    h = (h ^ static_cast<uint8_t>(bytes[i])) * 0x100000001b3ULL;
  }
  return SplitMix64(h);
}

// Random numbers that are the same for a seed on every platform.
class DeterministicRng {
 public:
  explicit DeterministicRng(uint64_t seed) : engine_(seed) {}

  // 64 uniformly random bits.
  uint64_t NextBits() { return engine_(); }
  // Uniform integer in [0, n), unbiased (rejection sampling). n > 0
  // (checked).
  uint64_t UniformInt(uint64_t n);
  // Uniform double in [0, 1) with 53 random bits.
  double UniformDouble();
  // Standard normal N(0, 1) (Marsaglia polar method).
  double Normal();
  // Gamma(shape, 1) (Marsaglia-Tsang; shape < 1 boosted by U^(1/shape)).
  // shape > 0 (checked).
  double Gamma(double shape);
  // Fisher-Yates shuffle of `values` in place.
  template <typename T>
  void Shuffle(absl::Span<T> values) {
    for (size_t i = values.size(); i > 1; --i) {
      const size_t j = static_cast<size_t>(UniformInt(i));
      std::swap(values[i - 1], values[j]);
    }
  }

 private:
  std::mt19937_64 engine_;
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_RANDOM_H_
