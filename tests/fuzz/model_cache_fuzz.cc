// libFuzzer entry point for the agent's state directory
// (edge_agent/model_cache.h): a damaged or hostile cache must be refused or
// dropped file by file, never crash the agent or `fedge-agent predict`.
//
// The input is:
//   a flags byte: bit 0 writes the true SHA-256 of the model file into its
//     .sha256 file (so the fuzzer gets past the hash and into the decoder),
//     else the hash record below; bit 1 opens the cache read-only; bit 2
//     also writes a stray model-<v+1>.fedge.tmp; bit 3 (read-write only)
//     runs the writers too; bit 4: a .sig record follows agent_id;
//   a version byte v (the file is models/model-<v>.fedge);
//   records (U16 length, bytes) for the .sha256 file, models/
//     model-spec.binpb, agent_id and, with bit 4, models/model-<v>.sig (the
//     coordinator's signature kept beside the model: key id, then 128 hex
//     digits);
//   the rest: the model file.
// Then ModelCache::Open indexes the directory and the harness calls every
// reader (Latest with the signature beside it, Get expecting the hash
// record, GetSpec, LoadAgentId) and, with bit 3, the writers that follow in
// the agent (PutSpec of the spec read back, Put of a new signed version,
// whose signature Latest must give back as it was written). The cache runs with
// 1 KiB I/O chunks (ModelCacheOptions::io_chunk_bytes) instead of the agent's 1
// MiB: the same code, but no 1 MiB buffer for ASan to allocate, fill and poison
// 2 to 4 times per input (which held the target to a few hundred inputs per
// second), and models over 1 KiB are read and decoded in several chunks as
// a large model is. A crash, a sanitizer report or a broken property
// (abort) is a bug.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/model_codec.h"
#include "common/model_signature.h"
#include "common/sha256.h"
#include "edge_agent/model_cache.h"
#include "fedge/v1/federation.pb.h"
#include "tests/fuzz/fuzz_util.h"

namespace fedge {
namespace {

using fuzz::Check;
using fuzz::InputReader;
using fuzz::InputWriter;

// See the header comment.
constexpr size_t kIoChunkBytes = 1 << 10;

DecodeLimits Limits() {
  DecodeLimits limits;
  limits.max_total_bytes = 1 << 20;
  limits.max_decoded_bytes = 1 << 22;
  return limits;
}

void Exercise(ModelCache& cache, int version, absl::string_view expected_hash,
              bool write) {
  const std::vector<int64_t> versions = cache.Versions();
  Check(versions.size() <= 2, "more versions indexed than keep_versions");
  absl::StatusOr<CachedModel> latest = cache.Latest();
  fuzz::Trace("Latest", latest.status());
  if (latest.ok()) {
    Check(latest->sha256_hex.size() == 64, "bad hash of a cached model");
    Check(cache.Has(latest->version, latest->sha256_hex), "Has(Latest())");
    Check(latest->signature.empty() ||
              latest->signature.signature.size() == kEd25519SignatureBytes,
          "a cached signature of the wrong size");
  }
  absl::StatusOr<ModelState> got = cache.Get(version, expected_hash);
  if (absl::IsDataLoss(got.status())) {
    Check(cache.LatestVersion() != version, "a dropped version is indexed");
  }
  absl::StatusOr<v1::ModelSpecProto> spec = cache.GetSpec();
  fuzz::Trace("GetSpec", spec.status());
  cache.LoadAgentId().status().IgnoreError();
  if (!write) return;
  if (spec.ok()) {
    Check(cache.PutSpec(*spec).ok(), "PutSpec of the recorded spec");
  }
  ModelCache::Download signed_download;
  signed_download.signature = {"0123456789abcdef",
                               std::string(kEd25519SignatureBytes, '\x5a')};
  absl::StatusOr<std::string> put =
      cache.Put(version + 1, fuzz::SmallModel(), signed_download);
  Check(put.ok(), "Put");
  Check(cache.Get(version + 1, *put).ok(), "Get after Put");
  absl::StatusOr<CachedModel> newest = cache.Latest();
  Check(newest.ok() && newest->version == version + 1 &&
            newest->signature.key_id == signed_download.signature.key_id &&
            newest->signature.signature == signed_download.signature.signature,
        "Latest after a signed Put");
  cache.DropNewerThan(version);
  Check(cache.LatestVersion() <= version, "DropNewerThan");
}

void FuzzOne(absl::string_view input) {
  static const fuzz::ScratchDir dir;
  InputReader in(input);
  const uint8_t flags = in.Byte();
  const int version = in.Byte();
  const absl::string_view hash = in.Record();
  const absl::string_view spec = in.Record();
  const absl::string_view agent_id = in.Record();
  const absl::string_view signature =
      (flags & 16) != 0 ? in.Record() : absl::string_view();
  const absl::string_view model = in.Rest();

  dir.Clear();
  const std::string name = absl::StrCat("state/models/model-", version);
  dir.WriteFile(name + ".fedge", model);
  dir.WriteFile(name + ".sha256",
                (flags & 1) != 0 ? ToHex(Sha256Of(model)) + "\n" : hash);
  dir.WriteFile("state/models/model-spec.binpb", spec);
  dir.WriteFile("state/agent_id", agent_id);
  if ((flags & 16) != 0) dir.WriteFile(name + ".sig", signature);
  if ((flags & 4) != 0) {
    dir.WriteFile(
        absl::StrCat("state/models/model-", version + 1, ".fedge.tmp"), model);
  }

  ModelCacheOptions options;
  options.state_dir = dir.Path("state");
  options.keep_versions = 2;
  options.read_only = (flags & 2) != 0;
  options.limits = Limits();
  options.io_chunk_bytes = kIoChunkBytes;
  absl::StatusOr<std::unique_ptr<ModelCache>> cache = ModelCache::Open(options);
  fuzz::Trace("Open", cache.status());
  Check(cache.ok(), "ModelCache::Open failed on a readable directory");
  Exercise(**cache, version, absl::StripAsciiWhitespace(hash),
           !options.read_only && (flags & 8) != 0);
}

std::vector<std::string> Seeds() {
  const std::string model = EncodeModel(fuzz::SmallModel());
  v1::ModelSpecProto spec;
  spec.set_architecture("mlp");
  spec.add_hidden_units(16);
  spec.add_input_shape(1);
  spec.add_input_shape(28);
  spec.add_input_shape(28);
  spec.set_num_classes(10);
  spec.set_torchscript_sha256(ToHex(Sha256Of("archive")));
  spec.set_torchscript_size_bytes(7);
  const std::string signature = absl::StrCat(
      "0123456789abcdef\n", std::string(2 * kEd25519SignatureBytes, 'c'), "\n");
  std::vector<std::string> seeds;
  for (uint8_t flags : {0, 1, 2, 3, 5, 9, 17, 19, 25}) {
    InputWriter writer;
    writer.Byte(flags)
        .Byte(3)
        .Record(ToHex(Sha256Of(model)) + "\n")
        .Record(spec.SerializeAsString())
        .Record("agent-7\n");
    if ((flags & 16) != 0) writer.Record(signature);
    seeds.push_back(writer.Bytes(model).str());
  }
  return seeds;
}

}  // namespace
}  // namespace fedge

FEDGE_FUZZ_TARGET(fedge::Seeds, fedge::FuzzOne)
