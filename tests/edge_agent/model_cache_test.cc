#include "edge_agent/model_cache.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/model_codec.h"
#include "common/sha256.h"
#include "common/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

ModelState TinyModel(float value) {
  std::vector<TensorBuffer> tensors;
  tensors.push_back(
      *TensorBuffer::FromFloats("fc.weight", {2, 2}, {value, 1, 2, 3}));
  tensors.push_back(*TensorBuffer::FromFloats("fc.bias", {2}, {0, value}));
  return ModelState(std::move(tensors));
}

// Flips one byte in the middle of the file at `path`.
void Corrupt(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekg(0, std::ios::end);
  const std::streamoff middle = f.tellg() / 2;
  f.seekg(middle);
  char c = 0;
  f.read(&c, 1);
  f.seekp(middle);
  c = static_cast<char>(c ^ 0x5a);
  f.write(&c, 1);
}

class ModelCacheTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(testing::TempDir(), "/fedge_model_cache_test.",
                        getpid(), ".", counter_++);
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<ModelCache> Open(bool read_only = false) {
    ModelCacheOptions options;
    options.state_dir = dir_;
    options.read_only = read_only;
    absl::StatusOr<std::unique_ptr<ModelCache>> cache =
        ModelCache::Open(options);
    EXPECT_TRUE(cache.ok()) << cache.status();
    return cache.ok() ? *std::move(cache) : nullptr;
  }

  std::string ModelFile(int64_t version) const {
    return absl::StrCat(dir_, "/models/model-", version, ".fedge");
  }

  static int counter_;
  std::string dir_;
};

int ModelCacheTest::counter_ = 0;

TEST_F(ModelCacheTest, PutThenGet_ReturnsTheSameModel) {
  auto cache = Open();
  const ModelState model = TinyModel(4);
  absl::StatusOr<std::string> sha = cache->Put(3, model);
  ASSERT_TRUE(sha.ok()) << sha.status();
  EXPECT_EQ(*sha, ToHex(ModelDigest(model)));

  absl::StatusOr<ModelState> got = cache->Get(3, *sha);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(EncodeModel(*got), EncodeModel(model));
  EXPECT_TRUE(cache->Get(3, "").ok());  // No expected hash: still verified.
  EXPECT_TRUE(fs::exists(ModelFile(3)));
  EXPECT_FALSE(fs::exists(ModelFile(3) + ".tmp"));
}

TEST_F(ModelCacheTest, Get_NotCached_NotFound) {
  auto cache = Open();
  EXPECT_EQ(cache->Get(1, "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cache->LatestVersion(), -1);
  EXPECT_EQ(cache->Latest().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelCacheTest, Get_OtherExpectedHash_NotFound) {
  auto cache = Open();
  ASSERT_TRUE(cache->Put(1, TinyModel(1)).ok());
  const std::string other = ToHex(ModelDigest(TinyModel(2)));
  absl::StatusOr<ModelState> got = cache->Get(1, other);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(cache->Has(1, ToHex(ModelDigest(TinyModel(1)))));
  EXPECT_FALSE(cache->Has(1, other));
}

TEST_F(ModelCacheTest, CorruptedFile_RefusedAndDeleted) {
  auto cache = Open();
  ASSERT_TRUE(cache->Put(1, TinyModel(1)).ok());
  Corrupt(ModelFile(1));

  absl::StatusOr<ModelState> got = cache->Get(1, "");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(cache->Versions(), IsEmpty());
  EXPECT_FALSE(fs::exists(ModelFile(1)));
}

TEST_F(ModelCacheTest, CorruptedFile_NotIndexedOnReopen) {
  {
    auto cache = Open();
    ASSERT_TRUE(cache->Put(1, TinyModel(1)).ok());
    ASSERT_TRUE(cache->Put(2, TinyModel(2)).ok());
  }
  Corrupt(ModelFile(2));
  auto cache = Open();
  EXPECT_THAT(cache->Versions(), ElementsAre(1));
  EXPECT_EQ(cache->LatestVersion(), 1);
}

TEST_F(ModelCacheTest, Reopen_FindsCachedModels) {
  {
    auto cache = Open();
    ASSERT_TRUE(cache->Put(5, TinyModel(5)).ok());
  }
  auto cache = Open();
  EXPECT_THAT(cache->Versions(), ElementsAre(5));
  EXPECT_TRUE(cache->Get(5, ToHex(ModelDigest(TinyModel(5)))).ok());
}

TEST_F(ModelCacheTest, Latest_ReturnsNewestThatVerifies) {
  auto cache = Open();
  ASSERT_TRUE(cache->Put(1, TinyModel(1)).ok());
  ASSERT_TRUE(cache->Put(2, TinyModel(2)).ok());
  absl::StatusOr<CachedModel> latest = cache->Latest();
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version, 2);
  EXPECT_EQ(latest->sha256_hex, ToHex(ModelDigest(TinyModel(2))));

  Corrupt(ModelFile(2));
  latest = cache->Latest();
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->version, 1);
  EXPECT_EQ(EncodeModel(latest->model), EncodeModel(TinyModel(1)));
}

TEST_F(ModelCacheTest, KeepsLastTwoVersions) {
  auto cache = Open();
  for (int v = 1; v <= 4; ++v) ASSERT_TRUE(cache->Put(v, TinyModel(v)).ok());
  EXPECT_THAT(cache->Versions(), ElementsAre(3, 4));
  EXPECT_FALSE(fs::exists(ModelFile(1)));
  EXPECT_FALSE(fs::exists(ModelFile(2)));
  EXPECT_TRUE(fs::exists(ModelFile(4)));
}

TEST_F(ModelCacheTest, DropNewerThan_ForgetsNewerVersions) {
  auto cache = Open();
  ASSERT_TRUE(cache->Put(7, TinyModel(7)).ok());
  ASSERT_TRUE(cache->Put(8, TinyModel(8)).ok());
  cache->DropNewerThan(7);
  EXPECT_THAT(cache->Versions(), ElementsAre(7));
  EXPECT_FALSE(fs::exists(ModelFile(8)));
}

TEST_F(ModelCacheTest, LeftoverTemporaryFile_Removed) {
  fs::create_directories(dir_ + "/models");
  std::ofstream(ModelFile(1) + ".tmp") << "half a model";
  auto cache = Open();
  EXPECT_FALSE(fs::exists(ModelFile(1) + ".tmp"));
  EXPECT_THAT(cache->Versions(), IsEmpty());
}

TEST_F(ModelCacheTest, SecondWriter_FailedPrecondition_ReaderAllowed) {
  auto cache = Open();
  ASSERT_TRUE(cache->Put(1, TinyModel(1)).ok());
  ModelCacheOptions options;
  options.state_dir = dir_;
  absl::StatusOr<std::unique_ptr<ModelCache>> second =
      ModelCache::Open(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("state_dir"));

  auto reader = Open(/*read_only=*/true);
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(reader->Latest().ok());
  EXPECT_EQ(reader->Put(2, TinyModel(2)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ModelCacheTest, ReadOnly_MissingDirectory_NotFound) {
  ModelCacheOptions options;
  options.state_dir = dir_ + "/nope";
  options.read_only = true;
  EXPECT_EQ(ModelCache::Open(options).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ModelCacheTest, ReadOnly_StateDirIsAFile_FailedPreconditionSaysSo) {
  ModelCacheOptions options;
  fs::create_directories(dir_);
  options.state_dir = dir_ + "/a_file";
  std::ofstream(options.state_dir) << "x";
  options.read_only = true;
  const absl::Status status = ModelCache::Open(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(options.state_dir + " is not a directory"));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("does not exist")));
}

TEST_F(ModelCacheTest, BadOptions_InvalidArgument) {
  ModelCacheOptions options;
  EXPECT_EQ(ModelCache::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.state_dir = dir_;
  options.keep_versions = 0;
  EXPECT_EQ(ModelCache::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.keep_versions = 2;
  options.io_chunk_bytes = 0;
  EXPECT_EQ(ModelCache::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ModelCacheTest, SmallIoChunks_SameFilesAndModels) {
  const ModelState model = TinyModel(4);
  std::string sha;
  {
    ModelCacheOptions options;
    options.state_dir = dir_;
    options.io_chunk_bytes = 7;  // Every file spans several chunks.
    std::unique_ptr<ModelCache> cache = *ModelCache::Open(options);
    absl::StatusOr<std::string> put = cache->Put(3, model);
    ASSERT_TRUE(put.ok()) << put.status();
    sha = *put;
    EXPECT_EQ(sha, ToHex(ModelDigest(model)));
    ASSERT_TRUE(cache->SaveState("residual", model).ok());
    absl::StatusOr<ModelState> state = cache->LoadState("residual");
    ASSERT_TRUE(state.ok()) << state.status();
    EXPECT_EQ(EncodeModel(*state), EncodeModel(model));
  }
  ModelCacheOptions options;
  options.state_dir = dir_;
  options.io_chunk_bytes = 5;  // Indexes (hashes) what was written.
  std::unique_ptr<ModelCache> cache = *ModelCache::Open(options);
  EXPECT_THAT(cache->Versions(), ElementsAre(3));
  absl::StatusOr<ModelState> got = cache->Get(3, sha);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(EncodeModel(*got), EncodeModel(model));
}

TEST_F(ModelCacheTest, Spec_RoundTrips_AndAChangeDropsModels) {
  auto cache = Open();
  EXPECT_EQ(cache->GetSpec().status().code(), absl::StatusCode::kNotFound);
  v1::ModelSpecProto spec;
  spec.set_architecture("2nn");
  spec.add_input_shape(784);
  spec.set_num_classes(10);
  ASSERT_TRUE(cache->PutSpec(spec).ok());
  ASSERT_TRUE(cache->Put(1, TinyModel(1)).ok());
  ASSERT_TRUE(cache->PutSpec(spec).ok());  // Same spec: models kept.
  EXPECT_THAT(cache->Versions(), ElementsAre(1));
  EXPECT_EQ(cache->GetSpec()->SerializeAsString(), spec.SerializeAsString());

  spec.set_architecture("cnn");
  ASSERT_TRUE(cache->PutSpec(spec).ok());
  EXPECT_THAT(cache->Versions(), IsEmpty());
  EXPECT_EQ(cache->GetSpec()->architecture(), "cnn");
}

TEST_F(ModelCacheTest, AgentId_StoredAndLoaded) {
  {
    auto cache = Open();
    EXPECT_EQ(cache->LoadAgentId().status().code(),
              absl::StatusCode::kNotFound);
    ASSERT_TRUE(cache->StoreAgentId("device-17").ok());
    EXPECT_EQ(cache->StoreAgentId("two\nlines").code(),
              absl::StatusCode::kInvalidArgument);
  }
  auto cache = Open();
  EXPECT_EQ(*cache->LoadAgentId(), "device-17");
}

TEST_F(ModelCacheTest, Fp16Download_StoredUnderTheAnnouncedHash) {
  auto cache = Open();
  // A model as an agent decodes an fp16 download, and the announced hash.
  EncodingOptions fp16;
  fp16.kind = UpdateEncoding::kFp16;
  const ModelState downloaded = *AsDownloaded(TinyModel(0.1f), fp16.kind);
  const std::string announced =
      ToHex(ModelDigest(*EncodeForWire(downloaded, fp16)));
  absl::StatusOr<std::string> hash =
      cache->Put(3, downloaded, {"fp16", announced, {}});
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_EQ(*hash, announced);
  EXPECT_TRUE(cache->Has(3, announced));
  absl::StatusOr<ModelState> got = cache->Get(3, announced);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(ModelDigest(*got), ModelDigest(downloaded));
  // Computed when not given: the same.
  EXPECT_EQ(*cache->Put(4, downloaded, {"fp16", "", {}}), announced);
  EXPECT_EQ(cache->Put(5, downloaded, {"int8", "", {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ModelCacheTest, KnownHash_NotRecomputedButAWrongOneNeverVerifies) {
  auto cache = Open();
  const std::string wrong(64, 'a');
  ASSERT_TRUE(cache->Put(1, TinyModel(1), {"fp32", wrong, {}}).ok());
  // Taken as given when written; the bytes are checked when read.
  EXPECT_EQ(cache->Get(1, wrong).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(cache->Has(1, wrong));
}

TEST_F(ModelCacheTest, Signature_KeptBesideTheModel_DroppedWithIt) {
  std::unique_ptr<ModelCache> cache = Open();
  ModelSignature sig;
  sig.key_id = "0123456789abcdef";
  sig.signature = std::string(64, '\x5a');
  ASSERT_TRUE(cache->Put(1, TinyModel(1), {"", "", sig}).ok());
  EXPECT_TRUE(fs::exists(dir_ + "/models/model-1.sig"));
  cache.reset();
  {
    std::unique_ptr<ModelCache> reader = Open(/*read_only=*/true);
    absl::StatusOr<CachedModel> cached = reader->Latest();
    ASSERT_TRUE(cached.ok()) << cached.status();
    EXPECT_EQ(cached->signature.key_id, sig.key_id);
    EXPECT_EQ(cached->signature.signature, sig.signature);
  }
  cache = Open();
  // The same version again, unsigned: the old signature is not its.
  ASSERT_TRUE(cache->Put(1, TinyModel(2)).ok());
  EXPECT_FALSE(fs::exists(dir_ + "/models/model-1.sig"));
  EXPECT_TRUE(cache->Latest()->signature.empty());
  ASSERT_TRUE(cache->Put(2, TinyModel(2), {"", "", sig}).ok());
  // A damaged signature file reads as no signature.
  { std::ofstream(dir_ + "/models/model-2.sig") << "garbage\n"; }
  EXPECT_TRUE(cache->Latest()->signature.empty());
  ASSERT_TRUE(cache->Put(2, TinyModel(2), {"", "", sig}).ok());
  ASSERT_TRUE(cache->Put(3, TinyModel(3), {"", "", sig}).ok());
  ASSERT_TRUE(cache->Put(4, TinyModel(4), {"", "", sig}).ok());
  // keep_versions = 2: versions 1 and 2 went, with their signatures.
  EXPECT_FALSE(fs::exists(dir_ + "/models/model-2.sig"));
  EXPECT_TRUE(fs::exists(dir_ + "/models/model-4.sig"));
}

}  // namespace
}  // namespace fedge
