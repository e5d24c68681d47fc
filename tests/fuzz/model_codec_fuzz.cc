// libFuzzer entry point for the model decoder: the input is fed in two
// parts split at data[0], so that chunk boundaries are fuzzed too. Every
// input must either decode to a model that re-encodes to the same bytes or
// yield an error; anything else (a crash, a sanitizer report, a large
// allocation) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "common/model_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = size == 0 ? 0 : data[0] % (size + 1);
  fedge::DecodeLimits limits;
  limits.max_total_bytes = 1 << 20;  // Keeps every allocation small.
  fedge::ModelDecoder decoder(limits);
  if (!decoder.Feed(input.substr(0, split)).ok()) return 0;
  if (!decoder.Feed(input.substr(split)).ok()) return 0;
  absl::StatusOr<fedge::ModelState> model = decoder.Finish();
  if (!model.ok()) return 0;
  // A model that decodes is canonical.
  if (fedge::EncodeModel(*model) != input) std::abort();
  return 0;
}
