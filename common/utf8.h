// UTF-8 validation for text that goes into other formats (Prometheus
// exposition, JSON): invalid sequences are replaced, not passed on.
#ifndef FEDGE_COMMON_UTF8_H_
#define FEDGE_COMMON_UTF8_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace fedge {

// Length of the valid UTF-8 sequence at the start of `s`, or 0 when it is
// not one (overlong forms, surrogates and code points past U+10FFFF count
// as invalid).
inline size_t Utf8SequenceLength(absl::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t lead = byte(0);
  if (lead < 0x80) return 1;
  size_t length;
  uint8_t min_second = 0x80, max_second = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) min_second = 0xa0;  // Overlong.
    if (lead == 0xed) max_second = 0x9f;  // Surrogates.
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) min_second = 0x90;  // Overlong.
    if (lead == 0xf4) max_second = 0x8f;  // Past U+10FFFF.
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  if (byte(1) < min_second || byte(1) > max_second) return 0;
  for (size_t i = 2; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
  }
  return length;
}

}  // namespace fedge

#endif  // FEDGE_COMMON_UTF8_H_
