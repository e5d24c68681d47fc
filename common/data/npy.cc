// NumPy .npy reader (https://numpy.org/doc/stable/reference/generated/
// numpy.lib.format.html): a magic string, a version, a header length, a
// Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...)}
// padded with spaces and '\n', then the raw array data.
#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/data/dataset.h"
#include "common/status_macros.h"

namespace fedge {
namespace {

constexpr absl::string_view kNpyMagic("\x93NUMPY", 6);
constexpr bool kHostBigEndian = __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__;

// An element type: kind 'f' (float), 'i' (signed) or 'u' (unsigned), its
// size in bytes and byte order.
struct NpyDtype {
  char kind = 0;
  int size = 0;
  bool big_endian = false;

  std::string Name() const {
    const char* base = kind == 'f' ? "float" : kind == 'i' ? "int" : "uint";
    return absl::StrCat(big_endian && size > 1 ? "big-endian " : "", base,
                        8 * size);
  }
};

// The fields of the header dict.
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// A parsed array: header and the data bytes, checked against each other.
struct NpyArray {
  NpyDtype dtype;
  bool fortran_order = false;
  std::vector<int64_t> shape;
  int64_t num_elements = 0;
  absl::string_view data;
};

// "[60000, 28, 28]".
std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Parses the header's Python dict literal. Accepts what numpy.save writes
// (and Python 2's "3L" integers): string keys, string / bool / int-tuple
// values, trailing commas, spaces.
class HeaderParser {
 public:
  explicit HeaderParser(absl::string_view text) : text_(text) {}

  absl::StatusOr<NpyHeader> Parse() && {
    NpyHeader header;
    bool seen[3] = {false, false, false};
    if (!Consume('{')) return Error("expected '{'");
    while (!Consume('}')) {
      ASSIGN_OR_RETURN(const std::string key, String());
      if (!Consume(':')) return Error("expected ':' after a key");
      const int index = key == "descr"           ? 0
                        : key == "fortran_order" ? 1
                        : key == "shape"         ? 2
                                                 : -1;
      if (index < 0) return Error(absl::StrCat("unknown key '", key, "'"));
      if (seen[index]) return Error(absl::StrCat("repeated key '", key, "'"));
      seen[index] = true;
      RETURN_IF_ERROR(Value(index, header));
      if (!Consume(',') && !Peek('}')) return Error("expected ',' or '}'");
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after '}'");
    const char* names[3] = {"descr", "fortran_order", "shape"};
    for (int i = 0; i < 3; ++i) {
      if (!seen[i]) return Error(absl::StrCat("missing key '", names[i], "'"));
    }
    return header;
  }

 private:
  absl::Status Value(int index, NpyHeader& header) {
    if (index == 0) {
      if (Peek('[')) {
        return Error("structured dtypes (a list descr) are not supported");
      }
      ASSIGN_OR_RETURN(header.descr, String());
      return absl::OkStatus();
    }
    if (index == 1) {
      ASSIGN_OR_RETURN(header.fortran_order, Bool());
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(header.shape, Tuple());
    return absl::OkStatus();
  }

  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
            text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Peek(char c) {
    SkipSpace();
    return pos_ < text_.size() && text_[pos_] == c;
  }
  bool Consume(char c) {
    if (!Peek(c)) return false;
    ++pos_;
    return true;
  }

  // 'text' or "text", without escapes.
  absl::StatusOr<std::string> String() {
    SkipSpace();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      return Error("expected a quoted string");
    }
    const char quote = text_[pos_];
    const size_t end = text_.find(quote, pos_ + 1);
    if (end == absl::string_view::npos) return Error("unterminated string");
    const absl::string_view s = text_.substr(pos_ + 1, end - pos_ - 1);
    if (s.find('\\') != absl::string_view::npos) {
      return Error("escapes in strings are not supported");
    }
    pos_ = end + 1;
    return std::string(s);
  }

  absl::StatusOr<bool> Bool() {
    SkipSpace();
    for (const auto& [word, value] :
         {std::pair<absl::string_view, bool>{"True", true}, {"False", false}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    return Error("expected True or False");
  }

  // "(60000, 28, 28)", "(5,)", "()".
  absl::StatusOr<std::vector<int64_t>> Tuple() {
    if (!Consume('(')) return Error("expected '(' to start the shape");
    std::vector<int64_t> dims;
    while (!Consume(')')) {
      if (static_cast<int>(dims.size()) == kMaxNpyDims) {
        return Error(absl::StrCat("more than ", kMaxNpyDims, " dimensions"));
      }
      ASSIGN_OR_RETURN(const int64_t dim, Integer());
      dims.push_back(dim);
      if (!Consume(',') && !Peek(')')) {
        return Error("expected ',' or ')' in the shape");
      }
    }
    return dims;
  }

  // A non-negative integer of at most 18 digits (fits int64), optionally
  // followed by Python 2's 'L'.
  absl::StatusOr<int64_t> Integer() {
    SkipSpace();
    size_t end = pos_;
    while (end < text_.size() && text_[end] >= '0' && text_[end] <= '9') ++end;
    if (end == pos_) return Error("expected a non-negative integer");
    if (end - pos_ > 18) return Error("dimension too large");
    int64_t value = 0;
    for (size_t i = pos_; i < end; ++i) value = value * 10 + (text_[i] - '0');
    pos_ = end;
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;
    return value;
  }

  absl::Status Error(absl::string_view what) const {
    constexpr size_t kShown = 120;
    std::string shown = absl::CHexEscape(text_.substr(0, kShown));
    if (text_.size() > kShown) absl::StrAppend(&shown, "...");
    return absl::InvalidArgumentError(absl::StrCat(
        "bad header dict at character ", pos_, ": ", what, " in ", shown));
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

// '<f4', '>i8', '|u1', ...
absl::StatusOr<NpyDtype> ParseDescr(const std::string& descr) {
  const auto unsupported = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype '", absl::CHexEscape(descr), "' is not supported (",
                     why, "); fedge reads float32/float64 and integer dtypes"));
  };
  NpyDtype dtype;
  int size = 0;
  if (descr.size() < 3 || !absl::SimpleAtoi(descr.substr(2), &size) ||
      descr.substr(2).find_first_not_of("0123456789") != std::string::npos) {
    return unsupported("expected <order><kind><bytes>, e.g. '<f4'");
  }
  dtype.kind = descr[1];
  dtype.size = size;
  dtype.big_endian = descr[0] == '>';
  const bool sized = dtype.kind == 'f' ? (size == 4 || size == 8)
                     : dtype.kind == 'i' || dtype.kind == 'u'
                         ? (size == 1 || size == 2 || size == 4 || size == 8)
                         : false;
  if (!sized) return unsupported("unknown kind or size");
  if (descr[0] != '<' && descr[0] != '>' && !(descr[0] == '|' && size == 1)) {
    return unsupported("byte order must be '<' or '>' ('|' for one byte)");
  }
  return dtype;
}

int64_t HeaderLength(absl::string_view bytes, int major) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + 8;
  if (major == 1) return int64_t{p[0]} | int64_t{p[1]} << 8;
  return int64_t{p[0]} | int64_t{p[1]} << 8 | int64_t{p[2]} << 16 |
         int64_t{p[3]} << 24;
}

// Product of `shape`, saturated at `limit` + 1 (never overflows).
int64_t SaturatedProduct(const std::vector<int64_t>& shape, int64_t limit) {
  int64_t product = 1;
  for (int64_t d : shape) {
    if (d == 0) return 0;
    product = product > limit / d ? limit + 1 : product * d;
  }
  return product;
}

// Validates the preamble, header and data length of one .npy file.
absl::StatusOr<NpyArray> ParseNpyArray(absl::string_view bytes) {
  const auto error = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  const absl::string_view magic = bytes.substr(0, kNpyMagic.size());
  if (magic != kNpyMagic.substr(0, magic.size())) {
    return error("not an .npy file: bad magic string \"",
                 absl::CHexEscape(magic), "\" (expected \"\\x93NUMPY\")",
                 absl::StartsWith(magic, "PK") ? "; an .npz archive? unzip it"
                                                 " into its .npy files"
                                               : "");
  }
  if (bytes.size() < 10) {
    return error("truncated: ", bytes.size(),
                 " bytes, shorter than the .npy preamble");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0) {
    return error("unsupported .npy format version ", major, ".", minor,
                 " (fedge reads 1.0, 2.0 and 3.0)");
  }
  const size_t preamble = major == 1 ? 10 : 12;
  if (bytes.size() < preamble) {
    return error("truncated: ", bytes.size(), " bytes, shorter than the .npy ",
                 major, ".0 preamble of ", preamble, " bytes");
  }
  const int64_t header_length = HeaderLength(bytes, major);
  if (header_length > kMaxNpyHeaderBytes) {
    return error("header length ", header_length, " exceeds the limit of ",
                 kMaxNpyHeaderBytes, " bytes");
  }
  const int64_t data_offset = static_cast<int64_t>(preamble) + header_length;
  if (static_cast<int64_t>(bytes.size()) < data_offset) {
    return error("truncated: the header needs ", data_offset,
                 " bytes, the file has ", bytes.size());
  }
  ASSIGN_OR_RETURN(const NpyHeader header,
                   HeaderParser(bytes.substr(preamble, header_length)).Parse());
  NpyArray array;
  ASSIGN_OR_RETURN(array.dtype, ParseDescr(header.descr));
  array.fortran_order = header.fortran_order;
  array.shape = header.shape;
  const int64_t limit = kMaxNpyBytes / array.dtype.size;
  array.num_elements = SaturatedProduct(array.shape, limit);
  array.data = bytes.substr(data_offset);
  const auto have = static_cast<int64_t>(array.data.size());
  const int64_t need = array.num_elements * array.dtype.size;
  if (array.num_elements > limit || have != need) {
    return error("shape ", ShapeString(array.shape), " ", array.dtype.Name(),
                 " needs ", array.num_elements > limit ? "over " : "",
                 array.num_elements > limit ? kMaxNpyBytes : need,
                 " data bytes, the file has ", have, " after its ", data_offset,
                 "-byte header");
  }
  return array;
}

// Element `i` of `data` as a T, converted from the file's byte order.
template <typename T>
T Load(const char* data, int64_t i, bool swap) {
  char raw[sizeof(T)];
  std::memcpy(raw, data + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  if (swap) std::reverse(raw, raw + sizeof(T));
  T value;
  std::memcpy(&value, raw, sizeof(T));
  return value;
}

// Calls fn(T{}) with the C++ type of `dtype`.
template <typename Fn>
auto VisitDtype(const NpyDtype& dtype, Fn&& fn) {
  switch (dtype.kind) {
    case 'f':
      return dtype.size == 4 ? fn(float{}) : fn(double{});
    case 'i':
      switch (dtype.size) {
        case 1:
          return fn(int8_t{});
        case 2:
          return fn(int16_t{});
        case 4:
          return fn(int32_t{});
        default:
          return fn(int64_t{});
      }
    default:
      switch (dtype.size) {
        case 1:
          return fn(uint8_t{});
        case 2:
          return fn(uint16_t{});
        case 4:
          return fn(uint32_t{});
        default:
          return fn(uint64_t{});
      }
  }
}

// The first `count` elements (in file order) as floats: uint8 / 255, other
// integers as they are, floats checked finite and within float range.
template <typename T>
absl::Status ConvertFeatures(const NpyArray& a, int64_t count, float* out) {
  const bool swap = a.dtype.big_endian != kHostBigEndian;
  const char* data = a.data.data();
  std::array<float, 256> scale;
  for (int v = 0; v < 256; ++v) scale[v] = static_cast<float>(v) / 255.0f;
  for (int64_t i = 0; i < count; ++i) {
    const T v = Load<T>(data, i, swap);
    if constexpr (std::is_same_v<T, uint8_t>) {
      out[i] = scale[v];
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!std::isfinite(v) || std::fabs(v) > FLT_MAX) {
        const int64_t example = a.fortran_order
                                    ? i % a.shape[0]
                                    : i / (a.num_elements / a.shape[0]);
        return absl::InvalidArgumentError(absl::StrCat(
            "value ", v, " at element ", i, " (example ", example, ") is not ",
            std::isfinite(v) ? "within float32 range" : "finite"));
      }
      out[i] = static_cast<float>(v);
    } else {
      out[i] = static_cast<float>(v);
    }
  }
  return absl::OkStatus();
}

// Copies the first `keep` examples of column-major `in` (shape `dims`) to
// row-major `out`.
void FortranToRowMajor(const std::vector<float>& in,
                       const std::vector<int64_t>& dims, int64_t keep,
                       float* out) {
  const size_t n = dims.size();
  std::vector<int64_t> stride(n, 1), index(n, 0);
  for (size_t k = 1; k < n; ++k) stride[k] = stride[k - 1] * dims[k - 1];
  const int64_t total = keep * (in.size() / dims[0]);
  int64_t source = 0;
  for (int64_t o = 0; o < total; ++o) {
    out[o] = in[source];
    for (size_t k = n; k-- > 0;) {  // Odometer, last index fastest.
      source += stride[k];
      if (++index[k] < dims[k] || k == 0) break;
      source -= dims[k] * stride[k];
      index[k] = 0;
    }
  }
}

// [N] -> [1]; [N, D] -> [D]; [N, H, W] -> [1, H, W]; [N, C, H, W, ...] ->
// [C, H, W, ...].
std::vector<int64_t> ExampleShape(const std::vector<int64_t>& shape) {
  std::vector<int64_t> example(shape.begin() + 1, shape.end());
  if (example.empty() || example.size() == 2) {
    example.insert(example.begin(), 1);
  }
  return example;
}

absl::Status CheckFeatureShape(const NpyArray& a) {
  if (a.shape.empty()) {
    return absl::InvalidArgumentError(
        "features must be an array [N, ...], got a scalar (shape [])");
  }
  if (a.shape[0] == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("no examples (shape ", ShapeString(a.shape), ")"));
  }
  for (size_t i = 1; i < a.shape.size(); ++i) {
    if (a.shape[i] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dimension ", i, " of shape ", ShapeString(a.shape), " is 0"));
    }
  }
  return absl::OkStatus();
}

// The first `keep` examples' features, row-major.
absl::StatusOr<std::vector<float>> NpyFeatures(const NpyArray& a,
                                               int64_t keep) {
  const int64_t example_size = a.num_elements / a.shape[0];
  std::vector<float> features(static_cast<size_t>(keep * example_size));
  const bool transpose = a.fortran_order && a.shape.size() > 1;
  if (!transpose) {
    RETURN_IF_ERROR(VisitDtype(a.dtype, [&](auto t) {
      return ConvertFeatures<decltype(t)>(a, keep * example_size,
                                          features.data());
    }));
    return features;
  }
  std::vector<float> column_major(static_cast<size_t>(a.num_elements));
  RETURN_IF_ERROR(VisitDtype(a.dtype, [&](auto t) {
    return ConvertFeatures<decltype(t)>(a, a.num_elements, column_major.data());
  }));
  FortranToRowMajor(column_major, a.shape, keep, features.data());
  return features;
}

// Label `i` as an integer: InvalidArgument when it is a float that is not
// integral, or outside [0, limit).
template <typename T>
absl::StatusOr<int64_t> Label(const NpyArray& a, int64_t i, int64_t limit) {
  const T v = Load<T>(a.data.data(), i, a.dtype.big_endian != kHostBigEndian);
  const auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("label ", +v, " at index ", i, " ", what));
  };
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(v) || std::floor(v) != v) {
      return error("is not an integer");
    }
  }
  bool in_range;  // Compared in a type wide enough for both.
  if constexpr (std::is_floating_point_v<T>) {
    in_range = v >= 0 && v < static_cast<double>(limit);
  } else if constexpr (std::is_signed_v<T>) {
    in_range = v >= 0 && static_cast<int64_t>(v) < limit;
  } else {
    in_range = static_cast<uint64_t>(v) < static_cast<uint64_t>(limit);
  }
  if (!in_range) {
    return error(absl::StrCat("is outside [0, ", limit, ")"));
  }
  return static_cast<int64_t>(v);
}

// Every label, validated against `*num_classes` (or kMaxNumClasses when it
// is 0, which is then set to max label + 1); the first `keep` are returned.
absl::StatusOr<std::vector<int64_t>> NpyLabels(const NpyArray& a,
                                               int* num_classes, int64_t keep) {
  const int64_t limit = *num_classes > 0 ? *num_classes : kMaxNumClasses;
  std::vector<int64_t> labels(static_cast<size_t>(a.num_elements));
  int64_t max_label = -1;
  for (int64_t i = 0; i < a.num_elements; ++i) {
    ASSIGN_OR_RETURN(labels[i], VisitDtype(a.dtype, [&](auto t) {
                       return Label<decltype(t)>(a, i, limit);
                     }));
    max_label = std::max(max_label, labels[i]);
  }
  if (*num_classes == 0) *num_classes = static_cast<int>(max_label + 1);
  labels.resize(static_cast<size_t>(keep));
  return labels;
}

// `value`, or its error prefixed with `name` (the file).
template <typename T>
absl::StatusOr<T> Named(absl::StatusOr<T> value, absl::string_view name) {
  if (!value.ok()) return Annotate(value.status(), name);
  return value;
}

absl::StatusOr<NpyArray> ParseFeatureArray(absl::string_view bytes) {
  ASSIGN_OR_RETURN(NpyArray array, ParseNpyArray(bytes));
  RETURN_IF_ERROR(CheckFeatureShape(array));
  return array;
}

absl::StatusOr<NpyArray> ParseLabelArray(absl::string_view bytes) {
  ASSIGN_OR_RETURN(NpyArray array, ParseNpyArray(bytes));
  const auto& shape = array.shape;
  if (shape.size() != 1 && !(shape.size() == 2 && shape[1] == 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels must be an array [N] (or [N, 1]), got shape ",
                     ShapeString(shape)));
  }
  return array;
}

}  // namespace

absl::StatusOr<Dataset> ParseNpy(absl::string_view features_bytes,
                                 absl::string_view labels_bytes,
                                 int64_t max_examples, int num_classes,
                                 absl::string_view features_name,
                                 absl::string_view labels_name) {
  RETURN_IF_ERROR(CheckReaderOptions(max_examples, num_classes));
  ASSIGN_OR_RETURN(const NpyArray x,
                   Named(ParseFeatureArray(features_bytes), features_name));
  ASSIGN_OR_RETURN(const NpyArray y,
                   Named(ParseLabelArray(labels_bytes), labels_name));
  const int64_t count = x.shape[0];
  if (y.shape[0] != count) {
    return absl::InvalidArgumentError(
        absl::StrCat(features_name, " has ", count, " examples (shape ",
                     ShapeString(x.shape), ") but ", labels_name, " has ",
                     y.shape[0], " labels"));
  }
  const int64_t keep = max_examples < 0 ? count : std::min(count, max_examples);
  Dataset dataset;
  dataset.num_classes = num_classes;
  ASSIGN_OR_RETURN(
      dataset.labels,
      Named(NpyLabels(y, &dataset.num_classes, keep), labels_name));
  ASSIGN_OR_RETURN(dataset.features,
                   Named(NpyFeatures(x, keep), features_name));
  dataset.example_shape = ExampleShape(x.shape);
  return dataset;
}

absl::StatusOr<Dataset> ReadNpy(const std::string& features_path,
                                const std::string& labels_path,
                                int64_t max_examples, int num_classes) {
  RETURN_IF_ERROR(CheckReaderOptions(max_examples, num_classes));
  ASSIGN_OR_RETURN(const std::string features,
                   ReadFileMaybeGzipped(features_path, kMaxNpyBytes));
  ASSIGN_OR_RETURN(const std::string labels,
                   ReadFileMaybeGzipped(labels_path, kMaxNpyBytes));
  return ParseNpy(features, labels, max_examples, num_classes, features_path,
                  labels_path);
}

}  // namespace fedge
