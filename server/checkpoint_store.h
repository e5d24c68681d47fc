// Crash-safe checkpoints of the coordinator: the global model, the engine's
// progress and opaque extra state (e.g. the strategy's), one file per model
// version in a directory that keeps the newest `keep` of them.
//
// A checkpoint is written to a temporary file in the same directory,
// fsynced, renamed to ckpt-<model_version, 8 digits>.fedge and the directory
// fsynced, so after a crash a checkpoint file is either complete or absent.
// Files are verified on load (magic, sizes, the SHA-256s, the model
// decodes); a corrupt one is skipped in favour of an older one.
//
// File layout (little-endian):
//   magic "FEDGECK1" (8), uint32 format_version (2),
//   int64 model_version, int64 next_round, int64 completed_rounds,
//   uint64 extra_len, uint64 model_len,
//   the SHA-256 (32 bytes) of the model's canonical encoding,
//   extra bytes, the model's canonical encoding (common/model_codec.h),
//   SHA-256 (32 bytes) of everything before it but the model's encoding
//   (which its own digest in the header covers).
// So a coordinator that hashed its model once to publish it does not hash
// it again to save it. Format 1 (no model digest; the final SHA-256 over
// everything before it) is still read.
//
// Checkpoints are ordered by model_version. The store assumes it is the only
// writer of its directory. Thread-compatible: the coordinator serializes
// calls.
#ifndef FEDGE_SERVER_CHECKPOINT_STORE_H_
#define FEDGE_SERVER_CHECKPOINT_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_codec.h"
#include "common/tensor_buffer.h"

namespace fedge {

struct Checkpoint {
  int64_t model_version = 0;  // Round that produced the model (0 = initial).
  int64_t next_round = 1;  // Engine progress, for RoundEngine::RestoreProgress.
  int completed_rounds = 0;
  ModelState model;
  std::string extra;  // Opaque bytes (e.g. serialized strategy state).
};

struct CheckpointStoreOptions {
  std::string dir;           // Created (with parents) when missing.
  int keep = 3;              // Newest checkpoints kept; >= 1.
  DecodeLimits limits = {};  // Bounds on the model read back by LoadNewest.
};

class CheckpointStore {
 public:
  // Creates options.dir if needed. INVALID_ARGUMENT for keep < 1 or an
  // empty dir; UNAVAILABLE when the directory cannot be created.
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Create(
      CheckpointStoreOptions options);

  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  // Atomically writes ckpt-<model_version>.fedge (replacing one of the same
  // version). The model is streamed to the file, never copied whole. Older
  // checkpoints stay until PruneOld(). Returns the file's path.
  // INVALID_ARGUMENT for a negative model_version; UNAVAILABLE on I/O
  // errors, in which case no file is left under the final name (an older
  // checkpoint of the same version may remain).
  absl::StatusOr<std::string> Save(const Checkpoint& checkpoint);
  // The same, with the model given separately (checkpoint.model is
  // ignored), so a caller that shares its model need not copy it. The
  // model's SHA-256 (ModelDigest) is computed on a second thread while the
  // file is written, and stored in `model_sha256` when not null.
  absl::StatusOr<std::string> Save(const Checkpoint& checkpoint,
                                   const ModelState& model,
                                   Sha256Digest* model_sha256 = nullptr);
  // The same, with the SHA-256 of the model's canonical encoding already
  // known (ModelDigest(model): not computed again; a wrong one makes the
  // file fail verification when read).
  absl::StatusOr<std::string> Save(const Checkpoint& checkpoint,
                                   const ModelState& model,
                                   const Sha256Digest& model_sha256);

  // The newest checkpoint that verifies, or std::nullopt when there is none.
  // Corrupt or truncated files are skipped, logged with FEDGE_LOG(WARNING)
  // and appended to `skipped` (when not null) as "<path>: <reason>"; stray
  // temporary files are deleted. UNAVAILABLE when the directory or a file
  // cannot be read (an I/O error is not proof of corruption).
  absl::StatusOr<std::optional<Checkpoint>> LoadNewest(
      std::vector<std::string>* skipped = nullptr);

  // Reads and verifies one checkpoint file (e.g. for `fedge inspect`); a
  // canonical file name must agree with the version inside. DATA_LOSS when
  // it is corrupt, UNAVAILABLE when it cannot be read.
  static absl::StatusOr<Checkpoint> ReadFile(const std::string& path,
                                             const DecodeLimits& limits = {});

  // Paths of the checkpoint files, oldest (lowest version) first. Empty when
  // the directory cannot be read.
  std::vector<std::string> ListCheckpoints() const;

  // Deletes the oldest checkpoints beyond `keep` (a failure is logged).
  // Apart from Save so that a new checkpoint can be announced as soon as it
  // is durable: deleting a model-size file can take milliseconds more.
  void PruneOld();

 private:
  explicit CheckpointStore(CheckpointStoreOptions options)
      : options_(std::move(options)) {}
  std::string PathFor(int64_t model_version) const;
  // Save, the model's digest given by `model_sha256` once the model's bytes
  // are written.
  absl::StatusOr<std::string> SaveWith(
      const Checkpoint& checkpoint, const ModelState& model,
      absl::FunctionRef<Sha256Digest()> model_sha256);
  void RemoveTempFiles();

  const CheckpointStoreOptions options_;
};

}  // namespace fedge

#endif  // FEDGE_SERVER_CHECKPOINT_STORE_H_
