// Pruning a trained model for deployment, without LibTorch: global
// unstructured magnitude pruning, and structured channel pruning by L1 norm.
//
// Prunable weights are the float32 tensors of rank >= 2 whose names end in
// ".weight": the weights of convolutions and linear layers. Biases and batch
// norm (rank 1) are never pruned by magnitude.
//
// Unstructured: the `sparsity` share of all prunable elements with the
// smallest magnitudes, over the whole model (one global threshold), is set
// to zero (ties broken by tensor order and index, so exactly
// round(sparsity * count) are zero). Zeros already present count first.
//
// Structured: in each prunable layer (ChannelGroups) the `sparsity` share of
// output channels (neurons) with the smallest L1 norm of their weights is
// removed, keeping at least one; a layer's channel is its weight's slice
// along dim 0 together with everything that only serves it (bias, batch
// norm scale and shift, the following depthwise filter) and the slice of
// the consumer's weight that reads it. The classifier's outputs are never
// pruned. Where the zoo spec can express the narrower network ("2nn" and
// "mlp" become an "mlp" with smaller hidden_units) the channels are removed
// and the spec changes; for "cnn" and "mobile_cnn", whose widths the zoo
// fixes, they are zeroed in place (so the network computes exactly what the
// narrower one would, but its files keep their size) and
// PruneResult::note says so. Other architectures: INVALID_ARGUMENT.
//
// A zeroed element stays zero while fine-tuning keeps its mask
// (PruningMask, compress.h), and the sparse file encoding
// (model_files.h WriteSparseModelFile) stores only the non-zeros. Pure
// functions; thread-safe.
#ifndef FEDGE_COMMON_ML_PRUNE_H_
#define FEDGE_COMMON_ML_PRUNE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ml/model_spec.h"
#include "common/tensor_buffer.h"

namespace fedge::ml {

// True for the float32 tensors of rank >= 2 named "*.weight".
bool IsPrunableWeight(const TensorBuffer& t);

struct PruneOptions {
  // Unstructured: share of prunable elements set to zero; structured:
  // share of each layer's channels removed. In [0, 1).
  double sparsity = 0.8;
  bool structured = false;
};

struct PruneResult {
  ModelSpec spec;    // The input's, or the narrower "mlp".
  ModelState state;  // Same schema as the input unless channels were removed.
  // Channels removed or zeroed, of those in prunable layers (structured).
  int64_t channels_pruned = 0;
  int64_t channels_total = 0;
  std::string note;  // What was done, when it is not obvious ("" else).
};

// Prunes `state` of the network `spec` names. INVALID_ARGUMENT for a
// sparsity outside [0, 1), a state that does not fit the spec (names or
// shapes), no prunable weight, or structured pruning of an architecture it
// does not support (listing those it does).
absl::StatusOr<PruneResult> Prune(const ModelSpec& spec,
                                  const ModelState& state,
                                  const PruneOptions& options);

// One channel of a layer is element `c` along `dim` (c * block to
// (c + 1) * block - 1 when several elements belong to it, as a flattened
// feature map's columns do) of each of these tensors.
struct ChannelSlice {
  std::string tensor;
  int dim = 0;
  int64_t block = 1;
};
struct ChannelGroup {
  std::string layer;  // The layer whose output channels these are.
  int64_t channels = 0;
  // slices[0] is the layer's weight (dim 0): the L1 norm of a channel's
  // slice of it scores the channel.
  std::vector<ChannelSlice> slices;
  // True when the layer can be narrowed in the spec ("2nn", "mlp").
  bool removable = false;
};

// The prunable layers of `spec` and what belongs to their channels: "2nn"
// and "mlp" (hidden layers), "cnn" (conv1, conv2, fc1) and "mobile_cnn"
// (stem, pw1, pw2, pw3). INVALID_ARGUMENT for the other architectures.
absl::StatusOr<std::vector<ChannelGroup>> ChannelGroups(const ModelSpec& spec);

// The mask that fine-tuning keeps (compress.h FinetuneMasked): a float32
// tensor per tensor of `state`, same names and shapes, 0 where an element
// was pruned and must stay zero, 1 elsewhere. Pruned: the zeros of the
// prunable weights and, for architectures with ChannelGroups, every element
// of a channel whose weight slice is all zeros (its bias, batch norm,
// depthwise filter and consumer slice too). Nothing else is masked, so a
// batch norm shift that happens to be 0 keeps training. INVALID_ARGUMENT
// when a zoo state does not fit its spec.
absl::StatusOr<ModelState> PruningMask(const ModelSpec& spec,
                                       const ModelState& state);

// For deployment files (export.h): `state` without the channels of "cnn"
// layers whose weights and bias are all zero (what structured pruning
// leaves): such a channel outputs zeros, so removing it, and the slice of
// the next layer that reads it, computes the same logits with narrower
// tensors (same names). The zoo's Net cannot hold them, but a traced
// TorchScript module, whose operations take their sizes from the tensors,
// can. `removed` is set to the number of channels removed; for other
// architectures, or without such channels, the state is returned as it is.
// INVALID_ARGUMENT when the state does not fit the spec.
absl::StatusOr<ModelState> RemoveZeroChannels(const ModelSpec& spec,
                                              const ModelState& state,
                                              int64_t* removed);

// What a model holds and costs, counting zeros.
struct SparsityStats {
  // Trainable elements (batch norm's running statistics and counters are
  // not parameters) and those of them that are not zero.
  int64_t parameters = 0;
  int64_t nonzero_parameters = 0;
  // Prunable weight elements and the zeros among them.
  int64_t prunable = 0;
  int64_t prunable_zeros = 0;
  // Multiply-accumulates per example (model_cost.h), dense (of the
  // tensors as they are: a layer narrowed by RemoveZeroChannels costs
  // less), and counting only non-zero weights (what a sparse kernel would
  // do); -1 when unknown (a TorchScript archive's network).
  int64_t macs = -1;
  int64_t nonzero_macs = -1;

  double weight_sparsity() const {
    return prunable > 0 ? static_cast<double>(prunable_zeros) / prunable : 0;
  }
};

// Statistics of `state` for the network `spec` names. For a "torchscript"
// spec, parameters are the float32 tensors not named *.running_mean or
// *.running_var. INVALID_ARGUMENT when a zoo state does not fit its spec.
absl::StatusOr<SparsityStats> MeasureSparsity(const ModelSpec& spec,
                                              const ModelState& state);

}  // namespace fedge::ml

#endif  // FEDGE_COMMON_ML_PRUNE_H_
