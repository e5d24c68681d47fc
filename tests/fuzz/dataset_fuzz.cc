// libFuzzer entry point for the dataset parsers (untrusted files): the input
// is split at data[0] into two files, parsed as IDX image and label bytes by
// ParseIdx and as .npy feature and label bytes by ParseNpy, and the whole
// input is parsed as CSV. Every input must yield a dataset or an error; a
// crash, a sanitizer report or a large allocation is a bug.
#include <cstddef>
#include <cstdint>

#include "common/data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = size == 0 ? 0 : data[0] % (size + 1);
  const absl::string_view first = input.substr(0, split);
  const absl::string_view second = input.substr(split);
  fedge::ParseIdx(first, second, -1, 0).status().IgnoreError();
  fedge::ParseNpy(first, second, -1, 0).status().IgnoreError();
  fedge::CsvOptions options;
  options.max_rows = 1000;
  fedge::ParseCsv(input, options, "fuzz").status().IgnoreError();
  return 0;
}
