#include "common/ml/prune.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ml/model_cost.h"
#include "common/status_macros.h"

namespace fedge::ml {
namespace {

// Elements of `t` before, along and after `dim`: t viewed as
// [outer, along, inner].
struct Layout3 {
  int64_t outer = 1, along = 1, inner = 1;
};
Layout3 LayoutAlong(const TensorBuffer& t, int dim) {
  Layout3 l;
  for (int i = 0; i < static_cast<int>(t.shape().size()); ++i) {
    if (i < dim) l.outer *= t.shape()[i];
    if (i == dim) l.along = t.shape()[i];
    if (i > dim) l.inner *= t.shape()[i];
  }
  return l;
}

// Calls fn(element) for every element of channel `c` of `slice` in `data`,
// the values of `t`.
template <typename T, typename Fn>
void ForChannel(const TensorBuffer& t, T* data, const ChannelSlice& slice,
                int64_t c, Fn&& fn) {
  const Layout3 l = LayoutAlong(t, slice.dim);
  for (int64_t o = 0; o < l.outer; ++o) {
    for (int64_t a = c * slice.block; a < (c + 1) * slice.block; ++a) {
      T* row = data + (o * l.along + a) * l.inner;
      for (int64_t i = 0; i < l.inner; ++i) fn(row[i]);
    }
  }
}

// `t` with only the channels `keep` (increasing) along the slice's dim.
absl::StatusOr<TensorBuffer> KeepChannels(const TensorBuffer& t,
                                          const ChannelSlice& slice,
                                          const std::vector<int64_t>& keep) {
  const Layout3 l = LayoutAlong(t, slice.dim);
  std::vector<int64_t> shape = t.shape();
  shape[slice.dim] = static_cast<int64_t>(keep.size()) * slice.block;
  ASSIGN_OR_RETURN(TensorBuffer out, TensorBuffer::Uninitialized(
                                         t.name(), DType::kFloat32, shape));
  const float* src = t.floats().data();
  float* dst = out.mutable_floats().data();
  const int64_t run = slice.block * l.inner;  // One channel's contiguous run.
  for (int64_t o = 0; o < l.outer; ++o) {
    for (int64_t c : keep) {
      std::memcpy(dst, src + (o * l.along + c * slice.block) * l.inner,
                  run * sizeof(float));
      dst += run;
    }
  }
  return out;
}

absl::Status CheckSparsity(double s) {
  if (s >= 0 && s < 1) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--sparsity must be in [0, 1), got ", s));
}

// OK when `state` has the zoo network's tensors (names and shapes).
absl::Status CheckFitsZoo(const ModelSpec& spec, const ModelState& state) {
  ASSIGN_OR_RETURN(std::vector<ModelLayer> layers, ModelLayers(spec));
  for (const ModelLayer& layer : layers) {
    const std::string name = layer.name + ".weight";
    if (state.Find(name) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the model has no tensor '", name, "', so it is not a '",
                       spec.architecture, "' as its spec says"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSlice(const ModelState& state, const ChannelGroup& g,
                        const ChannelSlice& s) {
  const TensorBuffer* t = state.Find(s.tensor);
  if (t == nullptr || t->dtype() != DType::kFloat32 ||
      s.dim >= static_cast<int>(t->shape().size()) ||
      t->shape()[s.dim] != g.channels * s.block) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", s.tensor, "' does not have ",
                     g.channels * s.block, " elements along dim ", s.dim,
                     " as layer '", g.layer, "' of this architecture needs"));
  }
  return absl::OkStatus();
}

// The channels of `g` to keep: the (1 - sparsity) share with the largest
// L1 norms (at least one), in increasing order.
std::vector<int64_t> ChannelsToKeep(const ModelState& state,
                                    const ChannelGroup& g, double sparsity) {
  const TensorBuffer& w = *state.Find(g.slices[0].tensor);
  std::vector<double> score(g.channels, 0);
  for (int64_t c = 0; c < g.channels; ++c) {
    ForChannel(w, w.floats().data(), g.slices[0], c,
               [&](float x) { score[c] += std::abs(x); });
  }
  const int64_t keep = std::max<int64_t>(
      1, std::llround((1 - sparsity) * static_cast<double>(g.channels)));
  std::vector<int64_t> order(g.channels);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  order.resize(keep);
  std::sort(order.begin(), order.end());
  return order;
}

absl::StatusOr<PruneResult> PruneStructured(const ModelSpec& spec,
                                            const ModelState& state,
                                            double sparsity) {
  ASSIGN_OR_RETURN(std::vector<ChannelGroup> groups, ChannelGroups(spec));
  RETURN_IF_ERROR(CheckFitsZoo(spec, state));
  PruneResult r;
  r.spec = spec;
  r.state = state.Clone();
  std::map<std::string, TensorBuffer*> tensors;
  for (TensorBuffer& t : r.state.mutable_tensors()) tensors[t.name()] = &t;
  std::vector<std::vector<int64_t>> kept;
  for (const ChannelGroup& g : groups) {
    for (const ChannelSlice& s : g.slices) {
      RETURN_IF_ERROR(CheckSlice(r.state, g, s));
    }
    kept.push_back(ChannelsToKeep(r.state, g, sparsity));
    r.channels_total += g.channels;
    r.channels_pruned += g.channels - static_cast<int64_t>(kept.back().size());
  }
  const bool remove = groups.front().removable;
  for (size_t i = 0; i < groups.size(); ++i) {
    const ChannelGroup& g = groups[i];
    std::vector<bool> keep(g.channels, false);
    for (int64_t c : kept[i]) keep[c] = true;
    for (const ChannelSlice& s : g.slices) {
      TensorBuffer& t = *tensors.at(s.tensor);
      if (remove) {
        ASSIGN_OR_RETURN(t, KeepChannels(t, s, kept[i]));
        continue;
      }
      for (int64_t c = 0; c < g.channels; ++c) {
        if (keep[c]) continue;
        ForChannel(t, t.mutable_floats().data(), s, c, [](float& x) { x = 0; });
      }
    }
  }
  if (remove) {
    r.spec.architecture = "mlp";
    r.spec.hidden_units.clear();
    for (const auto& k : kept) {
      r.spec.hidden_units.push_back(static_cast<int64_t>(k.size()));
    }
    r.note = absl::StrCat("hidden neurons removed: the model is now an 'mlp' ",
                          "with hidden_units [",
                          absl::StrJoin(r.spec.hidden_units, ","), "]");
  } else {
    r.note = absl::StrCat(
        "the zoo's '", spec.architecture,
        "' has fixed channel widths, so the pruned channels are zeroed, not "
        "removed: the network computes what the narrower one would, with ",
        "zeros in its files");
  }
  return r;
}

absl::StatusOr<PruneResult> PruneUnstructured(const ModelSpec& spec,
                                              const ModelState& state,
                                              double sparsity) {
  if (spec.architecture != "torchscript") {
    RETURN_IF_ERROR(CheckFitsZoo(spec, state));
  }
  PruneResult r;
  r.spec = spec;
  r.state = state.Clone();
  std::vector<float> magnitudes;
  for (const TensorBuffer& t : r.state.tensors()) {
    if (!IsPrunableWeight(t)) continue;
    for (float x : t.floats()) magnitudes.push_back(std::abs(x));
  }
  if (magnitudes.empty()) {
    return absl::InvalidArgumentError(
        "the model has no prunable weights (float32 tensors of rank >= 2 "
        "named *.weight)");
  }
  const int64_t k = std::llround(sparsity * magnitudes.size());
  if (k == 0) return r;
  std::nth_element(magnitudes.begin(), magnitudes.begin() + (k - 1),
                   magnitudes.end());
  const float threshold = magnitudes[k - 1];
  int64_t below = 0;
  for (float m : magnitudes) below += m < threshold;
  int64_t ties = k - below;  // Elements equal to the threshold to zero.
  for (TensorBuffer& t : r.state.mutable_tensors()) {
    if (!IsPrunableWeight(t)) continue;
    for (float& x : t.mutable_floats()) {
      const float m = std::abs(x);
      if (m < threshold || (m == threshold && ties-- > 0)) x = 0;
    }
  }
  return r;
}

bool IsRunningStatistic(const std::string& name) {
  return absl::EndsWith(name, ".running_mean") ||
         absl::EndsWith(name, ".running_var");
}

int64_t CountNonZero(const TensorBuffer& t) {
  int64_t n = 0;
  for (float x : t.floats()) n += x != 0;
  return n;
}

// Weight elements of a zoo layer at its full width.
int64_t WeightElements(const ModelLayer& layer) {
  if (layer.kind == ModelLayer::Kind::kLinear) return layer.in * layer.out;
  return layer.out * (layer.in / layer.groups) * layer.kernel * layer.kernel;
}

// The zoo layer's cost as its weight in `state` has it: scaled by the
// weight's size (a narrowed layer, RemoveZeroChannels) and, for
// `nonzero`, by its density.
int64_t LayerMacs(const ModelLayer& layer, const ModelState& state,
                  bool nonzero) {
  const TensorBuffer* w = state.Find(layer.name + ".weight");
  if (w == nullptr || layer.macs() == 0) return 0;
  const int64_t counted = nonzero ? CountNonZero(*w) : w->num_elements();
  return static_cast<int64_t>(std::llround(static_cast<double>(layer.macs()) *
                                           counted / WeightElements(layer)));
}

void AddTensor(const TensorBuffer& t, SparsityStats& s) {
  if (t.dtype() != DType::kFloat32 || IsRunningStatistic(t.name())) return;
  s.parameters += t.num_elements();
  const int64_t nonzero = CountNonZero(t);
  s.nonzero_parameters += nonzero;
  if (IsPrunableWeight(t)) {
    s.prunable += t.num_elements();
    s.prunable_zeros += t.num_elements() - nonzero;
  }
}

ChannelSlice Slice(std::string tensor, int dim, int64_t block = 1) {
  return ChannelSlice{std::move(tensor), dim, block};
}

// Hidden layers fc1 .. fc<n-1> of an MLP with `hidden` widths.
std::vector<ChannelGroup> MlpGroups(const std::vector<int64_t>& hidden) {
  std::vector<ChannelGroup> groups;
  for (size_t i = 0; i < hidden.size(); ++i) {
    const std::string fc = absl::StrCat("fc", i + 1);
    const std::string next = absl::StrCat("fc", i + 2, ".weight");
    groups.push_back(
        {fc,
         hidden[i],
         {Slice(fc + ".weight", 0), Slice(fc + ".bias", 0), Slice(next, 1)},
         true});
  }
  return groups;
}

std::vector<ChannelGroup> CnnGroups(const std::vector<ModelLayer>& layers) {
  const int64_t fc1_in = layers[2].in;  // conv2's 64 maps, flattened.
  return {
      {"conv1",
       32,
       {Slice("conv1.weight", 0), Slice("conv1.bias", 0),
        Slice("conv2.weight", 1)}},
      {"conv2",
       64,
       {Slice("conv2.weight", 0), Slice("conv2.bias", 0),
        Slice("fc1.weight", 1, fc1_in / 64)}},
      {"fc1",
       512,
       {Slice("fc1.weight", 0), Slice("fc1.bias", 0), Slice("fc2.weight", 1)}},
  };
}

// A bias-free convolution's channel: its weight and batch norm.
std::vector<ChannelSlice> ConvBnSlices(const std::string& conv) {
  return {Slice(conv + ".weight", 0), Slice(conv + "_bn.weight", 0),
          Slice(conv + "_bn.bias", 0)};
}

std::vector<ChannelGroup> MobileCnnGroups() {
  // Each producer's channel feeds a depthwise filter (dw<i>, with its batch
  // norm) and then one input of the next pointwise layer; pw3's channels
  // feed the classifier through global average pooling.
  const char* producers[] = {"stem", "pw1", "pw2", "pw3"};
  const int64_t widths[] = {16, 32, 64, 128};
  std::vector<ChannelGroup> groups;
  for (int i = 0; i < 4; ++i) {
    ChannelGroup g{producers[i], widths[i], ConvBnSlices(producers[i])};
    if (i < 3) {
      for (ChannelSlice s : ConvBnSlices(absl::StrCat("dw", i + 1))) {
        g.slices.push_back(s);
      }
      g.slices.push_back(Slice(absl::StrCat("pw", i + 1, ".weight"), 1));
    } else {
      g.slices.push_back(Slice("fc.weight", 1));
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

}  // namespace

bool IsPrunableWeight(const TensorBuffer& t) {
  return t.dtype() == DType::kFloat32 && t.shape().size() >= 2 &&
         absl::EndsWith(t.name(), ".weight");
}

absl::StatusOr<std::vector<ChannelGroup>> ChannelGroups(const ModelSpec& spec) {
  const std::string& arch = spec.architecture;
  if (arch == "2nn") return MlpGroups({200, 200});
  if (arch == "mlp" && !spec.hidden_units.empty()) {
    return MlpGroups(spec.hidden_units);
  }
  if (arch == "cnn") {
    ASSIGN_OR_RETURN(std::vector<ModelLayer> layers, ModelLayers(spec));
    return CnnGroups(layers);
  }
  if (arch == "mobile_cnn") return MobileCnnGroups();
  return absl::InvalidArgumentError(absl::StrCat(
      "structured pruning supports 2nn, mlp (with hidden layers), cnn and "
      "mobile_cnn, not '",
      arch, "'; prune it without --structured"));
}

absl::StatusOr<PruneResult> Prune(const ModelSpec& spec,
                                  const ModelState& state,
                                  const PruneOptions& options) {
  RETURN_IF_ERROR(CheckSparsity(options.sparsity));
  if (options.structured) {
    return PruneStructured(spec, state, options.sparsity);
  }
  return PruneUnstructured(spec, state, options.sparsity);
}

absl::StatusOr<ModelState> PruningMask(const ModelSpec& spec,
                                       const ModelState& state) {
  ModelState mask;
  std::map<std::string, size_t> index;  // Of mask's tensors, by name.
  for (const TensorBuffer& t : state.tensors()) {
    index[t.name()] = mask.size();
    ASSIGN_OR_RETURN(TensorBuffer m,
                     TensorBuffer::Zeros(t.name(), DType::kFloat32, t.shape()));
    absl::Span<float> ones = m.mutable_floats();
    std::fill(ones.begin(), ones.end(), 1.0f);
    if (IsPrunableWeight(t)) {
      for (size_t i = 0; i < ones.size(); ++i) ones[i] = t.floats()[i] != 0;
    }
    mask.Add(std::move(m));
  }
  absl::StatusOr<std::vector<ChannelGroup>> groups = ChannelGroups(spec);
  if (!groups.ok()) return mask;  // No channel structure: weights only.
  RETURN_IF_ERROR(CheckFitsZoo(spec, state));
  for (const ChannelGroup& g : *groups) {
    for (const ChannelSlice& s : g.slices) {
      RETURN_IF_ERROR(CheckSlice(state, g, s));
    }
    const TensorBuffer& w = *state.Find(g.slices[0].tensor);
    for (int64_t c = 0; c < g.channels; ++c) {
      bool zero = true;
      ForChannel(w, w.floats().data(), g.slices[0], c,
                 [&zero](float x) { zero = zero && x == 0; });
      if (!zero) continue;
      for (const ChannelSlice& s : g.slices) {
        TensorBuffer& m = mask.mutable_tensor(index.at(s.tensor));
        ForChannel(m, m.mutable_floats().data(), s, c, [](float& x) { x = 0; });
      }
    }
  }
  return mask;
}

absl::StatusOr<ModelState> RemoveZeroChannels(const ModelSpec& spec,
                                              const ModelState& state,
                                              int64_t* removed) {
  *removed = 0;
  if (spec.architecture != "cnn") return state.Clone();
  RETURN_IF_ERROR(CheckFitsZoo(spec, state));
  ASSIGN_OR_RETURN(std::vector<ChannelGroup> groups, ChannelGroups(spec));
  ModelState out = state.Clone();
  std::map<std::string, TensorBuffer*> tensors;
  for (TensorBuffer& t : out.mutable_tensors()) tensors[t.name()] = &t;
  for (const ChannelGroup& g : groups) {
    for (const ChannelSlice& s : g.slices) {
      RETURN_IF_ERROR(CheckSlice(state, g, s));
    }
    // A "cnn" channel's own tensors (weight, bias) are its dim-0 slices.
    std::vector<int64_t> keep;
    for (int64_t c = 0; c < g.channels; ++c) {
      bool zero = true;
      for (const ChannelSlice& s : g.slices) {
        if (s.dim != 0) continue;
        const TensorBuffer& t = *state.Find(s.tensor);
        ForChannel(t, t.floats().data(), s, c,
                   [&zero](float x) { zero = zero && x == 0; });
      }
      if (!zero) keep.push_back(c);
    }
    if (keep.empty()) keep.push_back(0);  // A layer keeps one channel.
    if (static_cast<int64_t>(keep.size()) == g.channels) continue;
    *removed += g.channels - static_cast<int64_t>(keep.size());
    for (const ChannelSlice& s : g.slices) {
      TensorBuffer& t = *tensors.at(s.tensor);
      ASSIGN_OR_RETURN(t, KeepChannels(t, s, keep));
    }
  }
  return out;
}

absl::StatusOr<SparsityStats> MeasureSparsity(const ModelSpec& spec,
                                              const ModelState& state) {
  SparsityStats s;
  for (const TensorBuffer& t : state.tensors()) AddTensor(t, s);
  if (spec.architecture == "torchscript") return s;
  RETURN_IF_ERROR(CheckFitsZoo(spec, state));
  ASSIGN_OR_RETURN(std::vector<ModelLayer> layers, ModelLayers(spec));
  s.macs = s.nonzero_macs = 0;
  for (const ModelLayer& layer : layers) {
    s.macs += LayerMacs(layer, state, false);
    s.nonzero_macs += LayerMacs(layer, state, true);
  }
  return s;
}

}  // namespace fedge::ml
