#include "common/ml/model_files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

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

absl::Status WriteModelFile(const std::string& path, const ModelState& state) {
  ModelEncoder encoder(state);
  return WriteFileAtomically(
      path, [&encoder](std::string* chunk) { return encoder.Next(chunk); });
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

}  // namespace fedge::ml
