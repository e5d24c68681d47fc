#include "common/random.h"

#include <cmath>

#include "common/logging.h"

namespace fedge {

uint64_t DeterministicRng::UniformInt(uint64_t n) {
  FEDGE_CHECK(n > 0) << "UniformInt needs n > 0";
  // Accept x when it lies in the largest multiple of n below 2^64;
  // 2^64 mod n == (2^64 - n) mod n, computed in uint64_t as (-n) % n.
  const uint64_t threshold = (0 - n) % n;
  while (true) {
    const uint64_t x = engine_();
    if (x >= threshold) return x % n;
  }
}

double DeterministicRng::UniformDouble() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double DeterministicRng::Normal() {
  if (has_spare_normal_) {
    has_spare_normal_ = false;
    return spare_normal_;
  }
  double u, v, s;
  do {
    u = 2.0 * UniformDouble() - 1.0;
    v = 2.0 * UniformDouble() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double m = std::sqrt(-2.0 * std::log(s) / s);
  spare_normal_ = v * m;
  has_spare_normal_ = true;
  return u * m;
}

double DeterministicRng::Gamma(double shape) {
  FEDGE_CHECK(shape > 0.0) << "Gamma needs shape > 0, got " << shape;
  if (shape < 1.0) {
    // Gamma(a) = Gamma(a + 1) * U^(1/a) (Marsaglia-Tsang, section 6).
    const double boost = std::pow(UniformDouble(), 1.0 / shape);
    return Gamma(shape + 1.0) * boost;
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    const double x = Normal();
    double v = 1.0 + c * x;
    if (v <= 0.0) continue;
    v = v * v * v;
    const double u = UniformDouble();
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return d * v;
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return d * v;
  }
}

}  // namespace fedge
