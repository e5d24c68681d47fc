// Status helpers shaped like Abseil's upstream macros (absl 20220623 has
// none), so that a later upgrade is a rename.
//
//   RETURN_IF_ERROR(DoThing());
//   ASSIGN_OR_RETURN(auto value, ComputeValue());
//   ASSIGN_OR_RETURN(existing, ComputeValue());
//
// Both evaluate their argument once and return the failing status unchanged.
#ifndef FEDGE_COMMON_STATUS_MACROS_H_
#define FEDGE_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#define FEDGE_STATUS_CONCAT_INNER_(a, b) a##b
#define FEDGE_STATUS_CONCAT_(a, b) FEDGE_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function if it is not OK.
#define RETURN_IF_ERROR(expr)                                         \
  do {                                                                \
    ::absl::Status fedge_status_ = ::fedge::internal::ToStatus(expr); \
    if (!fedge_status_.ok()) return fedge_status_;                    \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from
// the enclosing function, otherwise moves the value into `lhs`.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  FEDGE_ASSIGN_OR_RETURN_IMPL_(      \
      FEDGE_STATUS_CONCAT_(fedge_statusor_, __LINE__), lhs, rexpr)

#define FEDGE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace fedge::internal {
inline const absl::Status& ToStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}
}  // namespace fedge::internal

namespace fedge {

// Returns `status` with `context` and ": " prepended to its message; OK stays
// OK. Used to say which file, field or agent an error belongs to.
inline absl::Status Annotate(const absl::Status& status,
                             absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), std::string(context) + ": " +
                                         std::string(status.message()));
}

}  // namespace fedge

#endif  // FEDGE_COMMON_STATUS_MACROS_H_
