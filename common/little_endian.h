#ifndef FEDGE_COMMON_LITTLE_ENDIAN_H_
#define FEDGE_COMMON_LITTLE_ENDIAN_H_

// Fixed-width little-endian integers in byte strings, whatever the host's
// byte order: the one home for the integer fields of fedge's file and
// message formats (model codec, checkpoints, server-optimizer state,
// secure-aggregation messages).

#include <cstdint>
#include <string>

namespace fedge {

// Appends the low `bytes` (1 to 8) bytes of `value`, least significant
// first.
inline void AppendLE(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
}

// The `bytes` (1 to 8) bytes at `p`, least significant first. The caller
// has checked that they are there.
inline uint64_t ReadLE(const char* p, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<uint8_t>(p[i]);
  }
  return value;
}

}  // namespace fedge

#endif  // FEDGE_COMMON_LITTLE_ENDIAN_H_
