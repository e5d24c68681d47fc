// The OpenBLAS kernels for this CPU (common/ml/blas_kernels.h).
#include "common/ml/blas_kernels.h"

#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <vector>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"

namespace fedge::ml {
namespace {

CpuFeatures Avx512(bool bf16) {
  CpuFeatures f;
  f.avx = f.avx2 = f.fma = true;
  f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512cd = true;
  f.avx512bf16 = bf16;
  return f;
}

TEST(BetterOpenBlasCoreTest, PrescottOnANewerCpu_TheBestItsFeaturesAllow) {
  EXPECT_EQ(BetterOpenBlasCore("Prescott", Avx512(true)), "Cooperlake");
  EXPECT_EQ(BetterOpenBlasCore("Prescott", Avx512(false)), "SkylakeX");
  CpuFeatures f = Avx512(false);
  f.avx512cd = false;  // Not all of SkylakeX's AVX-512.
  EXPECT_EQ(BetterOpenBlasCore("Prescott", f), "Haswell");
  f = CpuFeatures();
  f.avx = f.avx2 = true;  // AVX2 without FMA.
  EXPECT_EQ(BetterOpenBlasCore("Prescott", f), "Sandybridge");
  EXPECT_EQ(BetterOpenBlasCore("PRESCOTT", f), "Sandybridge");
}

TEST(BetterOpenBlasCoreTest, KeepsARecognisedCoreAndAnOldCpu) {
  EXPECT_EQ(BetterOpenBlasCore("Haswell", Avx512(true)), std::nullopt);
  EXPECT_EQ(BetterOpenBlasCore("SkylakeX", Avx512(true)), std::nullopt);
  EXPECT_EQ(BetterOpenBlasCore("", Avx512(true)), std::nullopt);
  EXPECT_EQ(BetterOpenBlasCore("Prescott", CpuFeatures()), std::nullopt);
}

// Loads Debian's OpenBLAS (libopenblas0-openmp, which the build needs) into
// the process, as LibTorch does in the programs.
void LoadOpenBlas() {
  ASSERT_NE(dlopen("libopenblas.so.0", RTLD_NOW | RTLD_GLOBAL), nullptr)
      << dlerror();
}

using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int,
                       const float*, int, float, float*, int);

TEST(ChooseBlasKernelsTest, NeverLeavesThePrescottFallbackOnAnAvx2Cpu) {
  LoadOpenBlas();
  unsetenv("OPENBLAS_CORETYPE");
  const BlasKernels k = ChooseBlasKernels();
  ASSERT_FALSE(k.detected.empty()) << "OpenBLAS picks no kernels at run time";
  const CpuFeatures f = DetectCpuFeatures();
  EXPECT_EQ(k.chosen, BetterOpenBlasCore(k.detected, f).value_or(k.detected));
  if (f.avx2 && f.fma) {
    EXPECT_NE(absl::AsciiStrToLower(k.chosen), "prescott");
  }
  EXPECT_EQ(k.note.empty(), k.chosen == k.detected) << k.note;
  EXPECT_EQ(std::getenv("OPENBLAS_CORETYPE"), nullptr);
  // A second call finds the kernels chosen.
  const BlasKernels again = ChooseBlasKernels();
  EXPECT_EQ(again.detected, k.chosen);
  EXPECT_EQ(again.chosen, k.chosen);
  EXPECT_TRUE(again.note.empty());
}

TEST(ChooseBlasKernelsTest, ProductsAreRightOnTheChosenKernels) {
  LoadOpenBlas();
  ChooseBlasKernels();
  auto sgemm = reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "cblas_sgemm"));
  ASSERT_NE(sgemm, nullptr);
  // C = A B, row-major, sizes that leave partial blocks in every kernel.
  const int m = 37, k = 531, n = 29;
  std::vector<float> a(m * k), b(k * n), c(m * n, -1.0f);
  for (int i = 0; i < m * k; ++i) a[i] = std::sin(0.37f * i);
  for (int i = 0; i < k * n; ++i) b[i] = std::cos(0.11f * i);
  constexpr int kRowMajor = 101, kNoTrans = 111;
  sgemm(kRowMajor, kNoTrans, kNoTrans, m, n, k, 1.0f, a.data(), k, b.data(), n,
        0.0f, c.data(), n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double want = 0;
      for (int p = 0; p < k; ++p) want += double{a[i * k + p]} * b[p * n + j];
      ASSERT_NEAR(c[i * n + j], want, 1e-3) << "C[" << i << "][" << j << "]";
    }
  }
}

TEST(ChooseBlasKernelsTest, KeepsTheUsersChoice) {
  LoadOpenBlas();
  setenv("OPENBLAS_CORETYPE", "Prescott", 1);
  const BlasKernels k = ChooseBlasKernels();
  unsetenv("OPENBLAS_CORETYPE");
  EXPECT_EQ(k.chosen, k.detected);
  EXPECT_TRUE(k.note.empty()) << k.note;
}

}  // namespace
}  // namespace fedge::ml
