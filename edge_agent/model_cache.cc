#include "edge_agent/model_cache.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/update_codec.h"

namespace fedge {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxSmallFileBytes = int64_t{1} << 20;
constexpr char kSpecFile[] = "model-spec.binpb";

// The version in "model-<version>.fedge", if `name` is such a file.
std::optional<int64_t> ParseModelFileName(absl::string_view name) {
  int64_t version = -1;
  if (!absl::ConsumePrefix(&name, "model-") ||
      !absl::ConsumeSuffix(&name, ".fedge") || name.empty() ||
      !absl::ascii_isdigit(name[0]) || !absl::SimpleAtoi(name, &version)) {
    return std::nullopt;
  }
  return version;
}

absl::StatusOr<std::string> HashOfFile(const std::string& path,
                                       size_t chunk_bytes) {
  Sha256 hasher;
  RETURN_IF_ERROR(ReadFileChunks(path, chunk_bytes, [&](absl::string_view b) {
    hasher.Update(b);
    return absl::OkStatus();
  }));
  return ToHex(hasher.Finish());
}

absl::StatusOr<std::string> ReadTrimmed(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxSmallFileBytes));
  return std::string(absl::StripAsciiWhitespace(text));
}

absl::Status AsDataLoss(const absl::Status& s, absl::string_view context) {
  return absl::DataLossError(absl::StrCat(context, ": ", s.message()));
}

}  // namespace

ModelCache::ModelCache(ModelCacheOptions options,
                       std::unique_ptr<FileLock> lock)
    : options_(std::move(options)),
      models_dir_(options_.state_dir + "/models"),
      lock_(std::move(lock)) {}

absl::StatusOr<std::unique_ptr<ModelCache>> ModelCache::Open(
    ModelCacheOptions options) {
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("state_dir must not be empty");
  }
  if (options.keep_versions < 1) {
    return absl::InvalidArgumentError("keep_versions must be at least 1");
  }
  if (options.io_chunk_bytes == 0) {
    return absl::InvalidArgumentError("io_chunk_bytes must be positive");
  }
  std::unique_ptr<FileLock> lock;
  if (options.read_only) {
    std::error_code error;
    const fs::file_status status = fs::status(options.state_dir, error);
    if (fs::exists(status) && !fs::is_directory(status)) {
      return absl::FailedPreconditionError(
          absl::StrCat("state directory ", options.state_dir,
                       " is not a directory (give the agent's state_dir)"));
    }
    if (!fs::is_directory(status)) {
      return absl::NotFoundError(absl::StrCat(
          "state directory ", options.state_dir,
          " does not exist (has an agent run with this state_dir?)"));
    }
  } else {
    RETURN_IF_ERROR(MakeDirs(options.state_dir + "/models"));
    ASSIGN_OR_RETURN(lock, FileLock::Acquire(options.state_dir + "/LOCK",
                                             "give each agent its own "
                                             "state_dir"));
  }
  std::unique_ptr<ModelCache> cache(
      new ModelCache(std::move(options), std::move(lock)));
  RETURN_IF_ERROR(cache->IndexExistingFiles());
  return cache;
}

std::string ModelCache::ModelPath(int64_t version) const {
  return absl::StrCat(models_dir_, "/model-", version, ".fedge");
}

std::string ModelCache::HashPath(int64_t version) const {
  return absl::StrCat(models_dir_, "/model-", version, ".sha256");
}

std::string ModelCache::SignaturePath(int64_t version) const {
  return absl::StrCat(models_dir_, "/model-", version, ".sig");
}

ModelSignature ModelCache::ReadSignature(int64_t version) const {
  absl::StatusOr<std::string> text = ReadTrimmed(SignaturePath(version));
  if (!text.ok()) return {};
  std::vector<std::string> lines = absl::StrSplit(*text, '\n');
  if (lines.size() != 2 || lines[1].size() != 2 * kEd25519SignatureBytes ||
      lines[1].find_first_not_of("0123456789abcdef") != std::string::npos) {
    FEDGE_LOG(WARNING) << SignaturePath(version) << " does not parse";
    return {};
  }
  return {std::string(absl::StripAsciiWhitespace(lines[0])),
          absl::HexStringToBytes(lines[1])};
}

absl::Status ModelCache::CheckWritable() const {
  if (!options_.read_only) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the model cache in ", options_.state_dir, " is open read-only"));
}

absl::Status ModelCache::IndexExistingFiles() {
  std::error_code error;
  fs::directory_iterator it(models_dir_, error);
  if (error == std::errc::no_such_file_or_directory) return absl::OkStatus();
  if (error) return ErrnoStatus(error.value(), "list", models_dir_);
  std::vector<std::string> names;  // Listed first: the loop deletes files.
  for (const fs::directory_entry& entry : it) {
    names.push_back(entry.path().filename().string());
  }
  for (const std::string& name : names) {
    if (absl::EndsWith(name, ".tmp") && !options_.read_only) {
      unlink((models_dir_ + "/" + name).c_str());  // Left over by a crash.
      continue;
    }
    std::optional<int64_t> version = ParseModelFileName(name);
    if (!version.has_value()) continue;
    absl::StatusOr<std::string> hash = ReadTrimmed(HashPath(*version));
    absl::Status s = hash.ok() ? VerifyFile(*version, *hash) : hash.status();
    if (s.ok()) {
      index_[*version] = *hash;
    } else {
      FEDGE_LOG(WARNING) << "skipping damaged cached model " << name << ": "
                         << s.message();
      Drop(*version);
    }
  }
  Prune();
  return absl::OkStatus();
}

absl::Status ModelCache::VerifyFile(int64_t version,
                                    const std::string& sha256_hex) const {
  ASSIGN_OR_RETURN(std::string actual,
                   HashOfFile(ModelPath(version), options_.io_chunk_bytes));
  if (actual != sha256_hex) {
    return absl::DataLossError(absl::StrCat(ModelPath(version), " has SHA-256 ",
                                            actual, ", recorded ", sha256_hex));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelState> ModelCache::ReadVerified(
    int64_t version, const std::string& sha256_hex) const {
  const std::string path = ModelPath(version);
  Sha256 hasher;
  ModelDecoder decoder(options_.limits);
  absl::Status s =
      ReadFileChunks(path, options_.io_chunk_bytes, [&](absl::string_view b) {
        hasher.Update(b);
        return decoder.Feed(b);
      });
  if (!s.ok()) return AsDataLoss(s, path);
  const std::string actual = ToHex(hasher.Finish());
  if (actual != sha256_hex) {
    return absl::DataLossError(
        absl::StrCat(path, " has SHA-256 ", actual, ", recorded ", sha256_hex));
  }
  absl::StatusOr<ModelState> model = decoder.Finish();
  if (!model.ok()) return AsDataLoss(model.status(), path);
  return model;
}

absl::StatusOr<std::string> ModelCache::Put(int64_t version,
                                            const ModelState& model,
                                            const Download& as) {
  RETURN_IF_ERROR(CheckWritable());
  if (version < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model version must be >= 0, got ", version));
  }
  std::optional<EncodedModel> wire;  // Unless downloaded raw.
  if (!as.encoding.empty()) {
    EncodingOptions options;
    ASSIGN_OR_RETURN(options.kind, ParseDownloadEncoding(as.encoding));
    if (options.kind != UpdateEncoding::kFp32) {
      ASSIGN_OR_RETURN(wire, EncodeForWire(model, options));
    }
  }
  index_.erase(version);
  const bool hash = as.sha256_hex.empty();
  Sha256 hasher;
  const size_t chunk = options_.io_chunk_bytes;
  ModelEncoder encoder = wire.has_value() ? ModelEncoder(*wire, chunk)
                                          : ModelEncoder(model, chunk);
  RETURN_IF_ERROR(
      WriteFileAtomically(ModelPath(version), [&](std::string* out) {
        if (!encoder.Next(out)) return false;
        if (hash) hasher.Update(*out);
        return true;
      }));
  std::string hex = hash ? ToHex(hasher.Finish()) : as.sha256_hex;
  RETURN_IF_ERROR(WriteStringAtomically(HashPath(version), hex + "\n"));
  if (as.signature.empty()) {
    unlink(SignaturePath(version).c_str());  // Not another model's.
  } else {
    RETURN_IF_ERROR(WriteStringAtomically(
        SignaturePath(version),
        absl::StrCat(as.signature.key_id, "\n",
                     absl::BytesToHexString(as.signature.signature), "\n")));
  }
  index_[version] = hex;
  Prune();
  return hex;
}

absl::StatusOr<ModelState> ModelCache::Get(
    int64_t version, absl::string_view expected_sha256_hex) {
  auto it = index_.find(version);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("model version ", version, " is not cached"));
  }
  if (!expected_sha256_hex.empty() && expected_sha256_hex != it->second) {
    return absl::NotFoundError(
        absl::StrCat("cached model version ", version, " has SHA-256 ",
                     it->second, ", not the expected ", expected_sha256_hex));
  }
  absl::StatusOr<ModelState> model = ReadVerified(version, it->second);
  if (!model.ok()) {
    FEDGE_LOG(WARNING) << "dropping cached model version " << version << ": "
                       << model.status().message();
    Drop(version);
  }
  return model;
}

absl::StatusOr<CachedModel> ModelCache::Latest() {
  for (auto it = index_.rbegin(); it != index_.rend(); ++it) {
    CachedModel cached;
    cached.version = it->first;
    cached.sha256_hex = it->second;
    absl::StatusOr<ModelState> model = Get(cached.version, "");
    if (!model.ok()) return Latest();  // Get dropped it: try the next one.
    cached.model = *std::move(model);
    cached.signature = ReadSignature(cached.version);
    return cached;
  }
  return absl::NotFoundError(
      absl::StrCat("no cached global model in ", models_dir_,
                   " (the agent has not fetched one yet)"));
}

bool ModelCache::Has(int64_t version, absl::string_view sha256_hex) const {
  auto it = index_.find(version);
  return it != index_.end() && it->second == sha256_hex;
}

void ModelCache::DropNewerThan(int64_t version) {
  while (!index_.empty() && index_.rbegin()->first > version) {
    Drop(index_.rbegin()->first);
  }
}

int64_t ModelCache::LatestVersion() const {
  return index_.empty() ? -1 : index_.rbegin()->first;
}

std::vector<int64_t> ModelCache::Versions() const {
  std::vector<int64_t> versions;
  for (const auto& [version, hash] : index_) versions.push_back(version);
  return versions;
}

void ModelCache::Drop(int64_t version) {
  index_.erase(version);
  if (options_.read_only) return;
  unlink(ModelPath(version).c_str());
  unlink(HashPath(version).c_str());
  unlink(SignaturePath(version).c_str());
}

void ModelCache::Prune() {
  while (static_cast<int>(index_.size()) > options_.keep_versions) {
    Drop(index_.begin()->first);
  }
}

absl::Status ModelCache::PutSpec(const v1::ModelSpecProto& spec) {
  RETURN_IF_ERROR(CheckWritable());
  absl::StatusOr<v1::ModelSpecProto> old = GetSpec();
  if (old.ok() && old->SerializeAsString() == spec.SerializeAsString()) {
    return absl::OkStatus();
  }
  if (old.ok() && !index_.empty()) {
    FEDGE_LOG(INFO) << "the federation's model changed (now "
                    << spec.architecture() << "): dropping cached models";
    for (int64_t version : Versions()) Drop(version);
  }
  return WriteStringAtomically(models_dir_ + "/" + kSpecFile,
                               spec.SerializeAsString());
}

absl::StatusOr<v1::ModelSpecProto> ModelCache::GetSpec() const {
  const std::string path = models_dir_ + "/" + kSpecFile;
  ASSIGN_OR_RETURN(std::string bytes, ReadSmallFile(path, kMaxSmallFileBytes));
  v1::ModelSpecProto spec;
  if (!spec.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat(path, " does not parse"));
  }
  return spec;
}

absl::StatusOr<std::string> ModelCache::LoadAgentId() const {
  const std::string path = options_.state_dir + "/agent_id";
  ASSIGN_OR_RETURN(std::string id, ReadTrimmed(path));
  if (id.empty()) return absl::NotFoundError(absl::StrCat(path, " is empty"));
  return id;
}

absl::Status ModelCache::StoreAgentId(const std::string& agent_id) {
  RETURN_IF_ERROR(CheckWritable());
  if (agent_id.empty() || agent_id.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError(
        "agent_id must be non-empty and on one line");
  }
  return WriteStringAtomically(options_.state_dir + "/agent_id",
                               agent_id + "\n");
}

namespace {

absl::Status CheckStateName(const std::string& name) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || c == '_';
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("state name '", name, "' must match [a-z_]+"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ModelCache::SaveState(const std::string& name,
                                   const ModelState& state) {
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(CheckStateName(name));
  ModelEncoder encoder(state, options_.io_chunk_bytes);
  return WriteFileAtomically(
      options_.state_dir + "/" + name + ".state",
      [&encoder](std::string* out) { return encoder.Next(out); });
}

absl::StatusOr<ModelState> ModelCache::LoadState(
    const std::string& name) const {
  RETURN_IF_ERROR(CheckStateName(name));
  const std::string path = options_.state_dir + "/" + name + ".state";
  ModelDecoder decoder(options_.limits);
  absl::Status read = ReadFileChunks(
      path, options_.io_chunk_bytes,
      [&decoder](absl::string_view bytes) { return decoder.Feed(bytes); });
  if (absl::IsNotFound(read)) return read;
  if (!read.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": ", read.message()));
  }
  absl::StatusOr<ModelState> state = decoder.Finish();
  if (!state.ok()) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", state.status().message()));
  }
  return state;
}

}  // namespace fedge
