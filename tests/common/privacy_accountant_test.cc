#include "common/privacy_accountant.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();

std::unique_ptr<RdpAccountant> MakeAccountant(
    RdpAccountant::Options options = {}) {
  absl::StatusOr<std::unique_ptr<RdpAccountant>> a =
      RdpAccountant::Create(std::move(options));
  EXPECT_TRUE(a.ok()) << a.status();
  return std::move(a).value();
}

// Epsilon of `steps` steps of (q, sigma) at `delta` with `options`.
EpsilonResult Epsilon(double q, double sigma, int64_t steps, double delta,
                      RdpAccountant::Options options = {}) {
  std::unique_ptr<RdpAccountant> a = MakeAccountant(std::move(options));
  EXPECT_TRUE(a->Compose(q, sigma, steps).ok());
  absl::StatusOr<EpsilonResult> eps = a->GetEpsilon(delta);
  EXPECT_TRUE(eps.ok()) << eps.status();
  return *eps;
}

double Rdp(double q, double sigma, double order) {
  absl::StatusOr<double> rdp = ComputeRdpSampledGaussian(q, sigma, order);
  EXPECT_TRUE(rdp.ok()) << rdp.status();
  return *rdp;
}

// DP-SGD settings as TF Privacy's compute_dp_sgd_privacy takes them:
// q = batch / n, steps = ceil(epochs * n / batch).
double SamplingRate(int64_t n, int64_t batch) {
  return static_cast<double>(batch) / static_cast<double>(n);
}
int64_t Steps(int64_t n, int64_t batch, double epochs) {
  return static_cast<int64_t>(std::ceil(epochs * n / batch));
}

// The orders of TF Privacy's MNIST tutorial (tutorials/mnist_dpsgd_tutorial.py,
// compute_epsilon): 1.1, 1.2, ..., 10.9, 12, 13, ..., 63.
std::vector<double> TutorialOrders() {
  std::vector<double> orders;
  for (int x = 1; x < 100; ++x) orders.push_back(1.0 + x / 10.0);
  for (int o = 12; o < 64; ++o) orders.push_back(o);
  return orders;
}

RdpAccountant::Options Classic(std::vector<double> orders) {
  RdpAccountant::Options options;
  options.orders = std::move(orders);
  options.conversion = RdpConversion::kClassic;
  return options;
}

// ---------------------------------------------------------------------------
// RDP of one step.

TEST(ComputeRdpTest, NoSampling_IsGaussianClosedForm) {
  // q = 1 is the plain Gaussian mechanism: RDP(alpha) = alpha / (2 sigma^2)
  // (Mironov 2017, Prop. 7). TF Privacy rdp_accountant_test
  // test_compute_rdp_no_sampling: compute_rdp(1, 10, 1, 20) == 0.1.
  EXPECT_DOUBLE_EQ(Rdp(1.0, 10.0, 20.0), 0.1);
  for (double order : DefaultRdpOrders()) {
    for (double sigma : {0.5, 1.0, 4.0}) {
      EXPECT_DOUBLE_EQ(Rdp(1.0, sigma, order), order / (2 * sigma * sigma));
    }
  }
}

TEST(ComputeRdpTest, SamplingRateNearOne_ApproachesGaussian) {
  // Continuity at q -> 1 of both the integer and the fractional formulas.
  for (double order : {2.0, 2.5, 5.0, 4.5, 32.0}) {
    const double gaussian = order / 2.0;  // sigma = 1.
    EXPECT_NEAR(Rdp(1.0 - 1e-10, 1.0, order), gaussian, 1e-6 * gaussian)
        << order;
  }
}

TEST(ComputeRdpTest, MatchesTfPrivacyPublishedSequence) {
  // TF Privacy rdp_accountant_test.py test_compute_rdp_sequence:
  // compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100]) =
  // [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307] (delta=1e-5).
  const double orders[] = {1.5, 2.5, 5, 50, 100};
  const double expected[] = {0.00065, 0.001085, 0.00218075, 0.023846,
                             167.416307};
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(50 * Rdp(0.01, 2.5, orders[i]), expected[i], 1e-5) << i;
  }
  // test_compute_rdp_scalar: compute_rdp(0.1, 2, 10, 5) = 0.07737 (5 places).
  EXPECT_NEAR(10 * Rdp(0.1, 2.0, 5.0), 0.07737, 5e-6);
}

TEST(ComputeRdpTest, MatchesNumericalIntegration) {
  // log(A_alpha) = (alpha - 1) RDP(alpha), with A_alpha the integral in the
  // header, evaluated by adaptive quadrature with mpmath at 40 digits (the
  // check TF Privacy's test_compute_log_a_equals_mp does, at rtol 1e-4).
  // The first ten cases are exactly TF Privacy's parameter list, covering
  // tiny q, tiny and huge sigma, q near 1 and orders from 1.01 to 256.1.
  struct Case {
    double q, sigma, order, log_a;
  };
  const Case cases[] = {
      {1e-7, 0.1, 1.01, 4.0034123225263985848e-8},
      {1e-6, 0.1, 256, 3260463.2292971607834},
      {1e-5, 0.1, 256.1, 3263607.0397884213428},
      {1e-6, 1, 27, 8.7695113048484978803e-10},
      {1e-4, 1.0, 1.5, 6.4426869538366497255e-9},
      {1e-3, 1.0, 2, 1.7182803522145153698e-6},
      {0.01, 10, 20, 0.00019129699912842962637},
      {0.1, 100, 20.5, 0.0001999181845806829614},
      {0.99, 0.1, 256, 3263997.4271140211413},
      {0.999, 100, 256.1, 3.2601080379731126889},
      {0.01, 4, 1.25, 1.0072303903085427159e-6},
      {0.1, 1.0, 1.75, 0.010698918015058983597},
      {0.1, 0.5, 2.5, 1.9329269481593190186},
      {0.5, 1.0, 3.5, 2.282428037351962575},
      {0.004, 1.1, 4.5, 0.00016495938527646281659},
  };
  for (const Case& c : cases) {
    const double log_a = (c.order - 1) * Rdp(c.q, c.sigma, c.order);
    // Relative 1e-6, plus 1e-14 absolute for log(A) ~ 1e-9: the sum is ~1
    // in double precision, so log(A) near 0 carries ~1e-16 absolute error.
    EXPECT_NEAR(log_a, c.log_a, 1e-6 * c.log_a + 1e-14)
        << "q=" << c.q << " sigma=" << c.sigma << " order=" << c.order;
  }
}

TEST(ComputeRdpTest, NonDecreasingInOrder) {
  // Renyi divergence is non-decreasing in its order (van Erven & Harremos
  // 2014, Thm. 3); this checks integer and fractional formulas agree.
  for (double q : {0.001, 0.01, 0.1, 0.5}) {
    for (double sigma : {0.5, 1.0, 2.0, 8.0}) {
      double previous = 0.0;
      for (double order : DefaultRdpOrders()) {
        const double rdp = Rdp(q, sigma, order);
        EXPECT_GE(rdp, previous * (1 - 1e-12))
            << "q=" << q << " sigma=" << sigma << " order=" << order;
        previous = rdp;
      }
    }
  }
}

TEST(ComputeRdpTest, ExtremeParameters_StayFiniteAndOrdered) {
  // Corners of the search range of NoiseMultiplierForEpsilon and of q: the
  // series must converge (or fall back to the integer bound) to finite,
  // non-negative values that stay non-decreasing in the order.
  for (double q : {1e-9, 1e-4, 0.5, 0.999999}) {
    for (double sigma : {0.01, 0.05, 1.0, 100.0, 1e4}) {
      double previous = 0.0;
      for (double order : DefaultRdpOrders()) {
        const double rdp = Rdp(q, sigma, order);
        EXPECT_TRUE(std::isfinite(rdp) && rdp >= 0.0)
            << "q=" << q << " sigma=" << sigma << " order=" << order;
        EXPECT_GE(rdp, previous * (1 - 1e-9) - 1e-15)
            << "q=" << q << " sigma=" << sigma << " order=" << order;
        // Never above the unsampled Gaussian mechanism.
        EXPECT_LE(rdp, order / (2 * sigma * sigma) * (1 + 1e-9))
            << "q=" << q << " sigma=" << sigma << " order=" << order;
        previous = rdp;
      }
    }
  }
}

TEST(ComputeRdpTest, MonotoneInSamplingRateAndNoise) {
  for (double order : {1.5, 2.0, 4.5, 16.0}) {
    EXPECT_LT(Rdp(0.01, 1.0, order), Rdp(0.02, 1.0, order));
    EXPECT_LT(Rdp(0.1, 1.0, order), Rdp(0.5, 1.0, order));
    EXPECT_LT(Rdp(0.5, 1.0, order), Rdp(1.0, 1.0, order));
    EXPECT_GT(Rdp(0.1, 0.8, order), Rdp(0.1, 1.0, order));
    EXPECT_GT(Rdp(0.1, 1.0, order), Rdp(0.1, 2.0, order));
    // Subsampling amplifies privacy: never worse than q = 1.
    EXPECT_LE(Rdp(0.3, 1.0, order), Rdp(1.0, 1.0, order));
  }
}

TEST(ComputeRdpTest, RejectsOutOfRangeArguments) {
  EXPECT_THAT(ComputeRdpSampledGaussian(0.0, 1, 2).status().message(),
              HasSubstr("q must be in (0, 1]"));
  EXPECT_THAT(ComputeRdpSampledGaussian(1.5, 1, 2).status().message(),
              HasSubstr("q must be in (0, 1]"));
  EXPECT_THAT(ComputeRdpSampledGaussian(std::nan(""), 1, 2).status().message(),
              HasSubstr("q must be in (0, 1]"));
  EXPECT_THAT(ComputeRdpSampledGaussian(0.1, 0, 2).status().message(),
              HasSubstr("sigma must be > 0"));
  EXPECT_THAT(ComputeRdpSampledGaussian(0.1, kInf, 2).status().message(),
              HasSubstr("sigma must be > 0"));
  EXPECT_THAT(ComputeRdpSampledGaussian(0.1, 1, 1.0).status().message(),
              HasSubstr("order must be in (1, "));
  EXPECT_THAT(ComputeRdpSampledGaussian(0.1, 1, 1e5).status().message(),
              HasSubstr("order must be in (1, "));
  EXPECT_EQ(ComputeRdpSampledGaussian(0.1, -1, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// RDP -> (epsilon, delta).

TEST(RdpToEpsilonTest, ConstantRdp_MatchesTfPrivacy) {
  // TF Privacy rdp_accountant_test.py test_get_privacy_spent_check_target_
  // delta: RDP 1.1 at orders 2..32, delta 1e-5 -> eps 1.32783806176 at
  // order 32 with the improved conversion.
  std::vector<double> orders, rdp;
  for (int o = 2; o <= 32; ++o) {
    orders.push_back(o);
    rdp.push_back(1.1);
  }
  absl::StatusOr<EpsilonResult> eps =
      RdpToEpsilon(orders, rdp, 1e-5, RdpConversion::kImproved);
  ASSERT_TRUE(eps.ok()) << eps.status();
  EXPECT_NEAR(eps->epsilon, 1.32783806176, 1e-10);
  EXPECT_EQ(eps->optimal_order, 32);
  EXPECT_EQ(eps->conversion, RdpConversion::kImproved);
  // Classic: 1.1 - log(1e-5) / 31 by hand.
  eps = RdpToEpsilon(orders, rdp, 1e-5, RdpConversion::kClassic);
  ASSERT_TRUE(eps.ok());
  EXPECT_NEAR(eps->epsilon, 1.1 + std::log(1e5) / 31, 1e-12);
  EXPECT_EQ(eps->conversion, RdpConversion::kClassic);
}

TEST(RdpToEpsilonTest, GaussianCalibratedToEpsilonOne_MatchesTfPrivacy) {
  // TF Privacy test_get_privacy_spent_check_target_delta, second part: the
  // Gaussian mechanism with sigma = 4.530877117 over orders 1.000..99.999
  // (step 0.001) is (1, 1e-6)-DP; assertAlmostEqual (7 places).
  std::vector<double> orders, rdp;
  for (int i = 1001; i < 100000; ++i) {
    orders.push_back(0.001 * i);
    rdp.push_back(Rdp(1.0, 4.530877117, orders.back()));
  }
  absl::StatusOr<EpsilonResult> eps =
      RdpToEpsilon(orders, rdp, 1e-6, RdpConversion::kImproved);
  ASSERT_TRUE(eps.ok());
  EXPECT_NEAR(eps->epsilon, 1.0, 5e-8);
}

// delta(eps) of the Gaussian mechanism with noise multiplier sigma, exactly
// (Balle & Wang, ICML 2018, Thm. 8):
// Phi(1/(2 sigma) - eps sigma) - e^eps Phi(-1/(2 sigma) - eps sigma).
double ExactGaussianDelta(double sigma, double eps) {
  auto phi = [](double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  return phi(0.5 / sigma - eps * sigma) -
         std::exp(eps) * phi(-0.5 / sigma - eps * sigma);
}

TEST(RdpToEpsilonTest, GaussianEpsilonIsSoundUpperBound) {
  // The RDP epsilon must be at least the exact one: at the RDP epsilon, the
  // exact delta is no larger than the requested delta. Also the improved
  // conversion is never looser than the classic one.
  for (double sigma : {0.5, 1.0, 2.0, 5.0}) {
    for (double delta : {1e-3, 1e-5, 1e-9}) {
      const EpsilonResult improved = Epsilon(1.0, sigma, 1, delta);
      EXPECT_LE(ExactGaussianDelta(sigma, improved.epsilon), delta)
          << sigma << " " << delta;
      const EpsilonResult classic =
          Epsilon(1.0, sigma, 1, delta, Classic(DefaultRdpOrders()));
      EXPECT_LE(improved.epsilon, classic.epsilon);
    }
  }
}

TEST(RdpToEpsilonTest, TinyRdp_IsZeroEpsilonByKlBound) {
  // delta^2 >= 1 - exp(-rdp): (0, delta)-DP.
  absl::StatusOr<EpsilonResult> eps =
      RdpToEpsilon({2.0, 3.0}, {1e-12, 2e-12}, 1e-5, RdpConversion::kImproved);
  ASSERT_TRUE(eps.ok());
  EXPECT_EQ(eps->epsilon, 0.0);
}

TEST(RdpToEpsilonTest, InfiniteRdpEverywhere_IsInfiniteEpsilon) {
  absl::StatusOr<EpsilonResult> eps =
      RdpToEpsilon({2.0, 3.0}, {kInf, kInf}, 1e-5, RdpConversion::kImproved);
  ASSERT_TRUE(eps.ok());
  EXPECT_EQ(eps->epsilon, kInf);
}

TEST(RdpToEpsilonTest, RejectsBadInput) {
  const RdpConversion c = RdpConversion::kImproved;
  EXPECT_THAT(RdpToEpsilon({2.0}, {1.0}, 0.0, c).status().message(),
              HasSubstr("delta must be in (0, 1)"));
  EXPECT_THAT(RdpToEpsilon({2.0}, {1.0}, 1.0, c).status().message(),
              HasSubstr("delta must be in (0, 1)"));
  EXPECT_THAT(RdpToEpsilon({2.0}, {1.0, 2.0}, 1e-5, c).status().message(),
              HasSubstr("equal length"));
  EXPECT_THAT(RdpToEpsilon({}, {}, 1e-5, c).status().message(),
              HasSubstr("non-empty"));
  EXPECT_THAT(RdpToEpsilon({1.0}, {1.0}, 1e-5, c).status().message(),
              HasSubstr("orders must be > 1"));
  EXPECT_THAT(RdpToEpsilon({2.0}, {-1.0}, 1e-5, c).status().message(),
              HasSubstr("rdp must be >= 0"));
}

// ---------------------------------------------------------------------------
// Published epsilons of DP-SGD runs.

TEST(RdpAccountantTest, MatchesTfPrivacyComputeDpSgdPrivacy) {
  // TF Privacy compute_dp_sgd_privacy_test.py test_compute_dp_sgd_privacy
  // (dp_accounting RdpAccountant, improved conversion, the default orders):
  // (n, batch, noise, epochs, delta) -> (eps, order).
  struct Case {
    int64_t n, batch;
    double sigma, epochs, delta, eps, order;
  };
  const Case cases[] = {
      {60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19.0},
      {100000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 13.0},
      {100000000, 1024, 0.1, 10, 1e-7, 5907982.3113978775, 1.25},
  };
  for (const Case& c : cases) {
    const EpsilonResult eps = Epsilon(SamplingRate(c.n, c.batch), c.sigma,
                                      Steps(c.n, c.batch, c.epochs), c.delta);
    EXPECT_NEAR(eps.epsilon, c.eps, 1e-9 * c.eps) << c.n;
    EXPECT_EQ(eps.optimal_order, c.order) << c.n;
    EXPECT_EQ(eps.conversion, RdpConversion::kImproved);
  }
}

TEST(RdpAccountantTest, ClassicConversion_MatchesTfPrivacyTutorialReadme) {
  // TF Privacy tutorials/README.md (2019), printed to 2 decimals with the
  // classic conversion: MNIST, N = 60000, batch 256, delta = 1e-5.
  // "compute_dp_sgd_privacy.py --N=60000 --batch_size=256
  //  --noise_multiplier=1.1 --epochs=60 --delta=1e-5" -> eps = 3.01; the
  // tutorial prints 1.03 after 1 epoch and 1.11 after 2; the table lists
  // noise 1.3 for 15 epochs -> 1.19 and noise 0.7 for 45 epochs -> 7.10.
  // The tutorial's compute_epsilon uses TutorialOrders().
  const double q = SamplingRate(60000, 256);
  const auto eps = [&](double sigma, double epochs) {
    return Epsilon(q, sigma, Steps(60000, 256, epochs), 1e-5,
                   Classic(TutorialOrders()))
        .epsilon;
  };
  EXPECT_NEAR(eps(1.1, 60), 3.01, 0.005);
  EXPECT_NEAR(eps(1.1, 1), 1.03, 0.005);
  EXPECT_NEAR(eps(1.1, 2), 1.11, 0.005);
  EXPECT_NEAR(eps(1.3, 15), 1.19, 0.005);
  EXPECT_NEAR(eps(0.7, 45), 7.10, 0.005);
  // With the default orders the 60-epoch figure is the same to 2 decimals.
  EXPECT_NEAR(
      Epsilon(q, 1.1, Steps(60000, 256, 60), 1e-5, Classic(DefaultRdpOrders()))
          .epsilon,
      3.01, 0.005);
  // The improved conversion gives 2.597 (order 8) for the same run, the
  // value current TF Privacy reports (reproduced by its own test below).
  const EpsilonResult improved = Epsilon(q, 1.1, Steps(60000, 256, 60), 1e-5);
  EXPECT_NEAR(improved.epsilon, 2.597, 0.0005);
  EXPECT_EQ(improved.optimal_order, 8);
}

TEST(RdpAccountantTest, ClassicConversion_MatchesEarlierTutorialReadme) {
  // The earlier README (noise 1.12, steps = epoch * (60000 // 256)):
  // 60 epochs -> 2.92, 1 epoch -> 1.00, 2 epochs -> 1.04, and the table row
  // noise 1.2 for 10 epochs -> 1.20.
  const double q = SamplingRate(60000, 256);
  const auto eps = [&](double sigma, int epochs) {
    return Epsilon(q, sigma, epochs * (60000 / 256), 1e-5,
                   Classic(TutorialOrders()))
        .epsilon;
  };
  EXPECT_NEAR(eps(1.12, 60), 2.92, 0.005);
  EXPECT_NEAR(eps(1.12, 1), 1.00, 0.005);
  EXPECT_NEAR(eps(1.12, 2), 1.04, 0.005);
  EXPECT_NEAR(eps(1.2, 10), 1.20, 0.005);
}

TEST(RdpAccountantTest, ClassicConversion_MatchesAbadiMomentsAccountant) {
  // Abadi et al., CCS 2016, Section 3.1: q = 0.01, sigma = 4, delta = 1e-5,
  // T = 10000 steps gives eps ~ 1.26 with the moments accountant. The
  // moments accountant is RDP at integer orders lambda + 1 with lambda <= 32
  // and the classic tail bound, i.e. orders 2..33 here.
  std::vector<double> orders;
  for (int o = 2; o <= 33; ++o) orders.push_back(o);
  const EpsilonResult moments =
      Epsilon(0.01, 4.0, 10000, 1e-5, Classic(orders));
  EXPECT_NEAR(moments.epsilon, 1.26, 0.005);
  EXPECT_EQ(moments.conversion, RdpConversion::kClassic);
  // Today's default (improved conversion) is tighter: 1.0355.
  const EpsilonResult improved = Epsilon(0.01, 4.0, 10000, 1e-5);
  EXPECT_NEAR(improved.epsilon, 1.0355, 0.0005);
}

TEST(RdpAccountantTest, HeterogeneousComposition_MatchesTfPrivacy) {
  // TF Privacy rdp_accountant_test.py test_check_composition: 40000 steps
  // of (q = 1e-4, sigma = 0.4) then 100 of (q = 0.1, sigma = 2), delta =
  // 1e-5, these orders: eps = 8.509656 at order 2.5 with the classic
  // conversion (the improved one must not exceed it).
  const std::vector<double> orders = {1.25, 1.5, 1.75, 2.,  2.5, 3.,  4.,
                                      5.,   6.,  7.,   8.,  10., 12., 14.,
                                      16.,  20., 24.,  28., 32., 64., 256.};
  std::unique_ptr<RdpAccountant> classic = MakeAccountant(Classic(orders));
  ASSERT_TRUE(classic->Compose(1e-4, 0.4, 40000).ok());
  ASSERT_TRUE(classic->Compose(0.1, 2.0, 100).ok());
  absl::StatusOr<EpsilonResult> eps = classic->GetEpsilon(1e-5);
  ASSERT_TRUE(eps.ok());
  EXPECT_NEAR(eps->epsilon, 8.509656, 5e-6);
  EXPECT_EQ(eps->optimal_order, 2.5);

  RdpAccountant::Options improved_options;
  improved_options.orders = orders;
  std::unique_ptr<RdpAccountant> improved = MakeAccountant(improved_options);
  ASSERT_TRUE(improved->Compose(1e-4, 0.4, 40000).ok());
  ASSERT_TRUE(improved->Compose(0.1, 2.0, 100).ok());
  EXPECT_LE(improved->GetEpsilon(1e-5)->epsilon, 8.509656);
}

// ---------------------------------------------------------------------------
// Accountant behaviour.

TEST(RdpAccountantTest, NothingComposed_IsZeroEpsilon) {
  std::unique_ptr<RdpAccountant> a = MakeAccountant();
  EXPECT_EQ(a->GetEpsilon(1e-5)->epsilon, 0.0);
  ASSERT_TRUE(a->Compose(0.1, 1.0, 0).ok());
  EXPECT_EQ(a->GetEpsilon(1e-5)->epsilon, 0.0);
}

TEST(RdpAccountantTest, ComposeSplitIntoPhases_EqualsOneCompose) {
  std::unique_ptr<RdpAccountant> once = MakeAccountant();
  std::unique_ptr<RdpAccountant> split = MakeAccountant();
  ASSERT_TRUE(once->Compose(0.1, 1.0, 100).ok());
  ASSERT_TRUE(split->Compose(0.1, 1.0, 30).ok());
  for (int i = 0; i < 70; ++i) ASSERT_TRUE(split->Compose(0.1, 1.0, 1).ok());
  for (size_t i = 0; i < once->rdp().size(); ++i) {
    EXPECT_NEAR(split->rdp()[i], once->rdp()[i], 1e-12 * once->rdp()[i]);
  }
  EXPECT_NEAR(split->GetEpsilon(1e-5)->epsilon, once->GetEpsilon(1e-5)->epsilon,
              1e-10);
}

TEST(RdpAccountantTest, EpsilonIsMonotone) {
  // More steps, a higher sampling rate, less noise or a smaller delta never
  // give a smaller epsilon.
  const double base = Epsilon(0.1, 1.0, 100, 1e-5).epsilon;
  EXPECT_LT(Epsilon(0.1, 1.0, 50, 1e-5).epsilon, base);
  EXPECT_GT(Epsilon(0.1, 1.0, 200, 1e-5).epsilon, base);
  EXPECT_GT(Epsilon(0.2, 1.0, 100, 1e-5).epsilon, base);
  EXPECT_LT(Epsilon(0.05, 1.0, 100, 1e-5).epsilon, base);
  EXPECT_LT(Epsilon(0.1, 1.5, 100, 1e-5).epsilon, base);
  EXPECT_GT(Epsilon(0.1, 0.7, 100, 1e-5).epsilon, base);
  EXPECT_GT(Epsilon(0.1, 1.0, 100, 1e-7).epsilon, base);
  EXPECT_LT(Epsilon(0.1, 1.0, 100, 1e-3).epsilon, base);
  double previous = 0.0;
  for (int64_t steps = 1; steps <= 1000; steps *= 2) {
    const double eps = Epsilon(0.1, 1.0, steps, 1e-5).epsilon;
    EXPECT_GT(eps, previous) << steps;
    previous = eps;
  }
}

TEST(RdpAccountantTest, RejectsBadArgumentsAndKeepsState) {
  std::unique_ptr<RdpAccountant> a = MakeAccountant();
  ASSERT_TRUE(a->Compose(0.1, 1.0, 10).ok());
  const std::vector<double> before = a->rdp();
  absl::Status s = a->Compose(0.0, 1.0, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("sampling rate q"));
  EXPECT_THAT(a->Compose(1.01, 1.0, 1).message(), HasSubstr("q must be"));
  EXPECT_THAT(a->Compose(0.1, 0.0, 1).message(), HasSubstr("sigma"));
  EXPECT_THAT(a->Compose(0.1, -2.0, 1).message(), HasSubstr("sigma"));
  EXPECT_THAT(a->Compose(0.1, 1.0, -1).message(), HasSubstr("steps"));
  EXPECT_EQ(a->rdp(), before);
  EXPECT_THAT(a->GetEpsilon(0.0).status().message(), HasSubstr("delta"));
  EXPECT_THAT(a->GetEpsilon(1.0).status().message(), HasSubstr("delta"));
  EXPECT_THAT(a->GetEpsilon(-1e-5).status().message(), HasSubstr("delta"));
}

TEST(RdpAccountantTest, CreateRejectsBadOrders) {
  RdpAccountant::Options options;
  options.orders = {};
  EXPECT_THAT(RdpAccountant::Create(options).status().message(),
              HasSubstr("orders must not be empty"));
  options.orders = {2.0, 1.0};
  EXPECT_THAT(RdpAccountant::Create(options).status().message(),
              HasSubstr("orders"));
  options.orders = {2.0, std::nan("")};
  EXPECT_EQ(RdpAccountant::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RdpAccountantTest, SaveRestore_RoundTripsExactly) {
  std::unique_ptr<RdpAccountant> a = MakeAccountant();
  ASSERT_TRUE(a->Compose(0.1, 1.0, 37).ok());
  ASSERT_TRUE(a->Compose(0.013, 0.77, 1234).ok());
  const std::string state = a->SaveState();
  EXPECT_LT(state.size(), 4096u);

  std::unique_ptr<RdpAccountant> b = MakeAccountant();
  ASSERT_TRUE(b->RestoreState(state).ok());
  EXPECT_EQ(b->rdp(), a->rdp());
  EXPECT_EQ(b->GetEpsilon(1e-5)->epsilon, a->GetEpsilon(1e-5)->epsilon);
  // Composing on after a restore continues the same run.
  ASSERT_TRUE(a->Compose(0.1, 1.0, 5).ok());
  ASSERT_TRUE(b->Compose(0.1, 1.0, 5).ok());
  EXPECT_EQ(b->rdp(), a->rdp());
}

TEST(RdpAccountantTest, SaveRestore_KeepsInfinity) {
  RdpAccountant::Options options;
  options.orders = {2.0, 512.0};
  std::unique_ptr<RdpAccountant> a = MakeAccountant(options);
  ASSERT_TRUE(a->Compose(1.0, 1e-150, int64_t{1} << 62).ok());
  ASSERT_EQ(a->rdp()[1], kInf);
  std::unique_ptr<RdpAccountant> b = MakeAccountant(options);
  ASSERT_TRUE(b->RestoreState(a->SaveState()).ok());
  EXPECT_EQ(b->rdp(), a->rdp());
}

TEST(RdpAccountantTest, RestoreRejectsBadStateAndKeepsState) {
  RdpAccountant::Options options;
  options.orders = {2.0, 3.5};
  std::unique_ptr<RdpAccountant> a = MakeAccountant(options);
  ASSERT_TRUE(a->Compose(0.5, 1.0, 3).ok());
  ASSERT_TRUE(a->RestoreState("fedge-rdp-accountant v1\n2 0.5\n3.5 1\n").ok());
  EXPECT_EQ(a->rdp(), (std::vector<double>{0.5, 1.0}));
  ASSERT_TRUE(a->RestoreState(a->SaveState()).ok());

  const std::string bad_states[] = {
      "",
      "not an accountant\n2 0.5\n3.5 1\n",
      "fedge-rdp-accountant v2\n2 0.5\n3.5 1\n",
      "fedge-rdp-accountant v1\n2 0.5\n",              // Too few orders.
      "fedge-rdp-accountant v1\n2 0.5\n3.5 1\n4 2\n",  // Too many.
      "fedge-rdp-accountant v1\n2 0.5\n3 1\n",         // Other orders.
      "fedge-rdp-accountant v1\n2 -0.5\n3.5 1\n",      // Negative.
      "fedge-rdp-accountant v1\n2 nan\n3.5 1\n",       // NaN.
      "fedge-rdp-accountant v1\n2 0.5 7\n3.5 1\n",     // Extra field.
      "fedge-rdp-accountant v1\n2 abc\n3.5 1\n",       // Not a number.
      "fedge-rdp-accountant v1\n2\n3.5 1\n",           // Missing value.
  };
  for (const std::string& bad : bad_states) {
    absl::Status s = a->RestoreState(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(a->rdp(), (std::vector<double>{0.5, 1.0})) << bad;
  }
  EXPECT_THAT(
      a->RestoreState("fedge-rdp-accountant v1\n2 0.5\n3 1\n").message(),
      HasSubstr("saved with other orders"));
}

// ---------------------------------------------------------------------------
// Noise multiplier for a target epsilon.

TEST(NoiseMultiplierForEpsilonTest, InvertsTfPrivacyPublishedValues) {
  // TF Privacy compute_noise_from_budget_test.py (classic conversion):
  // (n, batch, target eps, epochs, delta) -> noise 1.3, 1.0, 0.1.
  struct Case {
    int64_t n, batch;
    double target_eps, epochs, delta, sigma;
  };
  const Case classic_cases[] = {
      {60000, 150, 0.941870567, 15, 1e-5, 1.3},
      {100000, 100, 1.70928734, 30, 1e-7, 1.0},
      {100000000, 1024, 5907984.81339406, 10, 1e-7, 0.1},
  };
  for (const Case& c : classic_cases) {
    absl::StatusOr<double> sigma = NoiseMultiplierForEpsilon(
        c.target_eps, c.delta, SamplingRate(c.n, c.batch),
        Steps(c.n, c.batch, c.epochs), Classic(DefaultRdpOrders()));
    ASSERT_TRUE(sigma.ok()) << sigma.status();
    EXPECT_NEAR(*sigma, c.sigma, 3e-6 * c.sigma) << c.n;
  }
  // And the improved-conversion epsilons of compute_dp_sgd_privacy_test.
  absl::StatusOr<double> sigma = NoiseMultiplierForEpsilon(
      0.7242234026109595, 1e-5, SamplingRate(60000, 150),
      Steps(60000, 150, 15));
  ASSERT_TRUE(sigma.ok());
  EXPECT_NEAR(*sigma, 1.3, 3e-6);
}

TEST(NoiseMultiplierForEpsilonTest, MeetsTargetTightly) {
  for (double target : {1.0, 4.0, 8.0}) {
    absl::StatusOr<double> sigma =
        NoiseMultiplierForEpsilon(target, 1e-5, 0.1, 100);
    ASSERT_TRUE(sigma.ok()) << sigma.status();
    EXPECT_LE(Epsilon(0.1, *sigma, 100, 1e-5).epsilon, target);
    EXPECT_GT(Epsilon(0.1, *sigma * (1 - 2e-6), 100, 1e-5).epsilon, target);
  }
}

TEST(NoiseMultiplierForEpsilonTest, UnreachableTarget_IsOutOfRange) {
  // Classic conversion: eps >= -log(delta) / (512 - 1) = 0.0225 whatever
  // the noise.
  EXPECT_EQ(NoiseMultiplierForEpsilon(0.01, 1e-5, 0.1, 100,
                                      Classic(DefaultRdpOrders()))
                .status()
                .code(),
            absl::StatusCode::kOutOfRange);
}

TEST(NoiseMultiplierForEpsilonTest, RejectsBadArguments) {
  EXPECT_THAT(NoiseMultiplierForEpsilon(0, 1e-5, 0.1, 1).status().message(),
              HasSubstr("target_eps"));
  EXPECT_THAT(NoiseMultiplierForEpsilon(kInf, 1e-5, 0.1, 1).status().message(),
              HasSubstr("target_eps"));
  EXPECT_THAT(NoiseMultiplierForEpsilon(1, 0, 0.1, 1).status().message(),
              HasSubstr("delta"));
  EXPECT_THAT(NoiseMultiplierForEpsilon(1, 1e-5, 0, 1).status().message(),
              HasSubstr("q"));
  EXPECT_THAT(NoiseMultiplierForEpsilon(1, 1e-5, 0.1, 0).status().message(),
              HasSubstr("steps"));
  RdpAccountant::Options bad;
  bad.orders = {0.5};
  EXPECT_THAT(
      NoiseMultiplierForEpsilon(1, 1e-5, 0.1, 1, bad).status().message(),
      HasSubstr("orders"));
}

}  // namespace
}  // namespace fedge
