// The BLAS kernels LibTorch's matrix products run on (no LibTorch here).
//
// Debian's OpenBLAS is built for every x86-64 core and picks its kernels at
// load time from the CPU's family and model. A CPU newer than the library
// (OpenBLAS 0.3.21 on Sapphire or Emerald Rapids, for one) is not in its
// table, and it falls back to its Prescott kernels (SSE3): the products of
// training ran at half the speed the CPU allows. ChooseBlasKernels() finds
// that case and switches OpenBLAS to the kernels the CPU's features allow,
// as newer OpenBLAS releases do for CPUs they do not know. The environment
// variable OPENBLAS_CORETYPE, when set, is the user's choice and is kept.
#ifndef FEDGE_COMMON_ML_BLAS_KERNELS_H_
#define FEDGE_COMMON_ML_BLAS_KERNELS_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace fedge::ml {

// The instruction-set features that decide OpenBLAS's x86-64 kernels (all
// false elsewhere). Each is set only when the OS also saves the registers.
struct CpuFeatures {
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512cd = false;
  bool avx512bf16 = false;
};

CpuFeatures DetectCpuFeatures();

// The OpenBLAS core whose kernels suit a CPU with `features`, when OpenBLAS
// chose `detected` (its name, as openblas_get_corename() spells it) because
// it did not recognise the CPU; nullopt when `detected` is not OpenBLAS's
// fallback or the CPU has nothing better than it. The order is OpenBLAS's
// own for unknown CPUs: Cooperlake (AVX-512 with BF16), SkylakeX
// (AVX-512), Haswell (AVX2 and FMA), Sandybridge (AVX).
std::optional<std::string> BetterOpenBlasCore(absl::string_view detected,
                                              const CpuFeatures& features);

// What ChooseBlasKernels() found and did.
struct BlasKernels {
  // OpenBLAS's own choice; empty when no OpenBLAS that picks its kernels at
  // run time is loaded (then nothing is changed).
  std::string detected;
  // The kernels in use on return.
  std::string chosen;
  // Why `chosen` differs from `detected`, or why it could not; empty when
  // nothing was done.
  std::string note;
};

// Switches OpenBLAS to better kernels as BetterOpenBlasCore() says, unless
// OPENBLAS_CORETYPE is set, and logs the note (INFO). Call it at the start of
// main(), before any thread is started and before any matrix product: it
// replaces the kernel table every product reads.
BlasKernels ChooseBlasKernels();

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_BLAS_KERNELS_H_
