// How two models' float32 values differ: for end-to-end tests that compare
// the models of two runs (resumed vs uninterrupted, tree vs flat).
#ifndef FEDGE_TESTS_E2E_MODEL_DIFF_H_
#define FEDGE_TESTS_E2E_MODEL_DIFF_H_

#include <cstdint>
#include <string>

#include "common/tensor_buffer.h"

namespace fedge::testing {

struct ModelDifference {
  double max_abs = -1;    // Largest |a - b|; -1 when the schemas differ.
  int64_t differing = 0;  // Float32 elements that differ at all.
  int64_t elements = 0;   // Float32 elements compared.
};

ModelDifference CompareModels(const ModelState& a, const ModelState& b);

// "max |difference| 1.2e-07, 3 of 7850 elements differ", or why the models
// cannot be compared.
std::string Describe(const ModelDifference& d);

}  // namespace fedge::testing

#endif  // FEDGE_TESTS_E2E_MODEL_DIFF_H_
