// libFuzzer entry point for the dataset parsers (untrusted files). The input
// is a record (U16 length, bytes) and the rest: ParseIdx reads them as IDX
// image and label bytes, ParseNpy as .npy feature and label bytes, ParseCsv
// the rest as CSV text; and the rest, written to a file, is read back by
// ReadFileMaybeGzipped (gunzipped when it starts with 1f 8b). Every input
// must yield a dataset or an error; a crash, a sanitizer report or a large
// allocation is a bug.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/data/dataset.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::InputReader;
using fuzz::InputWriter;

// IDX bytes: magic (type 0x08, `rank`), dims (big-endian u32), data.
std::string Idx(int rank, const std::vector<uint32_t>& dims,
                const std::string& data) {
  std::string out = {0, 0, 8, static_cast<char>(rank)};
  for (uint32_t d : dims) {
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(d >> 8 * i));
  }
  return out + data;
}

// .npy version 1.0 with the header dictionary padded to 64 bytes.
std::string Npy(const std::string& descr, const std::string& shape,
                const std::string& data) {
  std::string header =
      absl::StrCat("{'descr': '", descr,
                   "', 'fortran_order': False, 'shape': ", shape, ", }");
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + data;
}

std::string Gzip(const std::string& bytes) {
  z_stream z{};
  fuzz::Check(
      deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) == Z_OK,
      "deflateInit2");
  std::string out(deflateBound(&z, bytes.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  fuzz::Check(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string Seed(const std::string& first, const std::string& rest) {
  return InputWriter().Record(first).Bytes(rest).str();
}

std::vector<std::string> Seeds() {
  const std::string images = Idx(3, {2, 2, 3}, "abcdefghijkl");
  const std::string labels = Idx(1, {2}, std::string("\x01\x07", 2));
  const std::string features = Npy("<f4", "(2, 2)", std::string(16, '\0'));
  const std::string npy_labels = Npy(
      "<i8", "(2,)", std::string("\x01\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0", 16));
  const std::string csv = "x,y,label\n0.5,1,0\n-2,3e2,1\n";
  return {Seed(images, labels), Seed(features, npy_labels), Seed("", csv),
          Seed("", Gzip(csv)), Seed(images, Gzip(labels))};
}

void FuzzOne(absl::string_view input) {
  static const fuzz::ScratchDir dir;
  InputReader in(input);
  const absl::string_view first = in.Record();
  const absl::string_view rest = in.Rest();
  ParseIdx(first, rest, -1, 0).status().IgnoreError();
  ParseNpy(first, rest, -1, 0).status().IgnoreError();
  CsvOptions options;
  options.max_rows = 1000;
  ParseCsv(rest, options, "fuzz").status().IgnoreError();
  const std::string path = dir.WriteFile("data", rest);
  ReadFileMaybeGzipped(path, 1 << 20).status().IgnoreError();
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
