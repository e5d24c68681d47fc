// ModelCache: the agent's state directory. It keeps the last global models
// on disk (so a task on a cached version needs no download, and `fedge-agent
// predict` works with no coordinator reachable), the spec of the model the
// federation trains, and the agent's identity.
//
// Layout of <state_dir>:
//   LOCK                        held (flock) while an agent runs
//   agent_id                    the agent's self-chosen id
//   models/model-<v>.fedge      canonical encoding of global version <v>
//   models/model-<v>.sha256     its SHA-256, lower-case hex
//   models/model-<v>.sig        the coordinator's signature of it, when it
//                               came signed: the key id, then the Ed25519
//                               signature in hex, one line each
//   models/model-spec.binpb     v1::ModelSpecProto of the cached models
// Every file is written atomically (temporary file, fsync, rename). A model
// is only ever returned after its bytes hashed to the recorded SHA-256;
// files that do not verify are deleted (read-write mode) and skipped.
//
// Thread-compatible: one agent loop owns the cache. Other processes may
// read the same directory in read-only mode meanwhile.
#ifndef FEDGE_EDGE_AGENT_MODEL_CACHE_H_
#define FEDGE_EDGE_AGENT_MODEL_CACHE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/file_util.h"
#include "common/model_codec.h"
#include "common/model_signature.h"
#include "common/tensor_buffer.h"
#include "fedge/v1/federation.pb.h"

namespace fedge {

struct ModelCacheOptions {
  // Root of the agent's state (created if missing). Required.
  std::string state_dir;
  // Model versions kept on disk (the newest ones); at least 1.
  int keep_versions = 2;
  // Read-only: take no lock, write and delete nothing (for `predict` while
  // an agent may be running).
  bool read_only = false;
  // Limits for decoding cached files.
  DecodeLimits limits;
  // Bytes read or encoded at a time when hashing, reading and writing
  // cached models and state (the size of the I/O buffer); > 0. Fuzzers use
  // a few KiB: each read allocates a buffer of this size.
  size_t io_chunk_bytes = size_t{1} << 20;
};

// A model read back from the cache.
struct CachedModel {
  int64_t version = -1;
  std::string sha256_hex;
  ModelState model;
  // The signature kept with it (empty when it came unsigned, or its .sig
  // file is missing or unreadable). Not verified by the cache: the caller
  // checks it with its ModelVerifier against version, spec and sha256_hex.
  ModelSignature signature;
};

class ModelCache {
 public:
  // Opens (creating in read-write mode) the state directory, locks it, and
  // indexes the cached versions whose files verify.
  // INVALID_ARGUMENT for an empty state_dir, keep_versions < 1 or
  // io_chunk_bytes == 0;
  // FAILED_PRECONDITION when another agent holds the directory, or when
  // state_dir (read-only) is not a directory; NOT_FOUND when a read-only
  // directory does not exist; PERMISSION_DENIED / INTERNAL
  // for file-system errors (the message names the path).
  static absl::StatusOr<std::unique_ptr<ModelCache>> Open(
      ModelCacheOptions options);

  ModelCache(const ModelCache&) = delete;
  ModelCache& operator=(const ModelCache&) = delete;

  // How a model arrived: the encoding it was downloaded in ("" or "fp32":
  // raw; "fp16") and, when known, the SHA-256 (hex) of that encoding (the
  // caller verified those very bytes as they arrived).
  struct Download {
    std::string encoding;
    std::string sha256_hex;
    // The coordinator's signature of the model, kept beside it (none when
    // empty).
    ModelSignature signature;
  };
  // Stores global model `version` (replacing a cached copy of the same
  // version) in the encoding it was downloaded in, so that its hash is the
  // one the coordinator announced, then deletes all but the newest
  // keep_versions versions. A known hash is recorded without hashing the
  // bytes again (a wrong one makes the file fail verification when read,
  // and it is dropped). Returns the SHA-256 (hex) of the file.
  // FAILED_PRECONDITION in read-only mode; INVALID_ARGUMENT for an unknown
  // encoding; file-system errors naming the path.
  absl::StatusOr<std::string> Put(int64_t version, const ModelState& model,
                                  const Download& as = {});

  // Cached `version`, after its bytes verified against the recorded hash
  // and, when not empty, against `expected_sha256_hex`.
  // NOT_FOUND when the version is not cached or the cached copy has another
  // hash than expected (a different model under the same version);
  // DATA_LOSS when the file no longer verifies or decodes (it is dropped).
  absl::StatusOr<ModelState> Get(int64_t version,
                                 absl::string_view expected_sha256_hex);

  // The newest cached model that verifies (older ones are tried when the
  // newest is damaged). NOT_FOUND when none does.
  absl::StatusOr<CachedModel> Latest();

  // True when `version` is cached with SHA-256 `sha256_hex` (index only;
  // Get() re-verifies the bytes).
  bool Has(int64_t version, absl::string_view sha256_hex) const;
  // Forgets (and deletes, in read-write mode) every version newer than
  // `version`: the coordinator's history restarted and they are not its.
  void DropNewerThan(int64_t version);

  // Newest indexed version, -1 when none.
  int64_t LatestVersion() const;
  // Indexed versions, ascending.
  std::vector<int64_t> Versions() const;

  // Records the spec of the models the federation trains. When it differs
  // from the recorded one, the cached models (of another model) are
  // deleted. FAILED_PRECONDITION in read-only mode.
  absl::Status PutSpec(const v1::ModelSpecProto& spec);
  // The recorded spec. NOT_FOUND when none; DATA_LOSS when unreadable.
  absl::StatusOr<v1::ModelSpecProto> GetSpec() const;

  // The stored agent id. NOT_FOUND when none was stored.
  absl::StatusOr<std::string> LoadAgentId() const;
  // Stores `agent_id` (non-empty, one line). FAILED_PRECONDITION in
  // read-only mode; INVALID_ARGUMENT for an empty id or one with a newline.
  absl::Status StoreAgentId(const std::string& agent_id);

  // Agent-side algorithm state kept across rounds and restarts (SCAFFOLD's
  // control variate, error-feedback residuals): `name` ([a-z_]+) holds a
  // model-shaped state, written atomically to <state_dir>/<name>.state.
  // LoadState: NOT_FOUND when none was saved; DATA_LOSS when the file does
  // not decode (the caller starts afresh).
  absl::Status SaveState(const std::string& name, const ModelState& state);
  absl::StatusOr<ModelState> LoadState(const std::string& name) const;

  const std::string& state_dir() const { return options_.state_dir; }

 private:
  ModelCache(ModelCacheOptions options, std::unique_ptr<FileLock> lock);

  std::string ModelPath(int64_t version) const;
  std::string HashPath(int64_t version) const;
  std::string SignaturePath(int64_t version) const;
  // The signature kept with `version`; empty when none is, or its file
  // does not parse.
  ModelSignature ReadSignature(int64_t version) const;
  absl::Status CheckWritable() const;
  absl::Status IndexExistingFiles();
  absl::Status VerifyFile(int64_t version, const std::string& sha256_hex) const;
  absl::StatusOr<ModelState> ReadVerified(int64_t version,
                                          const std::string& sha256_hex) const;
  void Drop(int64_t version);
  void Prune();

  ModelCacheOptions options_;
  std::string models_dir_;
  std::unique_ptr<FileLock> lock_;  // Null in read-only mode.
  // Verified versions -> SHA-256 hex of their encoding.
  std::map<int64_t, std::string> index_;
};

}  // namespace fedge

#endif  // FEDGE_EDGE_AGENT_MODEL_CACHE_H_
