#include "common/ml/blas_kernels.h"

#include <dlfcn.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace fedge::ml {
namespace {

// OpenBLAS's choice for a CPU not in its table.
constexpr char kFallbackCore[] = "Prescott";

// The entry points of a DYNAMIC_ARCH OpenBLAS: the public name of its
// choice, and the pair that drops and makes the choice again (it reads
// OPENBLAS_CORETYPE, as at load time). Null when not loaded.
struct OpenBlas {
  using Corename = char* (*)();
  using Call = void (*)();
  Corename corename = nullptr;
  Call dynamic_init = nullptr;
  Call dynamic_quit = nullptr;
};

OpenBlas FindOpenBlas() {
  OpenBlas b;
  b.corename = reinterpret_cast<OpenBlas::Corename>(
      dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  b.dynamic_init = reinterpret_cast<OpenBlas::Call>(
      dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
  b.dynamic_quit = reinterpret_cast<OpenBlas::Call>(
      dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
  return b;
}

std::string Corename(const OpenBlas& b) {
  const char* name = b.corename != nullptr ? b.corename() : nullptr;
  return name != nullptr ? name : "";
}

std::string Describe(const CpuFeatures& f) {
  if (f.avx512bf16) return "AVX-512 with BF16";
  if (f.avx512f) return "AVX-512";
  if (f.avx2) return "AVX2";
  return "AVX";
}

}  // namespace

CpuFeatures DetectCpuFeatures() {
  CpuFeatures f;
#if defined(__x86_64__) && defined(__GNUC__)
  // libgcc sets a feature only when the OS saves its registers (XGETBV).
  __builtin_cpu_init();
  f.avx = __builtin_cpu_supports("avx");
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512cd = __builtin_cpu_supports("avx512cd");
  f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
  return f;
}

std::optional<std::string> BetterOpenBlasCore(absl::string_view detected,
                                              const CpuFeatures& f) {
  if (!absl::EqualsIgnoreCase(detected, kFallbackCore)) return std::nullopt;
  const bool avx512 =
      f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512cd;
  if (avx512 && f.avx512bf16) return "Cooperlake";
  if (avx512) return "SkylakeX";
  if (f.avx2 && f.fma) return "Haswell";
  if (f.avx) return "Sandybridge";
  return std::nullopt;
}

BlasKernels ChooseBlasKernels() {
  const OpenBlas b = FindOpenBlas();
  BlasKernels k;
  if (b.corename == nullptr || b.dynamic_init == nullptr ||
      b.dynamic_quit == nullptr) {
    return k;  // No OpenBLAS that picks its kernels at run time.
  }
  k.detected = Corename(b);
  k.chosen = k.detected;
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return k;
  const CpuFeatures features = DetectCpuFeatures();
  const std::optional<std::string> better =
      BetterOpenBlasCore(k.detected, features);
  if (!better.has_value()) return k;
  // The choice is made again with the variable set, then the environment
  // is left as it was (children make their own choice).
  setenv("OPENBLAS_CORETYPE", better->c_str(), 1);
  b.dynamic_quit();
  b.dynamic_init();
  unsetenv("OPENBLAS_CORETYPE");
  k.chosen = Corename(b);
  if (absl::EqualsIgnoreCase(k.chosen, *better)) {
    k.note = absl::StrCat("OpenBLAS did not recognise this CPU and chose its ",
                          k.detected, " kernels; using its ", k.chosen,
                          " kernels instead (the CPU has ", Describe(features),
                          "; set OPENBLAS_CORETYPE to choose others)");
  } else {
    k.note = absl::StrCat("OpenBLAS chose its ", k.detected,
                          " kernels on a CPU with ", Describe(features),
                          " and could not switch to its ", *better,
                          " kernels (it has ", k.chosen, ")");
  }
  FEDGE_LOG(INFO) << k.note;
  return k;
}

}  // namespace fedge::ml
