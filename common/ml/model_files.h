// Model files as fedge writes them for deployment tools: a model in the
// canonical encoding (common/model_codec.h, e.g. the coordinator's
// <state_dir>/final_model.fedge) and its spec beside it, a textproto
// fedge.v1.ModelSpecProto (final_model.spec). Also a NumPy .npy writer, for
// handing examples and logits to other runtimes.
//
// Torch-free. Stateless functions; thread-safe.
#ifndef FEDGE_COMMON_ML_MODEL_FILES_H_
#define FEDGE_COMMON_ML_MODEL_FILES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/ml/model_spec.h"
#include "common/tensor_buffer.h"

namespace fedge::ml {

// The spec that goes with a model file: "dir/m.fedge" -> "dir/m.spec";
// another name gets ".spec" appended.
std::string DefaultSpecPath(const std::string& model_path);

// Reads a textproto ModelSpecProto. NOT_FOUND when the file cannot be read;
// INVALID_ARGUMENT, naming the file (and line), when it does not parse, has
// no input_shape or fewer than 2 classes, or names a zoo model the zoo
// cannot build (CheckModelSpec). A "torchscript" spec keeps the archive's
// SHA-256 and size; the caller sets torchscript_path and verifies it.
absl::StatusOr<ModelSpec> ReadSpecFile(const std::string& path);

// Writes `spec` as a textproto ModelSpecProto, atomically (for a
// "torchscript" spec, its SHA-256 and size, not its path). File errors
// (common/file_util.h ErrnoStatus).
absl::Status WriteSpecFile(const std::string& path, const ModelSpec& spec);

// Reads and decodes a model file (any encoding). File errors, or the
// decoder's INVALID_ARGUMENT / RESOURCE_EXHAUSTED, naming the file.
absl::StatusOr<ModelState> ReadModelFile(const std::string& path);

// The weights a federation starts from: `initial` (the architecture's
// own), or the model file `initial_weights_path` names when it is set, which
// must have initial's tensors (names, dtypes, shapes, order). Errors name
// the field, the file and the tensor.
absl::StatusOr<ModelState> InitialWeights(
    const std::string& initial_weights_path, ModelState initial);

// Writes `state` in the raw canonical encoding, atomically.
absl::Status WriteModelFile(const std::string& path, const ModelState& state);

// Writes `state` to `path` (WriteModelFile) and `spec` beside it, at
// DefaultSpecPath(path) (WriteSpecFile): a model file fedge-export and
// fedge inspect can read on its own, as the coordinator's final_model.fedge
// and final_model.spec. File errors naming the file.
absl::Status WriteModelWithSpec(const std::string& path,
                                const ModelState& state, const ModelSpec& spec);

// Writes `state` in the canonical encoding (common/model_codec.h) with each
// float32 tensor that is mostly zeros stored as its non-zeros (the top-k
// encoding, 8 bytes per non-zero) when that is smaller than raw; any
// decoder reads it back to the same dense values. Atomic; file errors.
absl::Status WriteSparseModelFile(const std::string& path,
                                  const ModelState& state);

// Size of the file at `path` in bytes; ErrnoStatus errors.
absl::StatusOr<int64_t> FileSize(const std::string& path);

// Writes a float32 array of `shape` (C order) as NumPy .npy (format 1.0),
// atomically. INVALID_ARGUMENT when values.size() is not the shape's
// element count.
absl::Status WriteNpy(const std::string& path, absl::Span<const int64_t> shape,
                      absl::Span<const float> values);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_MODEL_FILES_H_
