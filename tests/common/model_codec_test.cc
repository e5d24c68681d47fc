#include "common/model_codec.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

// Records the largest single allocation while enabled, so tests can show
// that a corrupt size is rejected before anything is allocated for it.
// (GCC cannot tell that the replaced operator delete pairs with malloc.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<bool> g_track_allocations{false};
std::atomic<size_t> g_largest_allocation{0};
std::atomic<size_t> g_total_allocated{0};
}  // namespace

void* operator new(size_t size) {
  if (g_track_allocations.load(std::memory_order_relaxed)) {
    g_total_allocated.fetch_add(size, std::memory_order_relaxed);
    if (size > g_largest_allocation.load(std::memory_order_relaxed)) {
      g_largest_allocation.store(size, std::memory_order_relaxed);
    }
  }
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace fedge {
namespace {

using ::testing::HasSubstr;

// The largest allocation made while `fn` runs.
template <typename Fn>
size_t LargestAllocationDuring(Fn fn) {
  g_largest_allocation = 0;
  g_track_allocations = true;
  fn();
  g_track_allocations = false;
  return g_largest_allocation;
}

// The sum of all allocations made while `fn` runs.
template <typename Fn>
size_t TotalAllocatedDuring(Fn fn) {
  g_total_allocated = 0;
  g_track_allocations = true;
  fn();
  g_track_allocations = false;
  return g_total_allocated;
}

TensorBuffer Floats(const std::string& name, std::vector<int64_t> shape) {
  TensorBuffer t = *TensorBuffer::Zeros(name, DType::kFloat32, shape);
  absl::Span<float> v = t.mutable_floats();
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5f * i - 3.0f;
  return t;
}

TensorBuffer Int64s(const std::string& name, std::vector<int64_t> shape) {
  TensorBuffer t = *TensorBuffer::Zeros(name, DType::kInt64, shape);
  absl::Span<int64_t> v = t.mutable_int64s();
  for (size_t i = 0; i < v.size(); ++i) v[i] = (int64_t{1} << 40) + i;
  return t;
}

// A small model with float and int64 tensors, a scalar and an empty tensor.
ModelState SmallModel() {
  ModelState m;
  m.Add(Floats("fc1.weight", {3, 4}));
  m.Add(Floats("fc1.bias", {4}));
  m.Add(Int64s("bn.num_batches_tracked", {}));
  m.Add(Floats("empty", {0, 5}));
  m.Add(Int64s("counts", {2, 3}));
  return m;
}

void ExpectSameModel(const ModelState& a, const ModelState& b) {
  ASSERT_TRUE(CheckSameSchema(a, b).ok()) << CheckSameSchema(a, b);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a.tensor(i).num_bytes(), b.tensor(i).num_bytes());
    EXPECT_EQ(0, std::memcmp(a.tensor(i).data(), b.tensor(i).data(),
                             a.tensor(i).num_bytes()))
        << a.tensor(i).name();
  }
}

void PutLE(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(char((value >> 8 * i) & 0xff));
}

// Hand-made pieces of an encoding, for corrupt inputs.
std::string Prefix(uint32_t count) {
  std::string out = "FEDGEMS1";
  PutLE(&out, count, 4);
  return out;
}

std::string TensorHeader(const std::string& name, uint8_t dtype,
                         std::vector<int64_t> dims, uint64_t data_len,
                         uint8_t encoding = 0) {
  std::string out;
  PutLE(&out, name.size(), 2);
  out += name;
  out.push_back(char(dtype));
  out.push_back(char(encoding));
  out.push_back(char(dims.size()));
  for (int64_t d : dims) PutLE(&out, uint64_t(d), 8);
  PutLE(&out, data_len, 8);
  return out;
}

DecodeLimits SmallLimits() {
  DecodeLimits limits;
  limits.max_tensors = 8;
  limits.max_name_bytes = 32;
  limits.max_total_bytes = 4096;
  limits.max_decoded_bytes = 1 << 16;
  return limits;
}

// Decodes by streaming (no declared size), in one Feed.
absl::StatusOr<ModelState> StreamDecode(absl::string_view bytes,
                                        DecodeLimits limits = {}) {
  ModelDecoder decoder(limits);
  absl::Status fed = decoder.Feed(bytes);
  if (!fed.ok()) return fed;
  return decoder.Finish();
}

TEST(ModelCodecTest, RoundTrip_FloatInt64ScalarAndEmptyTensors) {
  const ModelState model = SmallModel();
  const std::string bytes = EncodeModel(model);
  absl::StatusOr<ModelState> decoded = DecodeModel(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameModel(model, *decoded);
  EXPECT_EQ(decoded->tensor(2).int64s()[0], int64_t{1} << 40);
}

TEST(ModelCodecTest, RoundTrip_EmptyModel) {
  const std::string bytes = EncodeModel(ModelState());
  EXPECT_EQ(bytes, Prefix(0));
  absl::StatusOr<ModelState> decoded = DecodeModel(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->size(), 0u);
}

TEST(ModelCodecTest, RoundTrip_OnlyZeroSizeTensors) {
  ModelState model;
  model.Add(Floats("a", {0}));
  model.Add(Int64s("b", {7, 0, 2}));
  absl::StatusOr<ModelState> decoded = StreamDecode(EncodeModel(model));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameModel(model, *decoded);
}

TEST(ModelCodecTest, Encoding_FollowsDocumentedLayout) {
  ModelState model;
  model.Add(Floats("w", {2}));
  std::string want = Prefix(1) + TensorHeader("w", 1, {2}, 8);
  want.append(reinterpret_cast<const char*>(model.tensor(0).data()), 8);
  EXPECT_EQ(EncodeModel(model), want);
}

// A fixed model whose encoding is pinned by a golden SHA-256, so that any
// change to the raw (encoding 0) bytes -- and with them every stored
// checkpoint, cached model and model identity -- is caught.
ModelState GoldenModel() {
  ModelState m = SmallModel();
  TensorBuffer w =
      *TensorBuffer::Zeros("conv.weight", DType::kFloat32, {8, 3, 3, 3});
  absl::Span<float> v = w.mutable_floats();
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<float>((i * 37) % 1001) / 7.0f - 71.5f;
  }
  m.Add(std::move(w));
  return m;
}

TEST(ModelCodecTest, RawEncoding_MatchesGoldenHash) {
  // Computed with the codec before lossy encodings existed (main @ 0881086)
  // and checked against the documented layout by an independent script.
  EXPECT_EQ(ToHex(ModelDigest(SmallModel())),
            "bf241d3300604da51353d48cc01516bf9bce3c5d2797d161c39a213da0b4cb92");
  EXPECT_EQ(ToHex(Sha256Of(EncodeModel(GoldenModel()))),
            "97d5a862783345a9b8a99c2326f27e7ac313fd6e2ef761869b647f3965b4736d");
  EXPECT_EQ(EncodeModel(GoldenModel()).size(), 1224u);
}

TEST(ModelCodecTest, EncodedSize_EqualsEncodingLength) {
  const ModelState model = SmallModel();
  EXPECT_EQ(EncodedSize(model),
            static_cast<int64_t>(EncodeModel(model).size()));
  EXPECT_EQ(EncodedSize(ModelState()), 12);
}

TEST(ModelCodecTest, ModelDigest_EqualsSha256OfEncoding) {
  const ModelState model = SmallModel();
  EXPECT_EQ(ModelDigest(model), Sha256Of(EncodeModel(model)));
  EXPECT_EQ(ModelDigest(ModelState()), Sha256Of(EncodeModel(ModelState())));
}

TEST(ModelCodecTest, ModelChecksum_EqualsXxh3OfEncoding) {
  const ModelState model = SmallModel();
  EXPECT_EQ(ModelChecksum(model), Xxh3_128Of(EncodeModel(model)));
  EXPECT_EQ(ModelChecksum(ModelState()),
            Xxh3_128Of(EncodeModel(ModelState())));
}

TEST(ModelCodecTest, ChunkedEncoding_EqualsWholeEncoding) {
  const ModelState model = SmallModel();
  const std::string whole = EncodeModel(model);
  for (size_t chunk = 1; chunk <= whole.size() + 2; ++chunk) {
    ModelEncoder encoder(model, chunk);
    EXPECT_EQ(encoder.total_bytes(), static_cast<int64_t>(whole.size()));
    std::string joined, piece;
    while (encoder.Next(&piece)) {
      ASSERT_GE(piece.size(), 1u);
      ASSERT_LE(piece.size(), chunk);
      joined += piece;
      EXPECT_EQ(encoder.offset(), static_cast<int64_t>(joined.size()));
    }
    EXPECT_TRUE(piece.empty());
    EXPECT_EQ(joined, whole) << "chunk " << chunk;
  }
}

// The pieces join to the same chunks; stable ones point into the model's
// tensor data and the others do not.
TEST(ModelCodecTest, NextPieces_StablePiecesAreTheModelsOwnBytes) {
  const ModelState model = SmallModel();
  const std::string whole = EncodeModel(model);
  auto in_model = [&](absl::string_view bytes) {
    for (const TensorBuffer& t : model.tensors()) {
      const char* begin = reinterpret_cast<const char*>(t.data());
      if (bytes.data() >= begin &&
          bytes.data() + bytes.size() <= begin + t.num_bytes()) {
        return true;
      }
    }
    return false;
  };
  for (size_t chunk = 1; chunk <= whole.size() + 2; ++chunk) {
    ModelEncoder encoder(model, chunk);
    encoder.Seek(static_cast<int64_t>(chunk / 2));
    std::string joined;
    int64_t stable_bytes = 0;
    while (true) {
      std::string this_chunk;
      const bool more =
          encoder.NextPieces([&](absl::string_view bytes, bool stable) {
            ASSERT_FALSE(bytes.empty());
            EXPECT_EQ(stable, in_model(bytes));
            if (stable) stable_bytes += static_cast<int64_t>(bytes.size());
            this_chunk.append(bytes.data(), bytes.size());
          });
      if (!more) break;
      ASSERT_GE(this_chunk.size(), 1u);
      ASSERT_LE(this_chunk.size(), chunk);
      joined += this_chunk;
    }
    EXPECT_EQ(joined, whole.substr(chunk / 2)) << "chunk " << chunk;
    EXPECT_GT(stable_bytes, 0);
  }
}

// NextGathered: the same chunks; tensor data of at least copy_below bytes
// stays in the model, everything else comes in gathered runs (never two in
// a row).
TEST(ModelCodecTest, NextGathered_LargePiecesInPlaceTheRestGathered) {
  const ModelState model = SmallModel();  // Data of 48, 16, 8, 0, 48 bytes.
  const std::string whole = EncodeModel(model);
  for (size_t copy_below : {size_t{1}, size_t{17}, size_t{1000}}) {
    for (size_t chunk : {size_t{7}, size_t{40}, whole.size()}) {
      ModelEncoder encoder(model, chunk);
      std::string joined;
      int stable_pieces = 0;
      while (true) {
        std::string this_chunk;
        bool last_gathered = false;
        const bool more = encoder.NextGathered(
            copy_below, [&](absl::string_view bytes, bool stable) {
              ASSERT_FALSE(bytes.empty());
              if (stable) {
                ++stable_pieces;
                EXPECT_GE(bytes.size(), copy_below);
              } else {
                EXPECT_FALSE(last_gathered) << "two gathered runs in a row";
              }
              last_gathered = !stable;
              this_chunk.append(bytes.data(), bytes.size());
            });
        if (!more) break;
        ASSERT_LE(this_chunk.size(), chunk);
        joined += this_chunk;
      }
      EXPECT_EQ(joined, whole) << copy_below << " " << chunk;
      if (copy_below == 1000) {
        EXPECT_EQ(stable_pieces, 0);
      }
      if (copy_below == 1 && chunk == whole.size()) {
        EXPECT_EQ(stable_pieces, 4);
      }
    }
  }
}

TEST(ModelCodecTest, Encoder_EmptyModel_OneChunkThenDone) {
  ModelState empty;
  ModelEncoder encoder(empty);
  std::string chunk;
  ASSERT_TRUE(encoder.Next(&chunk));
  EXPECT_EQ(chunk, Prefix(0));
  EXPECT_FALSE(encoder.Next(&chunk));
  EXPECT_FALSE(encoder.Next(&chunk));
}

TEST(ModelCodecTest, Seek_EveryOffset_ProducesTheRest) {
  const ModelState model = SmallModel();
  const std::string whole = EncodeModel(model);
  ModelEncoder encoder(model, 7);
  for (size_t offset = 0; offset <= whole.size(); ++offset) {
    encoder.Seek(static_cast<int64_t>(offset));
    EXPECT_EQ(encoder.offset(), static_cast<int64_t>(offset));
    std::string rest, piece;
    while (encoder.Next(&piece)) rest += piece;
    EXPECT_EQ(rest, whole.substr(offset)) << "offset " << offset;
  }
}

TEST(ModelCodecTest, Decoder_OneByteChunks) {
  const ModelState model = SmallModel();
  const std::string bytes = EncodeModel(model);
  ModelDecoder decoder;
  for (char c : bytes) ASSERT_TRUE(decoder.Feed(absl::string_view(&c, 1)).ok());
  EXPECT_EQ(decoder.bytes_consumed(), static_cast<int64_t>(bytes.size()));
  absl::StatusOr<ModelState> decoded = decoder.Finish();
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameModel(model, *decoded);
}

TEST(ModelCodecTest, Decoder_RandomChunks) {
  const ModelState model = SmallModel();
  const std::string bytes = EncodeModel(model);
  std::mt19937 rng(42);
  for (int trial = 0; trial < 50; ++trial) {
    ModelDecoder decoder(DecodeLimits{}, SchemaOf(model));
    for (size_t at = 0; at < bytes.size();) {
      const size_t n = std::min<size_t>(rng() % 40, bytes.size() - at);
      ASSERT_TRUE(decoder.Feed(absl::string_view(bytes).substr(at, n)).ok());
      at += n;
    }
    absl::StatusOr<ModelState> decoded = decoder.Finish();
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ExpectSameModel(model, *decoded);
  }
}

TEST(ModelCodecTest, EveryTruncation_FailsCleanly) {
  const std::string bytes = EncodeModel(SmallModel());
  for (size_t len = 0; len < bytes.size(); ++len) {
    const absl::string_view prefix = absl::string_view(bytes).substr(0, len);
    absl::StatusOr<ModelState> whole = DecodeModel(prefix);
    EXPECT_EQ(whole.status().code(), absl::StatusCode::kInvalidArgument) << len;
    absl::StatusOr<ModelState> streamed = StreamDecode(prefix);
    ASSERT_EQ(streamed.status().code(), absl::StatusCode::kInvalidArgument)
        << len;
    EXPECT_THAT(streamed.status().message(), HasSubstr("truncated"));
  }
}

TEST(ModelCodecTest, TrailingBytes_Rejected) {
  const std::string bytes = EncodeModel(SmallModel()) + "x";
  absl::StatusOr<ModelState> decoded = DecodeModel(bytes);
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("trailing"));
  EXPECT_FALSE(
      StreamDecode(EncodeModel(ModelState()) + std::string(1, '\0')).ok());
}

TEST(ModelCodecTest, BadMagic_Rejected) {
  std::string bytes = EncodeModel(SmallModel());
  bytes[0] = 'X';
  absl::StatusOr<ModelState> decoded = DecodeModel(bytes);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("magic"));
}

TEST(ModelCodecTest, AllocationTracking_SeesTensorData) {
  ModelState model;
  model.Add(Floats("w", {1 << 18}));
  const std::string bytes = EncodeModel(model);
  const size_t largest =
      LargestAllocationDuring([&] { ASSERT_TRUE(DecodeModel(bytes).ok()); });
  EXPECT_GE(largest, size_t{1} << 20);
}

TEST(ModelCodecTest, HugeTensorCount_FailsWithoutAllocating) {
  absl::Status status;
  const size_t largest = LargestAllocationDuring([&] {
    status = StreamDecode(Prefix(0xffffffff), SmallLimits()).status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("max_tensors"));
  EXPECT_LT(largest, 4096u);
}

TEST(ModelCodecTest, HugeNameLength_FailsWithoutAllocating) {
  std::string bytes = Prefix(1);
  PutLE(&bytes, 0xffff, 2);
  absl::Status status;
  const size_t largest = LargestAllocationDuring(
      [&] { status = StreamDecode(bytes, SmallLimits()).status(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("name_len 65535"));
  EXPECT_LT(largest, 4096u);
}

TEST(ModelCodecTest, HugeDims_FailWithoutAllocating) {
  const std::string over_elements =
      Prefix(1) + TensorHeader("w", 1, {int64_t{1} << 40, 1 << 20}, 0);
  const std::string over_bytes =
      Prefix(1) + TensorHeader("w", 1, {int64_t{1} << 30}, uint64_t{4} << 30);
  absl::Status elements, bytes;
  const size_t largest = LargestAllocationDuring([&] {
    elements = StreamDecode(over_elements, SmallLimits()).status();
    bytes = StreamDecode(over_bytes, SmallLimits()).status();
  });
  EXPECT_EQ(elements.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(elements.message(), HasSubstr("tensor #0 'w'"));
  EXPECT_EQ(bytes.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(bytes.message(), HasSubstr("max_total_bytes"));
  EXPECT_LT(largest, 4096u);
}

TEST(ModelCodecTest, DeclaredSize_RejectsDataPastTheEnd) {
  const std::string bytes =
      Prefix(1) + TensorHeader("w", 1, {1 << 20}, 4 << 20) + "abcd";
  absl::Status status;
  const size_t largest =
      LargestAllocationDuring([&] { status = DecodeModel(bytes).status(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("runs past the end"));
  EXPECT_LT(largest, 4096u);
}

TEST(ModelCodecTest, NegativeDimAndHighRank_Rejected) {
  EXPECT_THAT(StreamDecode(Prefix(1) + TensorHeader("w", 1, {-1}, 0))
                  .status()
                  .message(),
              HasSubstr("negative dimension"));
  const std::vector<int64_t> rank9(9, 1);
  EXPECT_THAT(StreamDecode(Prefix(1) + TensorHeader("w", 1, rank9, 4))
                  .status()
                  .message(),
              HasSubstr("rank 9"));
}

TEST(ModelCodecTest, DataLenMismatch_SaysWhatIsWrong) {
  std::string bytes = Prefix(2) + TensorHeader("a", 1, {1}, 4) + "abcd";
  bytes += TensorHeader("fc1.weight", 1, {200, 784}, 100);
  absl::Status status = StreamDecode(bytes).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "tensor #1 'fc1.weight': data_len 100 does not match shape "
            "[200,784] float32 (627200 bytes)");
}

TEST(ModelCodecTest, UnknownDtypeAndEncoding_Rejected) {
  EXPECT_THAT(
      StreamDecode(Prefix(1) + TensorHeader("w", 3, {1}, 4)).status().message(),
      HasSubstr("unknown dtype 3"));
  EXPECT_THAT(StreamDecode(Prefix(1) + TensorHeader("w", 1, {1}, 4, 6))
                  .status()
                  .message(),
              HasSubstr("tensor #0 'w': unknown encoding 6"));
}

TEST(ModelCodecTest, BadNames_Rejected) {
  const std::string empty = Prefix(1) + TensorHeader("", 1, {}, 4);
  EXPECT_THAT(StreamDecode(empty).status().message(), HasSubstr("empty name"));
  const std::string dup = Prefix(2) + TensorHeader("a", 1, {}, 4) + "abcd" +
                          TensorHeader("a", 1, {}, 4) + "abcd";
  EXPECT_THAT(StreamDecode(dup).status().message(),
              HasSubstr("tensor #1 'a': duplicate name"));
  const std::string latin1 = Prefix(1) + TensorHeader("\xe9t\xe9", 1, {}, 4);
  EXPECT_THAT(StreamDecode(latin1).status().message(), HasSubstr("UTF-8"));
}

TEST(ModelCodecTest, SchemaMismatch_DetectedAtTensorHeader) {
  const ModelState model = SmallModel();
  ModelState other = SmallModel();
  other.mutable_tensors()[1] = Floats("fc1.bias", {5});
  const std::string bytes = EncodeModel(other);
  ModelDecoder decoder(DecodeLimits{}, SchemaOf(model));
  // Feed up to the end of tensor #1's header, not its data.
  const size_t header_end =
      12 + (2 + 10 + 3 + 16 + 8 + 48) + (2 + 8 + 3 + 8 + 8);
  absl::Status status =
      decoder.Feed(absl::string_view(bytes).substr(0, header_end - 8));
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "tensor #1 'fc1.bias': float32[5] does not match the expected "
            "float32[4]");
  EXPECT_EQ(decoder.Finish().status(), status);
}

TEST(ModelCodecTest, SchemaMismatch_NameCountAndDtype) {
  const ModelSchema schema = SchemaOf(SmallModel());
  ModelState renamed = SmallModel();
  renamed.mutable_tensors()[0] = Floats("fc0.weight", {3, 4});
  EXPECT_THAT(DecodeModel(EncodeModel(renamed), {}, schema).status().message(),
              HasSubstr("expected 'fc1.weight'"));
  ModelState fewer;
  fewer.Add(Floats("fc1.weight", {3, 4}));
  EXPECT_THAT(DecodeModel(EncodeModel(fewer), {}, schema).status().message(),
              HasSubstr("tensor_count 1"));
  ModelState retyped = SmallModel();
  retyped.mutable_tensors()[4] = Floats("counts", {2, 3});
  EXPECT_THAT(DecodeModel(EncodeModel(retyped), {}, schema).status().message(),
              HasSubstr("expected int64[2,3]"));
}

TEST(ModelCodecTest, AfterError_DecoderStaysFailed) {
  ModelDecoder decoder;
  const absl::Status first = decoder.Feed(std::string("NOTMAGIC\1\0\0\0", 12));
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(decoder.Feed(EncodeModel(SmallModel())), first);
  EXPECT_EQ(decoder.Finish().status(), first);
  EXPECT_EQ(decoder.Finish().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ModelCodecTest, TotalBytesLimit_AppliesToWholeEncoding) {
  const std::string bytes = EncodeModel(SmallModel());
  DecodeLimits limits;
  limits.max_total_bytes = static_cast<int64_t>(bytes.size()) - 1;
  EXPECT_EQ(DecodeModel(bytes, limits).status().code(),
            absl::StatusCode::kResourceExhausted);
  limits.max_total_bytes += 1;
  EXPECT_TRUE(DecodeModel(bytes, limits).ok());
}

// ---------------------------------------------------------------------------
// Lossy encodings (made by common/update_codec.h; decoded here).

std::string Float32LE(float value) {
  std::string out(4, '\0');
  std::memcpy(&out[0], &value, 4);
  return out;
}

// Top-k data: k, then (index, value) pairs.
std::string TopKData(uint32_t k, std::vector<uint32_t> indices) {
  std::string out;
  PutLE(&out, k, 4);
  for (uint32_t index : indices) {
    PutLE(&out, index, 4);
    out += Float32LE(1.5f);
  }
  return out;
}

// One tensor 'w' of `shape` with `encoding` and `data`, data_len announced
// as `data_len` (default: data's size).
std::string OneTensor(std::vector<int64_t> shape, uint8_t encoding,
                      const std::string& data, int64_t data_len = -1,
                      uint8_t dtype = 1) {
  return Prefix(1) +
         TensorHeader("w", dtype, shape,
                      data_len < 0 ? data.size() : uint64_t(data_len),
                      encoding) +
         data;
}

// The decode error of `bytes`, which must be INVALID_ARGUMENT and name
// tensor #0 'w', both whole and streamed byte by byte.
std::string LossyError(const std::string& bytes) {
  const absl::Status whole = DecodeModel(bytes).status();
  ModelDecoder decoder;
  absl::Status streamed;
  for (size_t i = 0; i < bytes.size() && streamed.ok(); ++i) {
    streamed = decoder.Feed(absl::string_view(bytes).substr(i, 1));
  }
  EXPECT_EQ(streamed, whole);
  EXPECT_EQ(whole.code(), absl::StatusCode::kInvalidArgument) << whole;
  EXPECT_THAT(whole.message(), HasSubstr("tensor #0 'w': "));
  return std::string(whole.message());
}

ModelState LossyModel() {
  ModelState m = SmallModel();
  TensorBuffer w =
      *TensorBuffer::Zeros("conv.weight", DType::kFloat32, {4, 2, 3, 3});
  absl::Span<float> v = w.mutable_floats();
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.7f * i) * (i % 5);
  m.Add(std::move(w));
  return m;
}

// LossyModel encoded as each kind (int8 per channel included).
std::vector<std::string> LossyEncodings() {
  std::vector<std::string> out;
  for (UpdateEncoding kind :
       {UpdateEncoding::kFp16, UpdateEncoding::kInt8, UpdateEncoding::kTopK}) {
    for (bool per_channel : {false, true}) {
      EncodingOptions options;
      options.kind = kind;
      options.per_channel = per_channel;
      options.topk_fraction = 0.2;
      out.push_back(EncodeModel(*EncodeForWire(LossyModel(), options)));
    }
  }
  return out;
}

TEST(ModelCodecTest, LossyEncodings_DecodeToFloat32WithTheSchema) {
  const ModelSchema schema = SchemaOf(LossyModel());
  for (const std::string& bytes : LossyEncodings()) {
    absl::StatusOr<ModelState> decoded = DecodeModel(bytes, {}, schema);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(CheckSchema(schema, *decoded).ok());
  }
}

TEST(ModelCodecTest, LossyHeader_DataLenMustMatchTheEncoding) {
  EXPECT_EQ(LossyError(OneTensor({3, 4}, 1, "", 48)),
            "tensor #0 'w': data_len 48 does not match shape [3,4] float32 "
            "encoded as fp16 (24 bytes)");
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 2, "", 12)),
              HasSubstr("encoded as int8 (16 bytes)"));
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 3, "", 16)),
              HasSubstr("encoded as int8_per_channel (24 bytes)"));
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 4, "", 3)),
              HasSubstr("data_len 3 is outside [4, 100] for top-k"));
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 4, "", 108)),
              HasSubstr("data_len 108 is outside [4, 100] for top-k"));
}

TEST(ModelCodecTest, LossyHeader_WrongSizeFailsWithoutAllocating) {
  // 2^28 elements would be 1 GiB decoded.
  const std::vector<int64_t> huge = {int64_t{1} << 28};
  absl::Status fp16, topk;
  const size_t largest = LargestAllocationDuring([&] {
    fp16 = StreamDecode(OneTensor(huge, 1, "", 4)).status();
    topk = StreamDecode(OneTensor(huge, 4, "", 3)).status();
  });
  EXPECT_THAT(fp16.message(), HasSubstr("tensor #0 'w': data_len 4"));
  EXPECT_THAT(topk.message(), HasSubstr("tensor #0 'w': data_len 3"));
  EXPECT_LT(largest, 4096u);
}

TEST(ModelCodecTest, LossyEncodingOfInt64EmptyOrScalar_Rejected) {
  absl::Status int64, empty, scalar;
  const size_t largest = LargestAllocationDuring([&] {
    int64 = DecodeModel(OneTensor({1 << 20}, 2, "", 4 + (1 << 20), 2)).status();
    empty = DecodeModel(OneTensor({0, 3}, 1, "", 0)).status();
    scalar = DecodeModel(OneTensor({}, 3, "", 5)).status();
  });
  EXPECT_EQ(int64.message(),
            "tensor #0 'w': encoding 2 (int8) applies only to float32 "
            "tensors, not int64");
  EXPECT_EQ(empty.message(),
            "tensor #0 'w': encoding 1 (fp16) does not apply to an empty "
            "tensor (only raw)");
  EXPECT_THAT(scalar.message(),
              HasSubstr("tensor #0 'w': encoding 3 (int8_per_channel) needs "
                        "rank >= 1"));
  EXPECT_LT(largest, 4096u);
}

TEST(ModelCodecTest, TopK_BadKRejected) {
  EXPECT_EQ(LossyError(OneTensor({3, 4}, 4, TopKData(0, {}))),
            "tensor #0 'w': top-k k 0 is outside [1, 12]");
  EXPECT_THAT(LossyError(OneTensor({2}, 4, TopKData(3, {0}))),
              HasSubstr("top-k k 3 is outside [1, 2]"));
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 4, TopKData(1, {0, 1}))),
              HasSubstr("top-k k 1 does not match data_len 20"));
}

TEST(ModelCodecTest, TopK_BadIndicesRejected) {
  EXPECT_EQ(LossyError(OneTensor({3, 4}, 4, TopKData(2, {5, 3}))),
            "tensor #0 'w': top-k index 3 of pair #1 is not above the "
            "previous index 5 (indices must increase strictly)");
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 4, TopKData(3, {1, 5, 5}))),
              HasSubstr("top-k index 5 of pair #2 is not above"));
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 4, TopKData(2, {4, 12}))),
              HasSubstr("top-k index 12 of pair #1 is out of range for 12 "
                        "elements"));
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 4, TopKData(1, {0xffffffff}))),
              HasSubstr("out of range"));
}

TEST(ModelCodecTest, TopK_DensifiesWithZeros) {
  absl::StatusOr<ModelState> decoded =
      DecodeModel(OneTensor({2, 3}, 4, TopKData(2, {1, 4})));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(decoded->tensor(0).floats(),
              ::testing::ElementsAre(0, 1.5f, 0, 0, 1.5f, 0));
}

// Top-k with a mask: k, ceil(n / 8) mask bytes, then values 1.5, 2.5, ...
std::string TopKMaskData(uint32_t k, const std::string& mask, int values) {
  std::string out;
  PutLE(&out, k, 4);
  out += mask;
  for (int i = 0; i < values; ++i) out += Float32LE(1.5f + i);
  return out;
}

TEST(ModelCodecTest, TopKMask_ValuesGoWhereTheBitsAre) {
  // 12 elements, bits 1, 4 and 9 set: bytes 0b00010010, 0b00000010.
  absl::StatusOr<ModelState> decoded = DecodeModel(
      OneTensor({3, 4}, 5, TopKMaskData(3, std::string("\x12\x02", 2), 3)));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(
      decoded->tensor(0).floats(),
      ::testing::ElementsAre(0, 1.5f, 0, 0, 2.5f, 0, 0, 0, 0, 3.5f, 0, 0));
}

TEST(ModelCodecTest, TopKMask_BadMasksAndLengthsRejected) {
  // Bit 12 is past the 12 elements.
  EXPECT_THAT(LossyError(OneTensor(
                  {3, 4}, 5, TopKMaskData(2, std::string("\x02\x10", 2), 2))),
              HasSubstr("top-k mask sets bit 12 past the 12 elements"));
  // Two bits for k = 3, and four for k = 3.
  EXPECT_THAT(LossyError(OneTensor(
                  {3, 4}, 5, TopKMaskData(3, std::string("\x03\x00", 2), 3))),
              HasSubstr("top-k mask sets 2 bits, not k = 3"));
  EXPECT_THAT(LossyError(OneTensor(
                  {3, 4}, 5, TopKMaskData(3, std::string("\x0f\x00", 2), 3))),
              HasSubstr("top-k mask sets 4 bits or more, not k = 3"));
  EXPECT_THAT(
      LossyError(
          OneTensor({3, 4}, 5, TopKMaskData(2, std::string("\x03\x00", 2), 3))),
      HasSubstr(
          "top-k k 2 does not match data_len 18 (4 + ceil(n / 8) + 4k = 14)"));
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 5, "", 9)),
              HasSubstr("data_len 9 is outside [10, 54] for top-k (mask)"));
}

TEST(ModelCodecTest, Int8_BadScalesRejected) {
  const std::string values(12, '\1');
  EXPECT_EQ(LossyError(OneTensor({3, 4}, 2, Float32LE(NAN) + values)),
            "tensor #0 'w': int8 scale nan is outside [0, FLT_MAX / 128]");
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 2, Float32LE(-1) + values)),
              HasSubstr("int8 scale -1 is outside"));
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 2, Float32LE(INFINITY) + values)),
              HasSubstr("int8 scale inf is outside"));
  const std::string scales = Float32LE(1) + Float32LE(1) + Float32LE(NAN);
  EXPECT_EQ(LossyError(OneTensor({3, 4}, 3, scales + values)),
            "tensor #0 'w': int8 scale of channel 2 nan is outside [0, "
            "FLT_MAX / 128]");
  // 128 * 1e37 would overflow float32.
  EXPECT_THAT(LossyError(OneTensor({3, 4}, 2, Float32LE(1e37f) + values)),
              HasSubstr("int8 scale 1e+37 is outside"));
}

TEST(ModelCodecTest, Int8PerChannel_EachSliceUsesItsScale) {
  std::string data = Float32LE(1) + Float32LE(0.5f) + Float32LE(0);
  for (int8_t q : {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12}) {
    data.push_back(static_cast<char>(q));
  }
  absl::StatusOr<ModelState> decoded = DecodeModel(OneTensor({3, 4}, 3, data));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(
      decoded->tensor(0).floats(),
      ::testing::ElementsAre(1, -2, 3, -4, 2.5f, -3, 3.5f, -4, 0, 0, 0, 0));
}

TEST(ModelCodecTest, Fp16_DecodesHalves) {
  std::string data;
  for (uint16_t h : {0x3c00, 0xc000, 0x7bff, 0x0001}) PutLE(&data, h, 2);
  absl::StatusOr<ModelState> decoded = DecodeModel(OneTensor({4}, 1, data));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(decoded->tensor(0).floats(),
              ::testing::ElementsAre(1.0f, -2.0f, 65504.0f, 0x1p-24f));
}

TEST(ModelCodecTest, MaxDecodedBytes_BoundsSmallTopKOfHugeTensors) {
  DecodeLimits limits;
  limits.max_decoded_bytes = 1 << 20;
  // 12 bytes of data that would decode to 1 GiB.
  const std::string bytes = OneTensor({int64_t{1} << 28}, 4, TopKData(1, {7}));
  absl::Status status;
  const size_t largest = LargestAllocationDuring(
      [&] { status = DecodeModel(bytes, limits).status(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("tensor #0 'w': decoded data of "
                                          "1073741824 bytes"));
  EXPECT_THAT(status.message(), HasSubstr("max_decoded_bytes"));
  EXPECT_LT(largest, 4096u);
  limits.max_decoded_bytes = int64_t{1} << 30;
  ModelState small;
  small.Add(Floats("w", {1 << 10}));
  limits.max_decoded_bytes = 4 << 10;
  EXPECT_TRUE(DecodeModel(EncodeModel(small), limits).ok());
  limits.max_decoded_bytes -= 1;
  EXPECT_EQ(DecodeModel(EncodeModel(small), limits).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(ModelCodecTest, LossySchemaMismatch_DetectedBeforeAllocating) {
  ModelState model;
  model.Add(Floats("w", {1 << 18}));
  EncodingOptions options;
  options.kind = UpdateEncoding::kFp16;
  const std::string bytes = EncodeModel(*EncodeForWire(model, options));
  ModelSchema other = SchemaOf(model);
  other[0].shape = {1 << 17, 2};
  absl::Status status;
  const size_t largest = LargestAllocationDuring(
      [&] { status = DecodeModel(bytes, {}, other).status(); });
  EXPECT_THAT(status.message(),
              HasSubstr("float32[262144] does not match the expected"));
  EXPECT_LT(largest, 4096u);
}

// The coordinator's memory stays O(model): a streamed fp16 tensor is
// decoded into its float32 buffer, and its encoded bytes are not gathered.
TEST(ModelCodecTest, LossyStreamingDecode_AllocatesOnlyTheDecodedTensor) {
  ModelState model;
  model.Add(Floats("w", {1 << 18}));  // 1 MiB float32, 512 KiB fp16.
  EncodingOptions options;
  options.kind = UpdateEncoding::kFp16;
  const std::string bytes = EncodeModel(*EncodeForWire(model, options));
  const size_t total = TotalAllocatedDuring([&] {
    ModelDecoder decoder;
    for (size_t at = 0; at < bytes.size(); at += 4096) {
      ASSERT_TRUE(decoder.Feed(absl::string_view(bytes).substr(at, 4096)).ok());
    }
    ASSERT_TRUE(decoder.Finish().ok());
  });
  EXPECT_GE(total, size_t{1} << 20);
  EXPECT_LT(total, (size_t{1} << 20) + 16384);
}

TEST(ModelCodecTest, LossyTruncations_FailCleanly) {
  for (const std::string& bytes : LossyEncodings()) {
    for (size_t len = 0; len < bytes.size(); ++len) {
      const absl::string_view prefix = absl::string_view(bytes).substr(0, len);
      EXPECT_EQ(DecodeModel(prefix).status().code(),
                absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(StreamDecode(prefix).status().message(),
                  HasSubstr("truncated"))
          << len;
    }
  }
}

// Mutates `bytes` once: a bit flip, a truncation or an insertion.
std::string Mutate(std::string bytes, std::mt19937& rng) {
  const size_t at = bytes.empty() ? 0 : rng() % bytes.size();
  switch (rng() % 4) {
    case 0:
    case 1:
      if (!bytes.empty()) bytes[at] ^= char(1 << (rng() % 8));
      break;
    case 2:
      bytes.resize(at);
      break;
    default:
      bytes.insert(at, std::string(1 + rng() % 9, char(rng())));
  }
  return bytes;
}

TEST(ModelCodecTest, MiniFuzz_MutationsDecodeOrFailCleanly) {
  const std::string valid = EncodeModel(SmallModel());
  std::mt19937 rng(20240611);
  int decoded_ok = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string input = Mutate(valid, rng);
    if (i % 3 == 0) input = Mutate(input, rng);
    absl::StatusOr<ModelState> decoded = DecodeModel(input, SmallLimits());
    absl::StatusOr<ModelState> streamed = StreamDecode(input, SmallLimits());
    EXPECT_EQ(decoded.ok(), streamed.ok()) << i;
    if (!decoded.ok()) continue;
    ++decoded_ok;
    // A model that decodes is canonical: it re-encodes to the same bytes.
    EXPECT_EQ(EncodeModel(*decoded), input) << i;
  }
  EXPECT_GT(decoded_ok, 0);  // Flips inside tensor data still decode.
}

TEST(ModelCodecTest, MiniFuzz_LossyMutationsDecodeOrFailCleanly) {
  std::mt19937 rng(20240612);
  int decoded_ok = 0;
  for (const std::string& valid : LossyEncodings()) {
    for (int i = 0; i < 1000; ++i) {
      std::string input = Mutate(valid, rng);
      if (i % 3 == 0) input = Mutate(input, rng);
      absl::StatusOr<ModelState> decoded = DecodeModel(input, SmallLimits());
      ModelDecoder decoder(SmallLimits());
      absl::Status streamed;
      for (size_t at = 0; at < input.size() && streamed.ok(); at += 5) {
        streamed = decoder.Feed(absl::string_view(input).substr(at, 5));
      }
      absl::StatusOr<ModelState> finished = decoder.Finish();
      ASSERT_EQ(decoded.ok(), finished.ok()) << i;
      if (!decoded.ok()) continue;
      ++decoded_ok;
      EXPECT_EQ(EncodeModel(*decoded), EncodeModel(*finished)) << i;
    }
  }
  EXPECT_GT(decoded_ok, 0);
}

// A model shaped like `model` whose float32 values are all 99 (stale
// buffers from an earlier update).
ModelState Dirty(const ModelState& model) {
  ModelState out = model.Clone();
  for (TensorBuffer& t : out.mutable_tensors()) {
    if (t.dtype() != DType::kFloat32) continue;
    for (float& v : t.mutable_floats()) v = 99;
  }
  return out;
}

TEST(ModelCodecTest, Recycle_DecodesIntoTheSpareBuffers) {
  ModelState model = SmallModel();
  model.Add(Floats("big", {256, 256}));  // 256 KiB, beyond any bookkeeping.
  const std::string bytes = EncodeModel(model);
  ModelState spare = Dirty(model);
  std::vector<const void*> buffers;
  for (const TensorBuffer& t : spare.tensors()) buffers.push_back(t.data());
  ModelDecoder decoder({}, SchemaOf(model));
  decoder.Recycle(std::move(spare));
  absl::StatusOr<ModelState> decoded;
  const size_t largest = LargestAllocationDuring([&] {
    ASSERT_TRUE(decoder.Feed(bytes).ok());
    decoded = decoder.Finish();
  });
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameModel(model, *decoded);
  for (size_t i = 0; i < decoded->size(); ++i) {
    if (decoded->tensor(i).num_bytes() == 0) continue;
    EXPECT_EQ(decoded->tensor(i).data(), buffers[i])
        << decoded->tensor(i).name();
  }
  EXPECT_LT(largest, model.Find("big")->num_bytes());  // Not allocated.
}

TEST(ModelCodecTest, Recycle_TopKZeroesWhatItDoesNotSend) {
  EncodingOptions options;
  options.kind = UpdateEncoding::kTopK;
  options.topk_fraction = 0.2;
  const std::string bytes = EncodeModel(*EncodeForWire(LossyModel(), options));
  const absl::StatusOr<ModelState> fresh = DecodeModel(bytes);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  ModelDecoder decoder;
  decoder.Recycle(Dirty(LossyModel()));
  ASSERT_TRUE(decoder.Feed(bytes).ok());
  absl::StatusOr<ModelState> recycled = decoder.Finish();
  ASSERT_TRUE(recycled.ok()) << recycled.status();
  ExpectSameModel(*fresh, *recycled);
}

TEST(ModelCodecTest, Recycle_MismatchedSparesAreNotUsed) {
  const ModelState model = SmallModel();
  ModelState spare;
  spare.Add(Floats("fc1.weight", {4, 3}));  // Other shape.
  spare.Add(Floats("other", {4}));          // Other name.
  const void* wrong_shape = spare.tensor(0).data();
  ModelDecoder decoder;
  decoder.Recycle(std::move(spare));
  ASSERT_TRUE(decoder.Feed(EncodeModel(model)).ok());
  absl::StatusOr<ModelState> decoded = decoder.Finish();
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameModel(model, *decoded);
  EXPECT_NE(decoded->tensor(0).data(), wrong_shape);
}

TEST(ModelCodecTest, Recycle_LimitsStillApply) {
  const ModelState model = SmallModel();
  DecodeLimits limits;
  limits.max_decoded_bytes = 16;  // Less than fc1.weight.
  ModelDecoder decoder(limits);
  decoder.Recycle(model.Clone());
  EXPECT_EQ(decoder.Feed(EncodeModel(model)).code(),
            absl::StatusCode::kResourceExhausted);
}

// Decodes feeding `chunk` bytes at a time.
absl::StatusOr<ModelState> DecodeInChunks(absl::string_view bytes,
                                          size_t chunk) {
  ModelDecoder decoder;
  while (!bytes.empty()) {
    const size_t n = std::min(chunk, bytes.size());
    absl::Status fed = decoder.Feed(bytes.substr(0, n));
    if (!fed.ok()) return fed;
    bytes.remove_prefix(n);
  }
  return decoder.Finish();
}

TEST(ModelCodecTest, RawFloatsCheckedWhileDecoded_NonFiniteNeverMarked) {
  ModelState model;
  model.Add(Floats("w", {37, 5}));
  model.Add(Floats("b", {5}));
  model.Add(Int64s("n", {3}));
  const std::string bytes = EncodeModel(model);
  for (size_t chunk : {1u, 3u, 7u, 4096u}) {  // Floats split across chunks.
    absl::StatusOr<ModelState> decoded = DecodeInChunks(bytes, chunk);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(decoded->tensor(0).known_finite()) << chunk;
    EXPECT_TRUE(decoded->tensor(1).known_finite()) << chunk;
    EXPECT_TRUE(CheckFinite(*decoded).ok());
  }
  // A NaN in any position, the last byte of a float in a later chunk.
  for (int64_t at : {0, 1, 92, 184}) {
    ModelState bad = model.Clone();
    bad.mutable_tensor(0).mutable_floats()[at] =
        std::numeric_limits<float>::quiet_NaN();
    for (size_t chunk : {3u, 4096u}) {
      absl::StatusOr<ModelState> decoded =
          DecodeInChunks(EncodeModel(bad), chunk);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_FALSE(decoded->tensor(0).known_finite()) << at;
      EXPECT_TRUE(decoded->tensor(1).known_finite());
      EXPECT_THAT(CheckFinite(*decoded).message(),
                  HasSubstr(absl::StrCat("'w' element ", at, " is nan")));
    }
  }
}

TEST(ModelCodecTest, LossyTensors_NotMarkedFinite_CheckedLater) {
  EncodingOptions options;
  options.kind = UpdateEncoding::kFp16;
  ModelState model;
  model.Add(Floats("w", {4, 4}));
  absl::StatusOr<ModelState> decoded =
      DecodeModel(EncodeModel(*EncodeForWire(model, options)));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_FALSE(decoded->tensor(0).known_finite());
}

}  // namespace
}  // namespace fedge
