#include "common/ml/model_files.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config_loader.h"
#include "common/file_util.h"
#include "common/model_codec.h"
#include "common/status_macros.h"
#include "google/protobuf/text_format.h"

namespace fedge::ml {
namespace {

constexpr char kModelSuffix[] = ".fedge";
constexpr int64_t kMaxModelFileBytes = int64_t{4} << 30;

absl::Status CheckSpec(const ModelSpec& spec) {
  if (spec.input_shape.empty()) {
    return absl::InvalidArgumentError(
        "no input_shape (add e.g. input_shape: [1, 28, 28])");
  }
  if (spec.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes must be >= 2, got ", spec.num_classes,
                     " (add e.g. num_classes: 10)"));
  }
  if (spec.architecture == "torchscript") return absl::OkStatus();
  return CheckModelSpec(spec);
}

// The top-k encoding of a mostly-zero float32 tensor, or nullopt when raw is
// not larger.
std::optional<EncodedTensor> SparseTensor(const TensorBuffer& t) {
  if (t.dtype() != DType::kFloat32 || t.num_elements() == 0) return {};
  const int64_t k = std::count_if(t.floats().begin(), t.floats().end(),
                                  [](float x) { return x != 0; });
  const uint64_t bytes = 4 + 8 * static_cast<uint64_t>(std::max<int64_t>(k, 1));
  if (bytes >= t.num_bytes()) return {};
  EncodedTensor e;
  e.spec = {t.name(), t.dtype(), t.shape()};
  e.encoding = TensorEncoding::kTopK;
  e.data_len = bytes;
  e.data = std::make_unique<uint8_t[]>(bytes);
  uint8_t* p = e.data.get();
  auto put32 = [&p](uint32_t v) {
    for (int i = 0; i < 4; ++i) *p++ = static_cast<uint8_t>(v >> (8 * i));
  };
  auto float_bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    return u;
  };
  put32(static_cast<uint32_t>(std::max<int64_t>(k, 1)));
  absl::Span<const float> v = t.floats();
  if (k == 0) {  // k >= 1: an all-zero tensor sends element 0, a zero.
    put32(0);
    put32(float_bits(0.0f));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == 0) continue;
    put32(static_cast<uint32_t>(i));
    put32(float_bits(v[i]));
  }
  return e;
}

EncodedTensor RawTensor(const TensorBuffer& t) {
  EncodedTensor e;
  e.spec = {t.name(), t.dtype(), t.shape()};
  e.encoding = TensorEncoding::kRaw;
  e.data_len = t.num_bytes();
  e.data = std::make_unique<uint8_t[]>(t.num_bytes());
  if (t.num_bytes() > 0) std::memcpy(e.data.get(), t.data(), t.num_bytes());
  return e;
}

}  // namespace

std::string DefaultSpecPath(const std::string& model_path) {
  if (absl::EndsWith(model_path, kModelSuffix)) {
    return model_path.substr(0, model_path.size() - strlen(kModelSuffix)) +
           ".spec";
  }
  return model_path + ".spec";
}

absl::StatusOr<ModelSpec> ReadSpecFile(const std::string& path) {
  v1::ModelSpecProto proto;
  absl::Status loaded = LoadTextProtoFile(path, &proto);
  if (absl::IsNotFound(loaded)) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read model spec ", path,
        " (a textproto fedge.v1.ModelSpecProto, as the coordinator writes "
        "final_model.spec; pass it with --spec)"));
  }
  RETURN_IF_ERROR(loaded);
  ModelSpec spec = SpecFromProto(proto);
  RETURN_IF_ERROR(Annotate(CheckSpec(spec), "model spec " + path));
  return spec;
}

absl::Status WriteSpecFile(const std::string& path, const ModelSpec& spec) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(SpecToProto(spec), &text);
  return WriteStringAtomically(path, text);
}

absl::StatusOr<ModelState> ReadModelFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadSmallFile(path, kMaxModelFileBytes));
  absl::StatusOr<ModelState> state = DecodeModel(bytes);
  if (!state.ok()) return Annotate(state.status(), "model file " + path);
  return state;
}

absl::StatusOr<ModelState> InitialWeights(
    const std::string& initial_weights_path, ModelState initial) {
  if (initial_weights_path.empty()) return initial;
  const std::string field = "model.initial_weights_path";
  absl::StatusOr<ModelState> weights = ReadModelFile(initial_weights_path);
  if (!weights.ok()) return Annotate(weights.status(), field);
  absl::Status fits = CheckSameSchema(initial, *weights);
  if (!fits.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", initial_weights_path,
                     " does not hold this model's tensors (", fits.message(),
                     "); give a file of the architecture in model.*"));
  }
  return weights;
}

absl::Status WriteModelFile(const std::string& path, const ModelState& state) {
  ModelEncoder encoder(state);
  return WriteFileAtomically(
      path, [&encoder](std::string* chunk) { return encoder.Next(chunk); });
}

absl::Status WriteModelWithSpec(const std::string& path,
                                const ModelState& state,
                                const ModelSpec& spec) {
  RETURN_IF_ERROR(WriteModelFile(path, state));
  return WriteSpecFile(DefaultSpecPath(path), spec);
}

absl::StatusOr<int64_t> FileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", path);
  return static_cast<int64_t>(st.st_size);
}

absl::Status WriteNpy(const std::string& path, absl::Span<const int64_t> shape,
                      absl::Span<const float> values) {
  ASSIGN_OR_RETURN(int64_t n, CheckedNumElements(shape));
  if (n != static_cast<int64_t>(values.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": shape [", absl::StrJoin(shape, ","), "] holds ",
                     n, " values, got ", values.size()));
  }
  std::string header = absl::StrCat(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (",
      absl::StrJoin(shape, ", "), shape.size() == 1 ? ",), }" : "), }");
  // Magic (6) + version (2) + header length (2) + header, padded with
  // spaces and a newline to a multiple of 64 bytes.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes.push_back(static_cast<char>(header.size() & 0xff));
  bytes.push_back(static_cast<char>(header.size() >> 8));
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(values.data()),
               values.size() * sizeof(float));
  return WriteStringAtomically(path, bytes);
}

absl::Status WriteSparseModelFile(const std::string& path,
                                  const ModelState& state) {
  EncodedModel model;
  for (const TensorBuffer& t : state.tensors()) {
    std::optional<EncodedTensor> sparse = SparseTensor(t);
    model.tensors.push_back(sparse ? std::move(*sparse) : RawTensor(t));
  }
  ModelEncoder encoder(model);
  return WriteFileAtomically(
      path, [&encoder](std::string* chunk) { return encoder.Next(chunk); });
}

}  // namespace fedge::ml
