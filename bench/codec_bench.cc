// Throughput of the canonical model encoding on a 40 MB float32 model:
// whole-string encoding, chunked encoding, streaming decoding and the
// SHA-256 identity. Figures are bytes of encoding per second; compare with
// BM_Memcpy (copy into a warm buffer, as ModelEncoder does) and
// BM_MemcpyIntoNewBuffer (copy into fresh memory, as EncodeModel and the
// decoder must).
#include <cstring>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "common/model_codec.h"

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

}  // namespace
}  // namespace fedge
