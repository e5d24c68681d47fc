// FEDGE_VECTOR_CLONES marks a hot loop over model-sized arrays (encoding,
// checking, folding updates) for a wider instruction set than the
// baseline the project is compiled for. On x86-64 with GCC the function is
// compiled twice, for x86-64 (SSE2: no 32-bit integer max or multiply, so
// these loops run at a quarter of the memory's speed) and for AVX2, and
// the loader picks the clone the CPU runs (GCC's target_clones, an ifunc).
// Elsewhere (ARM64, whose baseline NEON has those instructions; clang,
// whose sanitizer builds are for fuzzing) it is empty. Results are the
// same on every clone: the loops are integer or exactly rounded float
// arithmetic in a fixed order, and AVX2 does not bring FMA (GCC would
// contract a * b + c into one rounding).
#ifndef FEDGE_COMMON_VECTORIZE_H_
#define FEDGE_COMMON_VECTORIZE_H_

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    defined(__linux__)
#define FEDGE_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FEDGE_VECTOR_CLONES
#endif

#endif  // FEDGE_COMMON_VECTORIZE_H_
