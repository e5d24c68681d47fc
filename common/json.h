// JSON string literals, for the status page's /api/status and the
// coordinator's audit log: one escaper for both.
//
// Stateless; thread-safe.
#ifndef FEDGE_COMMON_JSON_H_
#define FEDGE_COMMON_JSON_H_

#include <string>

#include "absl/strings/string_view.h"

namespace fedge {

// Appends `s` to `out` as a JSON string literal, quotes included: '"' and
// '\' escaped, control characters and DEL as \n, \t, ... or \u00XX. Bytes
// from 0x80: kept where they form valid UTF-8 (an invalid byte becomes
// U+FFFD); with `ascii_only`, each written as \u00XX instead, so the output
// is printable ASCII whatever `s` holds.
void AppendJsonString(absl::string_view s, std::string* out,
                      bool ascii_only = false);

}  // namespace fedge

#endif  // FEDGE_COMMON_JSON_H_
