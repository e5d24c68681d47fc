#include "common/model_codec.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <vector>

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
}  // namespace

void* operator new(size_t size) {
  if (g_track_allocations.load(std::memory_order_relaxed) &&
      size > g_largest_allocation.load(std::memory_order_relaxed)) {
    g_largest_allocation.store(size, std::memory_order_relaxed);
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
  EXPECT_THAT(StreamDecode(Prefix(1) + TensorHeader("w", 1, {1}, 4, 1))
                  .status()
                  .message(),
              HasSubstr("unknown encoding 1"));
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

}  // namespace
}  // namespace fedge
