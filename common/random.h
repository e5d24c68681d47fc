// Deterministic randomness that gives the same numbers on every machine and
// standard library (std::*_distribution and std::shuffle do not), for
// partitions, agent selection and local shuffling.
//
// Rng is a 64-bit SplitMix-seeded xoshiro256** generator. Not thread-safe;
// give each thread its own, derived with MixSeed.
#ifndef FEDGE_COMMON_RANDOM_H_
#define FEDGE_COMMON_RANDOM_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
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

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& s : s_) s = seed = SplitMix64(seed);
  }

  // Uniform 64 random bits.
  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform integer in [0, n), n > 0, without modulo bias.
  uint64_t Uniform(uint64_t n) {
    const uint64_t limit = -n % n;  // 2^64 mod n
    uint64_t r;
    do {
      r = Next();
    } while (r < limit);
    return r % n;
  }

  // Uniform double in [0, 1).
  double UniformDouble() { return (Next() >> 11) * 0x1.0p-53; }

  // Fisher-Yates shuffle of `v`.
  template <typename T>
  void Shuffle(absl::Span<T> v) {
    for (size_t i = v.size(); i > 1; --i) {
      std::swap(v[i - 1], v[Uniform(i)]);
    }
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace fedge

#endif  // FEDGE_COMMON_RANDOM_H_
