// Throughput of the canonical model encoding on a 40 MB float32 model:
// whole-string encoding, chunked encoding, streaming decoding and the
// SHA-256 identity. Figures are bytes of encoding per second; compare with
// BM_Memcpy (copy into a warm buffer, as ModelEncoder does) and
// BM_MemcpyIntoNewBuffer (copy into fresh memory, as EncodeModel and the
// decoder must).
//
// First, one line per wire encoding of a 10M-parameter model (random
// normal values, like a delta):
//   encoding=NAME encode_mb_s=X decode_mb_s=Y bytes=Z
// encode = EncodeForWire + streaming it through ModelEncoder in 1 MiB
// chunks; decode = ModelDecoder fed 1 MiB chunks, to the float32 model.
// Rates are in MB (10^6 bytes) of float32 model per second, so encodings
// compare directly; bytes is the size on the wire. Each figure is the best
// of 5 runs. Then the Google Benchmark cases (--benchmark_filter=... as
// usual).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/checksum.h"
#include "common/model_codec.h"
#include "common/random.h"
#include "common/update_codec.h"

namespace fedge {
namespace {

constexpr size_t kChunkBytes = 1 << 20;

// About 40 MB: an MLP-like list of weights and biases.
const ModelState& FortyMegabyteModel() {
  static const ModelState* model = [] {
    auto* m = new ModelState();
    const std::vector<std::pair<std::string, std::vector<int64_t>>> specs = {
        {"fc1.weight", {4096, 2048}}, {"fc1.bias", {4096}},
        {"fc2.weight", {1024, 1536}}, {"fc2.bias", {1024}},
        {"fc3.weight", {10, 1024}},   {"fc3.bias", {10}}};
    for (const auto& [name, shape] : specs) {
      TensorBuffer t = *TensorBuffer::Zeros(name, DType::kFloat32, shape);
      absl::Span<float> v = t.mutable_floats();
      for (size_t i = 0; i < v.size(); ++i) v[i] = 1e-3f * (i % 1000);
      m->Add(std::move(t));
    }
    return m;
  }();
  return *model;
}

void SetBytes(benchmark::State& state, int64_t bytes_per_iteration) {
  state.SetBytesProcessed(state.iterations() * bytes_per_iteration);
}

void BM_Memcpy(benchmark::State& state) {
  const std::string source = EncodeModel(FortyMegabyteModel());
  std::string target(source.size(), '\0');
  for (auto _ : state) {
    std::memcpy(&target[0], source.data(), source.size());
    benchmark::DoNotOptimize(target.data());
  }
  SetBytes(state, static_cast<int64_t>(source.size()));
}
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond);

// The bound for anything that produces a new model-sized buffer: the fresh
// pages' faults dominate.
void BM_MemcpyIntoNewBuffer(benchmark::State& state) {
  const std::string source = EncodeModel(FortyMegabyteModel());
  for (auto _ : state) {
    std::unique_ptr<char[]> target(new char[source.size()]);
    std::memcpy(target.get(), source.data(), source.size());
    benchmark::DoNotOptimize(target.get());
  }
  SetBytes(state, static_cast<int64_t>(source.size()));
}
BENCHMARK(BM_MemcpyIntoNewBuffer)->Unit(benchmark::kMillisecond);

void BM_EncodeModel(benchmark::State& state) {
  const ModelState& model = FortyMegabyteModel();
  for (auto _ : state) {
    std::string bytes = EncodeModel(model);
    benchmark::DoNotOptimize(bytes.data());
  }
  SetBytes(state, EncodedSize(model));
}
BENCHMARK(BM_EncodeModel)->Unit(benchmark::kMillisecond);

void BM_ModelEncoderChunks(benchmark::State& state) {
  const ModelState& model = FortyMegabyteModel();
  std::string chunk;
  for (auto _ : state) {
    ModelEncoder encoder(model, kChunkBytes);
    while (encoder.Next(&chunk)) benchmark::DoNotOptimize(chunk.data());
  }
  SetBytes(state, EncodedSize(model));
}
BENCHMARK(BM_ModelEncoderChunks)->Unit(benchmark::kMillisecond);

void BM_ModelDecoderChunks(benchmark::State& state) {
  const std::string bytes = EncodeModel(FortyMegabyteModel());
  const absl::string_view view(bytes);
  for (auto _ : state) {
    ModelDecoder decoder;
    for (size_t at = 0; at < view.size(); at += kChunkBytes) {
      if (!decoder.Feed(view.substr(at, kChunkBytes)).ok()) {
        state.SkipWithError("decode failed");
      }
    }
    absl::StatusOr<ModelState> model = decoder.Finish();
    if (!model.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(model);
  }
  SetBytes(state, static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_ModelDecoderChunks)->Unit(benchmark::kMillisecond);

void BM_ModelDigest(benchmark::State& state) {
  const ModelState& model = FortyMegabyteModel();
  for (auto _ : state) {
    Sha256Digest digest = ModelDigest(model);
    benchmark::DoNotOptimize(digest);
  }
  SetBytes(state, EncodedSize(model));
}
BENCHMARK(BM_ModelDigest)->Unit(benchmark::kMillisecond);

// The uploads' checksum (common/checksum.h) over the same bytes.
void BM_ModelChecksum(benchmark::State& state) {
  const ModelState& model = FortyMegabyteModel();
  for (auto _ : state) {
    Checksum128 checksum = ModelChecksum(model);
    benchmark::DoNotOptimize(checksum);
  }
  SetBytes(state, EncodedSize(model));
}
BENCHMARK(BM_ModelChecksum)->Unit(benchmark::kMillisecond);

// About 10M parameters (40 MB) of normally distributed values.
ModelState TenMillionParameterDelta() {
  ModelState m;
  const std::vector<std::pair<std::string, std::vector<int64_t>>> specs = {
      {"fc1.weight", {4000, 2000}},
      {"fc1.bias", {4000}},
      {"fc2.weight", {1000, 2000}},
      {"fc2.bias", {1000}}};
  DeterministicRng rng(1);
  for (const auto& [name, shape] : specs) {
    TensorBuffer t = *TensorBuffer::Zeros(name, DType::kFloat32, shape);
    for (float& v : t.mutable_floats()) {
      v = static_cast<float>(rng.Normal() * 1e-3);
    }
    m.Add(std::move(t));
  }
  return m;
}

// Best of `runs` wall times of fn(), in seconds.
template <typename Fn>
double BestSeconds(int runs, Fn fn) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    const std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - start;
    best = std::min(best, took.count());
  }
  return best;
}

void PrintEncodingLine(const ModelState& model, const std::string& name,
                       const EncodingOptions& options) {
  std::string wire;  // Kept for the decode runs.
  const double encode = BestSeconds(5, [&] {
    absl::StatusOr<EncodedModel> encoded = EncodeForWire(model, options);
    if (!encoded.ok()) std::abort();
    ModelEncoder encoder(*encoded, kChunkBytes);
    std::string chunk;
    wire.clear();
    while (encoder.Next(&chunk)) wire += chunk;
  });
  const absl::string_view view(wire);
  const double decode = BestSeconds(5, [&] {
    ModelDecoder decoder;
    for (size_t at = 0; at < view.size(); at += kChunkBytes) {
      if (!decoder.Feed(view.substr(at, kChunkBytes)).ok()) std::abort();
    }
    absl::StatusOr<ModelState> decoded = decoder.Finish();
    if (!decoded.ok()) std::abort();
    benchmark::DoNotOptimize(decoded);
  });
  const double mb = static_cast<double>(model.NumBytes()) / 1e6;
  std::printf("encoding=%s encode_mb_s=%.0f decode_mb_s=%.0f bytes=%zu\n",
              name.c_str(), mb / encode, mb / decode, wire.size());
}

void PrintEncodingLines() {
  const ModelState model = TenMillionParameterDelta();
  std::printf("model_params=%lld model_bytes=%zu\n",
              static_cast<long long>(model.NumElements()), model.NumBytes());
  // Bounds: copying the model into fresh memory (page faults included)
  // and into a warm buffer.
  const size_t bytes = model.NumBytes();
  const std::string source(bytes, '\1');
  std::string warm(bytes, '\0');
  const double fresh_copy = BestSeconds(5, [&] {
    std::unique_ptr<char[]> target(new char[bytes]);
    std::memcpy(target.get(), source.data(), bytes);
    benchmark::DoNotOptimize(target.get());
  });
  const double warm_copy = BestSeconds(5, [&] {
    std::memcpy(&warm[0], source.data(), bytes);
    benchmark::DoNotOptimize(warm.data());
  });
  std::printf("baseline=memcpy_new_buffer mb_s=%.0f\n",
              static_cast<double>(bytes) / 1e6 / fresh_copy);
  std::printf("baseline=memcpy_warm mb_s=%.0f\n",
              static_cast<double>(bytes) / 1e6 / warm_copy);
  struct Case {
    const char* name;
    UpdateEncoding kind;
    bool per_channel;
    bool stochastic;
    double topk_fraction;
  };
  for (const Case& c : std::vector<Case>{
           {"fp32", UpdateEncoding::kFp32, false, true, 0},
           {"fp16", UpdateEncoding::kFp16, false, true, 0},
           {"int8", UpdateEncoding::kInt8, false, true, 0},
           {"int8_nearest", UpdateEncoding::kInt8, false, false, 0},
           {"int8_per_channel", UpdateEncoding::kInt8, true, true, 0},
           {"topk_0.1", UpdateEncoding::kTopK, false, true, 0.1},
           {"topk_0.01", UpdateEncoding::kTopK, false, true, 0.01}}) {
    EncodingOptions options;
    options.kind = c.kind;
    options.per_channel = c.per_channel;
    options.stochastic_rounding = c.stochastic;
    if (c.topk_fraction > 0) options.topk_fraction = c.topk_fraction;
    PrintEncodingLine(model, c.name, options);
  }
  std::fflush(stdout);
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  fedge::PrintEncodingLines();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
