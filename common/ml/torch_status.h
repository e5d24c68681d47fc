// Runs LibTorch code and turns its exceptions into absl::Status, so that no
// exception crosses a module boundary.
//
//   absl::StatusOr<T> r = CallTorch([&]() -> absl::StatusOr<T> { ... });
#ifndef FEDGE_COMMON_ML_TORCH_STATUS_H_
#define FEDGE_COMMON_ML_TORCH_STATUS_H_

#include <c10/util/Exception.h>

#include <exception>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::ml {

// First line of a c10::Error (its backtrace is noise to a user).
inline std::string TorchErrorMessage(const c10::Error& e) {
  std::string msg = e.what_without_backtrace();
  return msg.substr(0, msg.find('\n'));
}

// Calls fn(); c10::Error becomes INTERNAL ("LibTorch: ..."), std::exception
// INTERNAL too. fn returns absl::Status or absl::StatusOr<T>.
template <typename Fn>
auto CallTorch(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    return absl::InternalError("LibTorch: " + TorchErrorMessage(e));
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("LibTorch: ") + e.what());
  }
}

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_TORCH_STATUS_H_
