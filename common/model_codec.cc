#include "common/model_codec.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/little_endian.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/update_codec.h"

namespace fedge {
namespace {

// Tensor data is copied as it lies in memory, which is the encoding's byte
// order only on little-endian hosts.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the model encoding assumes a little-endian host");

constexpr char kMagic[] = "FEDGEMS1";
constexpr size_t kMagicBytes = 8;
constexpr size_t kPrefixBytes = kMagicBytes + 4;  // Magic, tensor_count.
constexpr size_t kTypeBytes = 3;                  // dtype, encoding, rank.
// name_len, one name byte, dtype/encoding/rank, data_len.
constexpr uint64_t kMinRecordBytes = 2 + 1 + kTypeBytes + 8;
constexpr size_t kMaxEncodableName = 0xffff;

using codec_internal::WireTensor;

size_t HeaderBytes(const WireTensor& t) {
  return 2 + t.name.size() + kTypeBytes + 8 * t.shape.size() + 8;
}

void AppendPrefix(std::string* out, size_t tensor_count) {
  FEDGE_CHECK(tensor_count <= 0xffffffffu) << "too many tensors to encode";
  out->append(kMagic, kMagicBytes);
  AppendLE(out, tensor_count, 4);
}

void AppendHeader(std::string* out, const WireTensor& t) {
  FEDGE_CHECK(!t.name.empty() && t.name.size() <= kMaxEncodableName)
      << "tensor name of " << t.name.size() << " bytes cannot be encoded";
  AppendLE(out, t.name.size(), 2);
  out->append(t.name.data(), t.name.size());
  out->push_back(static_cast<char>(t.dtype));
  out->push_back(static_cast<char>(t.encoding));
  out->push_back(static_cast<char>(t.shape.size()));
  for (int64_t d : t.shape) AppendLE(out, static_cast<uint64_t>(d), 8);
  AppendLE(out, t.data.size(), 8);
}

std::vector<WireTensor> WireTensorsOf(const ModelState& state) {
  std::vector<WireTensor> out;
  out.reserve(state.size());
  for (const TensorBuffer& t : state.tensors()) {
    out.push_back({t.name(),
                   t.dtype(),
                   t.shape(),
                   TensorEncoding::kRaw,
                   {reinterpret_cast<const char*>(t.data()), t.num_bytes()}});
  }
  return out;
}

// An EncodedModel that breaks the layout's rules is a bug in its maker.
std::vector<WireTensor> WireTensorsOf(const EncodedModel& model) {
  std::vector<WireTensor> out;
  out.reserve(model.tensors.size());
  for (const EncodedTensor& t : model.tensors) {
    const int64_t k = IsTopK(t.encoding) && t.data_len >= 4
                          ? static_cast<int64_t>(ReadLE(
                                reinterpret_cast<const char*>(t.data.get()), 4))
                          : 0;
    const absl::StatusOr<uint64_t> want =
        EncodedDataLen(t.encoding, t.spec.dtype, t.spec.shape, k);
    FEDGE_CHECK(want.ok() && *want == t.data_len)
        << "bad EncodedTensor '" << t.spec.name << "': data_len " << t.data_len
        << ", " << (want.ok() ? "" : want.status().ToString());
    out.push_back({t.spec.name,
                   t.spec.dtype,
                   t.spec.shape,
                   t.encoding,
                   {reinterpret_cast<const char*>(t.data.get()), t.data_len}});
  }
  return out;
}

int64_t EncodedSizeOf(const std::vector<WireTensor>& tensors) {
  int64_t size = kPrefixBytes;
  for (const WireTensor& t : tensors) size += HeaderBytes(t) + t.data.size();
  return size;
}

// Calls sink(data, size) with consecutive pieces of the encoding.
template <typename Sink>
void ForEachPiece(const std::vector<WireTensor>& tensors, Sink&& sink) {
  std::string header;
  AppendPrefix(&header, tensors.size());
  sink(header.data(), header.size());
  for (const WireTensor& t : tensors) {
    header.clear();
    AppendHeader(&header, t);
    sink(header.data(), header.size());
    if (!t.data.empty()) sink(t.data.data(), t.data.size());
  }
}

std::string EncodeWhole(const std::vector<WireTensor>& tensors) {
  std::string out;
  out.reserve(EncodedSizeOf(tensors));
  ForEachPiece(tensors, [&out](const void* data, size_t size) {
    out.append(static_cast<const char*>(data), size);
  });
  return out;
}

template <typename Hasher>
auto HashOf(const std::vector<WireTensor>& tensors) {
  Hasher hasher;
  ForEachPiece(tensors, [&hasher](const void* data, size_t size) {
    hasher.Update(data, size);
  });
  return hasher.Finish();
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// OK when the lossy `encoding` may encode a tensor of `dtype` and `shape`
// with `n` elements; otherwise INVALID_ARGUMENT naming the rule.
absl::Status CheckLossyApplies(TensorEncoding encoding, DType dtype,
                               absl::Span<const int64_t> shape, int64_t n) {
  const int value = static_cast<int>(encoding);
  const std::string what =
      absl::StrCat("encoding ", value, " (", TensorEncodingName(encoding), ")");
  if (value <= 0 || value >= kNumTensorEncodings) {
    return absl::InvalidArgumentError(absl::StrCat("unknown encoding ", value));
  }
  if (dtype != DType::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " applies only to float32 tensors, not ", DTypeName(dtype)));
  }
  if (n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " does not apply to an empty tensor (only raw)"));
  }
  if (encoding == TensorEncoding::kInt8PerChannel && shape.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " needs rank >= 1, not a scalar"));
  }
  return absl::OkStatus();
}

// Structural UTF-8 check: lead bytes announce 0-3 continuation bytes.
bool IsUtf8(absl::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    const size_t extra = c < 0x80             ? 0
                         : (c & 0xe0) == 0xc0 ? 1
                         : (c & 0xf0) == 0xe0 ? 2
                         : (c & 0xf8) == 0xf0 ? 3
                                              : 4;
    if (extra == 4 || i + extra >= s.size()) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<uint8_t>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}

}  // namespace

const char* TensorEncodingName(TensorEncoding encoding) {
  static constexpr const char* kNames[kNumTensorEncodings] = {
      "raw", "fp16", "int8", "int8_per_channel", "topk", "topk_mask"};
  const int value = static_cast<int>(encoding);
  return value < kNumTensorEncodings ? kNames[value] : "invalid";
}

absl::StatusOr<uint64_t> EncodedDataLen(TensorEncoding encoding, DType dtype,
                                        absl::Span<const int64_t> shape,
                                        int64_t topk_k) {
  ASSIGN_OR_RETURN(const int64_t n, CheckedNumElements(shape));
  const uint64_t un = static_cast<uint64_t>(n);
  if (encoding == TensorEncoding::kRaw) return un * DTypeSize(dtype);
  RETURN_IF_ERROR(CheckLossyApplies(encoding, dtype, shape, n));
  switch (encoding) {
    case TensorEncoding::kFp16:
      return 2 * un;
    case TensorEncoding::kInt8:
      return 4 + un;
    case TensorEncoding::kInt8PerChannel:
      return 4 * static_cast<uint64_t>(shape[0]) + un;
    case TensorEncoding::kTopK:
    case TensorEncoding::kTopKMask:
      if (topk_k < 1 || topk_k > n) {
        return absl::InvalidArgumentError(
            absl::StrCat("top-k k ", topk_k, " is outside [1, ", n, "]"));
      }
      return encoding == TensorEncoding::kTopK
                 ? 4 + 8 * static_cast<uint64_t>(topk_k)
                 : 4 + (un + 7) / 8 + 4 * static_cast<uint64_t>(topk_k);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown encoding ", static_cast<int>(encoding)));
  }
}

int64_t EncodedSize(const ModelState& state) {
  return EncodedSizeOf(WireTensorsOf(state));
}

int64_t EncodedSize(const EncodedModel& model) {
  return EncodedSizeOf(WireTensorsOf(model));
}

std::string EncodeModel(const ModelState& state) {
  return EncodeWhole(WireTensorsOf(state));
}

std::string EncodeModel(const EncodedModel& model) {
  return EncodeWhole(WireTensorsOf(model));
}

Sha256Digest ModelDigest(const ModelState& state) {
  return HashOf<Sha256>(WireTensorsOf(state));
}

Sha256Digest ModelDigest(const EncodedModel& model) {
  return HashOf<Sha256>(WireTensorsOf(model));
}

Checksum128 ModelChecksum(const ModelState& state) {
  return HashOf<Xxh3_128>(WireTensorsOf(state));
}

Checksum128 ModelChecksum(const EncodedModel& model) {
  return HashOf<Xxh3_128>(WireTensorsOf(model));
}

ModelEncoder::ModelEncoder(const ModelState& state, size_t max_chunk_bytes)
    : ModelEncoder(WireTensorsOf(state), max_chunk_bytes) {}

ModelEncoder::ModelEncoder(const EncodedModel& model, size_t max_chunk_bytes)
    : ModelEncoder(WireTensorsOf(model), max_chunk_bytes) {}

ModelEncoder::ModelEncoder(std::vector<WireTensor> tensors,
                           size_t max_chunk_bytes)
    : tensors_(std::move(tensors)),
      max_chunk_bytes_(max_chunk_bytes),
      total_bytes_(EncodedSizeOf(tensors_)) {
  FEDGE_CHECK(max_chunk_bytes_ > 0) << "max_chunk_bytes must be positive";
  Seek(0);
}

absl::string_view ModelEncoder::Segment() const {
  if (segment_ % 2 == 1 || segment_ == 0) return header_;
  return tensors_[segment_ / 2 - 1].data;
}

void ModelEncoder::EnterSegment(size_t segment) {
  segment_ = segment;
  in_segment_ = 0;
  header_.clear();
  if (segment == 0) {
    AppendPrefix(&header_, tensors_.size());
  } else if (segment % 2 == 1 && segment / 2 < tensors_.size()) {
    AppendHeader(&header_, tensors_[segment / 2]);
  }
}

bool ModelEncoder::Next(std::string* out) {
  out->clear();
  if (offset_ >= total_bytes_) return false;
  out->reserve(static_cast<size_t>(std::min<int64_t>(
      static_cast<int64_t>(max_chunk_bytes_), total_bytes_ - offset_)));
  return NextPieces([out](absl::string_view bytes, bool) {
    out->append(bytes.data(), bytes.size());
  });
}

bool ModelEncoder::NextPieces(
    absl::FunctionRef<void(absl::string_view bytes, bool stable)> piece) {
  if (offset_ >= total_bytes_) return false;
  const size_t want = static_cast<size_t>(std::min<int64_t>(
      static_cast<int64_t>(max_chunk_bytes_), total_bytes_ - offset_));
  size_t produced = 0;
  while (produced < want) {
    const absl::string_view segment = Segment();
    const size_t n = std::min(segment.size() - in_segment_, want - produced);
    if (n > 0) {
      // Odd segments and segment 0 are headers, built in header_.
      piece(segment.substr(in_segment_, n), segment_ % 2 == 0 && segment_ > 0);
    }
    produced += n;
    in_segment_ += n;
    if (in_segment_ == segment.size()) EnterSegment(segment_ + 1);
  }
  offset_ += static_cast<int64_t>(produced);
  return true;
}

bool ModelEncoder::NextGathered(
    size_t copy_below,
    absl::FunctionRef<void(absl::string_view bytes, bool stable)> piece) {
  gathered_.clear();
  const bool more = NextPieces([&](absl::string_view bytes, bool stable) {
    if (!stable || bytes.size() < copy_below) {
      gathered_.append(bytes.data(), bytes.size());
      return;
    }
    if (!gathered_.empty()) piece(gathered_, false);
    gathered_.clear();
    piece(bytes, true);
  });
  if (!gathered_.empty()) piece(gathered_, false);
  return more;
}

void ModelEncoder::Seek(int64_t offset) {
  FEDGE_CHECK(offset >= 0 && offset <= total_bytes_)
      << "Seek(" << offset << ") outside [0, " << total_bytes_ << "]";
  offset_ = offset;
  EnterSegment(0);
  uint64_t rest = static_cast<uint64_t>(offset);
  while (rest > 0) {
    const size_t size = Segment().size();
    if (rest < size) {
      in_segment_ = static_cast<size_t>(rest);
      return;
    }
    rest -= size;
    EnterSegment(segment_ + 1);
  }
}

namespace {

// What the decoder reads next; each phase needs a known number of bytes.
enum Phase { kPrefix, kNameLen, kName, kType, kDims, kDataLen, kData, kDone };

const char* PhaseName(Phase phase) {
  static constexpr const char* kNames[] = {"magic and tensor_count",
                                           "name_len",
                                           "name",
                                           "dtype, encoding and rank",
                                           "dims",
                                           "data_len",
                                           "data",
                                           "nothing"};
  return kNames[static_cast<int>(phase)];
}

}  // namespace

struct ModelDecoder::State {
  DecodeLimits limits;
  std::optional<ModelSchema> expected;
  int64_t expected_size = -1;  // Whole input, when declared.
  absl::Status status;         // First error; sticky.
  bool finished = false;

  Phase phase = Phase::kPrefix;
  uint64_t need = kPrefixBytes;  // Bytes the current phase needs.
  std::string field;             // Bytes of a fixed field gathered so far.
  uint64_t data_done = 0;        // Bytes of tensor data copied so far.
  int64_t consumed = 0;

  uint32_t count = 0;
  std::vector<TensorBuffer> tensors;
  ModelState spare;  // Buffers to decode into (Recycle).
  std::unordered_set<std::string> names;
  int64_t decoded_bytes = 0;  // Allocated for tensor data so far.
  // The tensor being decoded.
  std::string name;
  DType dtype = DType::kFloat32;
  TensorEncoding encoding = TensorEncoding::kRaw;
  int rank = 0;
  std::vector<int64_t> dims;
  int64_t elements = 0;
  TensorBuffer current;
  std::optional<LossyDataDecoder> lossy;  // Unless encoding is kRaw.
  uint32_t max_abs_bits = 0;  // Of the raw float32 values copied so far.

  absl::Status Step(absl::string_view* bytes);
  absl::Status CopyData(absl::string_view* bytes);
  absl::Status Expect(Phase next, uint64_t bytes);
  absl::Status CheckRoom(uint64_t bytes, absl::string_view what) const;
  absl::Status Complete();
  absl::Status OnPrefix();
  absl::Status StartTensor();
  absl::Status OnNameLen();
  absl::Status OnName();
  absl::Status OnTypeRank();
  absl::Status OnDims();
  absl::Status OnDataLen();
  absl::Status CheckDataLen(uint64_t data_len) const;
  absl::Status AllocateTensor();
  absl::Status OnData();
  std::string Where() const;
  const TensorSpec* ExpectedSpec() const;

  // Errors, prefixed with Where().
  template <typename... Args>
  absl::Status Invalid(const Args&... args) const {
    return absl::InvalidArgumentError(absl::StrCat(Where(), args...));
  }
  template <typename... Args>
  absl::Status OverLimit(const Args&... args) const {
    return absl::ResourceExhaustedError(absl::StrCat(Where(), args...));
  }
};

std::string ModelDecoder::State::Where() const {
  if (phase == Phase::kPrefix || phase == Phase::kDone) return "";
  std::string where = absl::StrCat("tensor #", tensors.size());
  if (phase > Phase::kName) {
    absl::StrAppend(&where, " '", absl::CHexEscape(name), "'");
  }
  return where + ": ";
}

const TensorSpec* ModelDecoder::State::ExpectedSpec() const {
  if (!expected.has_value()) return nullptr;
  return &(*expected)[tensors.size()];
}

absl::Status ModelDecoder::State::CheckRoom(uint64_t bytes,
                                            absl::string_view what) const {
  const uint64_t room = static_cast<uint64_t>(
      std::max<int64_t>(0, limits.max_total_bytes - consumed));
  if (bytes > room) {
    return OverLimit(what, " of ", bytes, " bytes at byte ", consumed,
                     " would exceed the limit of ", limits.max_total_bytes,
                     " bytes (max_total_bytes)");
  }
  if (expected_size >= 0 &&
      bytes > static_cast<uint64_t>(expected_size - consumed)) {
    return Invalid(what, " of ", bytes, " bytes at byte ", consumed,
                   " runs past the end of the ", expected_size, "-byte input");
  }
  return absl::OkStatus();
}

absl::Status ModelDecoder::State::Expect(Phase next, uint64_t bytes) {
  phase = next;
  RETURN_IF_ERROR(CheckRoom(bytes, PhaseName(next)));
  need = bytes;
  field.clear();
  data_done = 0;
  return bytes == 0 ? Complete() : absl::OkStatus();
}

absl::Status ModelDecoder::State::Step(absl::string_view* bytes) {
  if (phase == Phase::kDone) {
    return absl::InvalidArgumentError(absl::StrCat(
        "trailing bytes: ", bytes->size(),
        " more bytes after the last tensor, which ends at byte ", consumed));
  }
  if (phase == Phase::kData) return CopyData(bytes);
  const size_t n = std::min<uint64_t>(need - field.size(), bytes->size());
  field.append(bytes->data(), n);
  bytes->remove_prefix(n);
  consumed += static_cast<int64_t>(n);
  return field.size() == need ? Complete() : absl::OkStatus();
}

absl::Status ModelDecoder::State::CopyData(absl::string_view* bytes) {
  const size_t n = std::min<uint64_t>(need - data_done, bytes->size());
  if (lossy.has_value()) {
    const absl::Status decoded = lossy->Feed(bytes->substr(0, n));
    if (!decoded.ok()) return Invalid(decoded.message());
  } else {
    std::memcpy(current.mutable_data() + data_done, bytes->data(), n);
    if (dtype == DType::kFloat32) {
      // The values whose last byte just arrived, while they are in cache.
      const size_t first = data_done / 4, end = (data_done + n) / 4;
      if (end > first) {
        max_abs_bits =
            std::max(max_abs_bits,
                     MaxAbsFloatBits(current.data() + 4 * first, end - first));
      }
    }
  }
  bytes->remove_prefix(n);
  data_done += n;
  consumed += static_cast<int64_t>(n);
  return data_done == need ? Complete() : absl::OkStatus();
}

absl::Status ModelDecoder::State::Complete() {
  using Handler = absl::Status (State::*)();
  static constexpr Handler kHandlers[] = {
      &State::OnPrefix, &State::OnNameLen, &State::OnName, &State::OnTypeRank,
      &State::OnDims,   &State::OnDataLen, &State::OnData};
  if (phase == Phase::kDone) return absl::OkStatus();
  return (this->*kHandlers[static_cast<int>(phase)])();
}

absl::Status ModelDecoder::State::OnPrefix() {
  if (std::memcmp(field.data(), kMagic, kMagicBytes) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad magic \"", absl::CHexEscape(field.substr(0, kMagicBytes)),
        "\": not a fedge model encoding (expected \"", kMagic, "\")"));
  }
  count = static_cast<uint32_t>(ReadLE(field.data() + kMagicBytes, 4));
  if (count > limits.max_tensors) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tensor_count ", count, " exceeds the limit of ",
                     limits.max_tensors, " (max_tensors)"));
  }
  if (expected.has_value() && count != expected->size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor_count ", count, " does not match the expected ",
                     expected->size(), " tensors"));
  }
  RETURN_IF_ERROR(CheckRoom(count * kMinRecordBytes,
                            absl::StrCat(count, " tensor records")));
  if (count == 0) return Expect(Phase::kDone, 0);
  return StartTensor();
}

absl::Status ModelDecoder::State::StartTensor() {
  name.clear();
  dims.clear();
  return Expect(Phase::kNameLen, 2);
}

absl::Status ModelDecoder::State::OnNameLen() {
  const uint64_t len = ReadLE(field.data(), 2);
  if (len == 0) {
    return Invalid("empty name");
  }
  if (len > static_cast<uint64_t>(limits.max_name_bytes)) {
    return OverLimit("name_len ", len, " exceeds the limit of ",
                     limits.max_name_bytes, " (max_name_bytes)");
  }
  return Expect(Phase::kName, len);
}

absl::Status ModelDecoder::State::OnName() {
  name = field;
  phase = Phase::kType;  // So that Where() names the tensor.
  if (!IsUtf8(name)) {
    return Invalid("name is not UTF-8");
  }
  if (!names.insert(name).second) {
    return Invalid("duplicate name");
  }
  const TensorSpec* spec = ExpectedSpec();
  if (spec != nullptr && spec->name != name) {
    return Invalid("name does not match the expected '", spec->name, "'");
  }
  return Expect(Phase::kType, kTypeBytes);
}

absl::Status ModelDecoder::State::OnTypeRank() {
  const int dtype_value = static_cast<uint8_t>(field[0]);
  const int encoding_value = static_cast<uint8_t>(field[1]);
  rank = static_cast<uint8_t>(field[2]);
  if (!IsValidDType(dtype_value)) {
    return Invalid("unknown dtype ", dtype_value);
  }
  dtype = static_cast<DType>(dtype_value);
  if (encoding_value >= kNumTensorEncodings) {
    return Invalid("unknown encoding ", encoding_value);
  }
  encoding = static_cast<TensorEncoding>(encoding_value);
  if (rank > kMaxTensorRank) {
    return Invalid("rank ", rank, " exceeds the limit of ", kMaxTensorRank);
  }
  return Expect(Phase::kDims, 8 * static_cast<uint64_t>(rank));
}

absl::Status ModelDecoder::State::OnDims() {
  dims.resize(rank);
  for (int i = 0; i < rank; ++i) {
    dims[i] = static_cast<int64_t>(ReadLE(field.data() + 8 * i, 8));
  }
  absl::StatusOr<int64_t> checked = CheckedNumElements(dims);
  if (!checked.ok()) return Annotate(checked.status(), Where() + "bad shape");
  elements = *checked;
  const TensorSpec* spec = ExpectedSpec();
  if (spec != nullptr && (spec->dtype != dtype || spec->shape != dims)) {
    return Invalid(DTypeName(dtype), ShapeString(dims),
                   " does not match the expected ", DTypeName(spec->dtype),
                   ShapeString(spec->shape));
  }
  if (encoding != TensorEncoding::kRaw) {
    const absl::Status applies =
        CheckLossyApplies(encoding, dtype, dims, elements);
    if (!applies.ok()) return Invalid(applies.message());
  }
  return Expect(Phase::kDataLen, 8);
}

absl::Status ModelDecoder::State::OnDataLen() {
  const uint64_t data_len = ReadLE(field.data(), 8);
  RETURN_IF_ERROR(CheckDataLen(data_len));
  phase = Phase::kData;
  RETURN_IF_ERROR(CheckRoom(data_len, "data"));
  RETURN_IF_ERROR(AllocateTensor());
  if (encoding != TensorEncoding::kRaw) {
    lossy.emplace(encoding, data_len, &current);
  }
  return Expect(Phase::kData, data_len);
}

// Top-k's data_len depends on k, which comes first in the data: here it
// only has to leave room for k and at most n pairs.
absl::Status ModelDecoder::State::CheckDataLen(uint64_t data_len) const {
  if (encoding == TensorEncoding::kTopK) {
    const uint64_t most = 4 + 8 * static_cast<uint64_t>(elements);
    if (data_len < 4 || data_len > most) {
      return Invalid("data_len ", data_len, " is outside [4, ", most,
                     "] for top-k of shape ", ShapeString(dims),
                     " (4 + 8k bytes, 1 <= k <= ", elements, ")");
    }
    return absl::OkStatus();
  }
  if (encoding == TensorEncoding::kTopKMask) {
    const uint64_t n = static_cast<uint64_t>(elements);
    const uint64_t least = 4 + (n + 7) / 8 + 4, most = least - 4 + 4 * n;
    if (data_len < least || data_len > most) {
      return Invalid("data_len ", data_len, " is outside [", least, ", ", most,
                     "] for top-k (mask) of shape ", ShapeString(dims),
                     " (4 + ceil(n / 8) + 4k bytes, 1 <= k <= ", elements, ")");
    }
    return absl::OkStatus();
  }
  // The shape and encoding were checked, so this cannot fail or overflow.
  const uint64_t want = *EncodedDataLen(encoding, dtype, dims);
  if (data_len == want) return absl::OkStatus();
  if (encoding == TensorEncoding::kRaw) {
    return Invalid("data_len ", data_len, " does not match shape ",
                   ShapeString(dims), " ", DTypeName(dtype), " (", want,
                   " bytes)");
  }
  return Invalid("data_len ", data_len, " does not match shape ",
                 ShapeString(dims), " ", DTypeName(dtype), " encoded as ",
                 TensorEncodingName(encoding), " (", want, " bytes)");
}

// The decoded tensor, at its final size, within max_decoded_bytes.
absl::Status ModelDecoder::State::AllocateTensor() {
  const uint64_t size = static_cast<uint64_t>(elements) * DTypeSize(dtype);
  const uint64_t room = static_cast<uint64_t>(
      std::max<int64_t>(0, limits.max_decoded_bytes - decoded_bytes));
  if (size > room) {
    return OverLimit("decoded data of ", size, " bytes would bring the model ",
                     "past the limit of ", limits.max_decoded_bytes,
                     " bytes (max_decoded_bytes)");
  }
  decoded_bytes += static_cast<int64_t>(size);
  max_abs_bits = 0;
  const size_t index = tensors.size();
  if (index < spare.size()) {
    TensorBuffer& reuse = spare.mutable_tensor(index);
    if (reuse.name() == name && reuse.dtype() == dtype &&
        reuse.shape() == dims) {
      current = std::move(reuse);
      // Top-k leaves unsent elements at zero (it applies to float32 only).
      if (IsTopK(encoding)) {
        absl::Span<float> f = current.mutable_floats();
        std::fill(f.begin(), f.end(), 0.0f);
      }
      return absl::OkStatus();
    }
  }
  // Top-k leaves unsent elements at zero; the others are overwritten whole.
  absl::StatusOr<TensorBuffer> tensor =
      IsTopK(encoding) ? TensorBuffer::Zeros(name, dtype, dims)
                       : TensorBuffer::Uninitialized(name, dtype, dims);
  if (!tensor.ok()) return Annotate(tensor.status(), Where());
  current = *std::move(tensor);
  return absl::OkStatus();
}

absl::Status ModelDecoder::State::OnData() {
  // Raw float32 data was checked as it arrived (CheckFinite skips it).
  // int8 values are finite by construction: |q * scale| <= 127 * FLT_MAX /
  // 128, the decoder having refused larger or non-finite scales.
  const bool int8 = encoding == TensorEncoding::kInt8 ||
                    encoding == TensorEncoding::kInt8PerChannel;
  if ((!lossy.has_value() && dtype == DType::kFloat32 &&
       max_abs_bits < 0x7f800000u) ||
      int8) {
    current.set_known_finite();
  }
  lossy.reset();
  tensors.push_back(std::move(current));
  if (tensors.size() == count) return Expect(Phase::kDone, 0);
  return StartTensor();
}

ModelDecoder::ModelDecoder(DecodeLimits limits,
                           std::optional<ModelSchema> expected)
    : state_(std::make_unique<State>()) {
  state_->limits = limits;
  state_->expected = std::move(expected);
  state_->status = state_->CheckRoom(kPrefixBytes, PhaseName(Phase::kPrefix));
}

ModelDecoder::~ModelDecoder() = default;
ModelDecoder::ModelDecoder(ModelDecoder&&) noexcept = default;
ModelDecoder& ModelDecoder::operator=(ModelDecoder&&) noexcept = default;

void ModelDecoder::Recycle(ModelState spare) {
  FEDGE_CHECK(state_->consumed == 0) << "Recycle after Feed";
  state_->spare = std::move(spare);
}

void ModelDecoder::SetExpectedSize(int64_t total_bytes) {
  State& s = *state_;
  FEDGE_CHECK(s.consumed == 0) << "SetExpectedSize after Feed";
  s.expected_size = std::max<int64_t>(0, total_bytes);
  if (s.status.ok()) s.status = s.CheckRoom(s.need, PhaseName(s.phase));
}

absl::Status ModelDecoder::Feed(absl::string_view bytes) {
  State& s = *state_;
  if (s.finished) return absl::FailedPreconditionError("Feed after Finish");
  while (!bytes.empty() && s.status.ok()) s.status = s.Step(&bytes);
  return s.status;
}

absl::StatusOr<ModelState> ModelDecoder::Finish() {
  State& s = *state_;
  if (s.finished) return absl::FailedPreconditionError("Finish called twice");
  s.finished = true;
  if (!s.status.ok()) return s.status;
  if (s.phase != Phase::kDone) {
    const uint64_t have =
        s.phase == Phase::kData ? s.data_done : s.field.size();
    return absl::InvalidArgumentError(absl::StrCat(
        "truncated: ", s.Where(), "input ended at byte ", s.consumed, " with ",
        s.need - have, " bytes of ", PhaseName(s.phase), " missing"));
  }
  return ModelState(std::move(s.tensors));
}

int64_t ModelDecoder::bytes_consumed() const { return state_->consumed; }

absl::StatusOr<ModelState> DecodeModel(absl::string_view bytes,
                                       DecodeLimits limits,
                                       std::optional<ModelSchema> expected) {
  ModelDecoder decoder(limits, std::move(expected));
  decoder.SetExpectedSize(static_cast<int64_t>(bytes.size()));
  RETURN_IF_ERROR(decoder.Feed(bytes));
  return decoder.Finish();
}

}  // namespace fedge
