#include "tests/e2e/model_diff.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace fedge::testing {

ModelDifference CompareModels(const ModelState& a, const ModelState& b) {
  ModelDifference d;
  if (!CheckSchema(SchemaOf(a), b).ok()) return d;
  d.max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const TensorBuffer& ta = a.tensor(i);
    const TensorBuffer& tb = b.tensor(i);
    if (ta.dtype() != DType::kFloat32) continue;
    for (size_t j = 0; j < ta.floats().size(); ++j) {
      const double diff = std::fabs(static_cast<double>(ta.floats()[j]) -
                                    static_cast<double>(tb.floats()[j]));
      ++d.elements;
      if (diff > 0) ++d.differing;
      d.max_abs = std::max(d.max_abs, diff);
    }
  }
  return d;
}

std::string Describe(const ModelDifference& d) {
  if (d.max_abs < 0) return "the models do not have the same schema";
  return absl::StrFormat("max |difference| %.3g, %d of %d elements differ",
                         d.max_abs, d.differing, d.elements);
}

}  // namespace fedge::testing
