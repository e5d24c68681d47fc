#include "server/checkpoint_store.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/model_codec.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// A fresh directory per test, removed afterwards.
class CheckpointStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ =
        fs::path(::testing::TempDir()) /
        (std::string("ckpt_") + info->name() + "_" + std::to_string(getpid()));
    fs::remove_all(root_);
    dir_ = (root_ / "state" / "checkpoints").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<CheckpointStore> MakeStore(int keep = 3) {
    auto store = CheckpointStore::Create({dir_, keep});
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  fs::path root_;
  std::string dir_;
};

// A model whose values depend on `seed`.
ModelState MakeModel(float seed) {
  ModelState m;
  std::vector<float> w(600);
  for (size_t i = 0; i < w.size(); ++i) w[i] = seed + 0.25f * i;
  m.Add(*TensorBuffer::FromFloats("fc.weight", {20, 30}, w));
  TensorBuffer counter = *TensorBuffer::Zeros("bn.count", DType::kInt64, {});
  counter.mutable_int64s()[0] = static_cast<int64_t>(seed) * 1000;
  m.Add(std::move(counter));
  return m;
}

Checkpoint MakeCheckpoint(int64_t version) {
  Checkpoint c;
  c.model_version = version;
  c.next_round = version + 1;
  c.completed_rounds = static_cast<int>(version);
  c.model = MakeModel(static_cast<float>(version));
  c.extra = std::string("strategy\0state-", 15) + std::to_string(version);
  return c;
}

void ExpectSameCheckpoint(const Checkpoint& want, const Checkpoint& got) {
  EXPECT_EQ(got.model_version, want.model_version);
  EXPECT_EQ(got.next_round, want.next_round);
  EXPECT_EQ(got.completed_rounds, want.completed_rounds);
  EXPECT_EQ(got.extra, want.extra);
  EXPECT_EQ(EncodeModel(got.model), EncodeModel(want.model));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

std::string FileName(const std::string& path) {
  return fs::path(path).filename().string();
}

TEST_F(CheckpointStoreTest, SaveThenLoad_RoundTrip) {
  auto store = MakeStore();
  const Checkpoint ckpt = MakeCheckpoint(7);
  absl::StatusOr<std::string> path = store->Save(ckpt);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, dir_ + "/ckpt-00000007.fedge");
  std::vector<std::string> skipped;
  auto loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  ExpectSameCheckpoint(ckpt, **loaded);
  EXPECT_TRUE(skipped.empty());
}

TEST_F(CheckpointStoreTest, EmptyModelAndExtra_RoundTrip) {
  auto store = MakeStore();
  Checkpoint ckpt;
  ASSERT_TRUE(store->Save(ckpt).ok());
  auto loaded = store->LoadNewest();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  ExpectSameCheckpoint(ckpt, **loaded);
}

TEST_F(CheckpointStoreTest, EmptyDir_ReturnsNullopt) {
  auto store = MakeStore();
  auto loaded = store->LoadNewest();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  EXPECT_TRUE(store->ListCheckpoints().empty());
}

TEST_F(CheckpointStoreTest, KeepLastK_PruneOldDeletesOlder) {
  auto store = MakeStore(/*keep=*/2);
  for (int v = 1; v <= 5; ++v) ASSERT_TRUE(store->Save(MakeCheckpoint(v)).ok());
  // Save alone deletes nothing: the caller announces first, then prunes.
  EXPECT_EQ(store->ListCheckpoints().size(), 5u);
  store->PruneOld();
  EXPECT_THAT(store->ListCheckpoints(),
              ElementsAre(dir_ + "/ckpt-00000004.fedge",
                          dir_ + "/ckpt-00000005.fedge"));
  auto loaded = store->LoadNewest();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->model_version, 5);
}

TEST_F(CheckpointStoreTest, NewestWithFlippedByte_SkippedAndPreviousLoaded) {
  auto store = MakeStore();
  ASSERT_TRUE(store->Save(MakeCheckpoint(1)).ok());
  const std::string newest = *store->Save(MakeCheckpoint(2));
  std::string bytes = ReadFile(newest);
  bytes[bytes.size() / 2] ^= 0x10;  // Inside the model's data.
  WriteFile(newest, bytes);
  std::vector<std::string> skipped;
  auto loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  ExpectSameCheckpoint(MakeCheckpoint(1), **loaded);
  ASSERT_THAT(skipped, SizeIs(1));
  EXPECT_THAT(skipped[0], HasSubstr(newest));
  EXPECT_THAT(skipped[0], HasSubstr("SHA-256 mismatch"));
}

TEST_F(CheckpointStoreTest, NewestTruncated_SkippedAndPreviousLoaded) {
  auto store = MakeStore();
  ASSERT_TRUE(store->Save(MakeCheckpoint(1)).ok());
  const std::string newest = *store->Save(MakeCheckpoint(2));
  const std::string bytes = ReadFile(newest);
  for (size_t len : {size_t{0}, size_t{10}, size_t{60}, bytes.size() - 1}) {
    WriteFile(newest, bytes.substr(0, len));
    std::vector<std::string> skipped;
    auto loaded = store->LoadNewest(&skipped);
    ASSERT_TRUE(loaded.ok() && loaded->has_value()) << len;
    EXPECT_EQ((*loaded)->model_version, 1);
    ASSERT_THAT(skipped, SizeIs(1));
    EXPECT_THAT(skipped[0], HasSubstr(FileName(newest)));
  }
}

TEST_F(CheckpointStoreTest, CorruptHeaderSizes_Skipped) {
  auto store = MakeStore();
  const std::string path = *store->Save(MakeCheckpoint(3));
  std::string bytes = ReadFile(path);
  bytes[36] ^= 0x01;  // Low byte of extra_len.
  WriteFile(path, bytes);
  std::vector<std::string> skipped;
  auto loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  ASSERT_THAT(skipped, SizeIs(1));
  EXPECT_THAT(skipped[0], HasSubstr("truncated or corrupt"));
}

TEST_F(CheckpointStoreTest, AllCorrupt_ReturnsNulloptAndListsAll) {
  auto store = MakeStore();
  for (int v = 1; v <= 2; ++v) {
    WriteFile(*store->Save(MakeCheckpoint(v)), "garbage");
  }
  std::vector<std::string> skipped;
  auto loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  EXPECT_THAT(skipped, SizeIs(2));
}

TEST_F(CheckpointStoreTest, StrayTmpFile_IgnoredAndDeleted) {
  auto store = MakeStore();
  ASSERT_TRUE(store->Save(MakeCheckpoint(4)).ok());
  const std::string stray = dir_ + "/ckpt-00000009.fedge.tmp";
  WriteFile(stray, "half written");
  EXPECT_THAT(store->ListCheckpoints(), SizeIs(1));
  std::vector<std::string> skipped;
  auto loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->model_version, 4);
  EXPECT_TRUE(skipped.empty());
  EXPECT_FALSE(fs::exists(stray));
}

TEST_F(CheckpointStoreTest, VersionsOrderedNumerically) {
  auto store = MakeStore(/*keep=*/10);
  for (int64_t v : {100000000, 9, 99999999, 10}) {
    ASSERT_TRUE(store->Save(MakeCheckpoint(v)).ok());
  }
  std::vector<std::string> names;
  for (const std::string& p : store->ListCheckpoints()) {
    names.push_back(FileName(p));
  }
  EXPECT_THAT(names,
              ElementsAre("ckpt-00000009.fedge", "ckpt-00000010.fedge",
                          "ckpt-99999999.fedge", "ckpt-100000000.fedge"));
  auto loaded = store->LoadNewest();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->model_version, 100000000);
}

TEST_F(CheckpointStoreTest, UnrelatedAndNonCanonicalNames_Ignored) {
  auto store = MakeStore();
  ASSERT_TRUE(store->Save(MakeCheckpoint(2)).ok());
  WriteFile(dir_ + "/notes.txt", "hello");
  WriteFile(dir_ + "/ckpt-5.fedge", "short name");
  WriteFile(dir_ + "/ckpt-0000000x.fedge", "not a number");
  EXPECT_THAT(store->ListCheckpoints(),
              ElementsAre(dir_ + "/ckpt-00000002.fedge"));
  std::vector<std::string> skipped;
  auto loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_TRUE(skipped.empty());
  EXPECT_TRUE(fs::exists(dir_ + "/notes.txt"));
}

TEST_F(CheckpointStoreTest, RenamedFile_VersionMismatchSkipped) {
  auto store = MakeStore();
  const std::string path = *store->Save(MakeCheckpoint(3));
  fs::rename(path, dir_ + "/ckpt-00000008.fedge");
  std::vector<std::string> skipped;
  auto loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->has_value());
  ASSERT_THAT(skipped, SizeIs(1));
  EXPECT_THAT(skipped[0], HasSubstr("model version 3"));
}

TEST_F(CheckpointStoreTest, SameVersionTwice_Replaces) {
  auto store = MakeStore();
  Checkpoint first = MakeCheckpoint(6);
  ASSERT_TRUE(store->Save(first).ok());
  Checkpoint second = MakeCheckpoint(6);
  second.extra = "second";
  ASSERT_TRUE(store->Save(second).ok());
  EXPECT_THAT(store->ListCheckpoints(), SizeIs(1));
  auto loaded = store->LoadNewest();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->extra, "second");
}

TEST_F(CheckpointStoreTest, Create_MakesNestedDirAndValidatesKeep) {
  auto bad = CheckpointStore::Create({dir_, 0});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckpointStore::Create({"", 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto store = CheckpointStore::Create({dir_ + "/", 1});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE(fs::is_directory(dir_));
  EXPECT_EQ(*(*store)->Save(MakeCheckpoint(1)), dir_ + "/ckpt-00000001.fedge");
}

TEST_F(CheckpointStoreTest, Create_UnderRegularFile_Unavailable) {
  fs::create_directories(root_);
  WriteFile((root_ / "file").string(), "x");
  auto store = CheckpointStore::Create({(root_ / "file" / "sub").string(), 1});
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(CheckpointStoreTest, Save_DirGone_UnavailableAndNoFile) {
  auto store = MakeStore();
  fs::remove_all(dir_);
  absl::StatusOr<std::string> path = store->Save(MakeCheckpoint(1));
  EXPECT_EQ(path.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(fs::exists(dir_ + "/ckpt-00000001.fedge"));
  EXPECT_EQ(store->LoadNewest().status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(CheckpointStoreTest, Save_NegativeVersion_InvalidArgument) {
  auto store = MakeStore();
  EXPECT_EQ(store->Save(MakeCheckpoint(-1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A checkpoint file in format 1 (no model digest in the header; the final
// SHA-256 over everything before it), as earlier versions wrote it.
std::string FormatOneFile(const Checkpoint& c) {
  auto le = [](std::string* out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out->push_back(char((v >> 8 * i) & 0xff));
  };
  const std::string model = EncodeModel(c.model);
  std::string out = "FEDGECK1";
  le(&out, 1, 4);
  for (uint64_t v : {uint64_t(c.model_version), uint64_t(c.next_round),
                     uint64_t(c.completed_rounds), uint64_t(c.extra.size()),
                     uint64_t(model.size())}) {
    le(&out, v, 8);
  }
  out += c.extra + model;
  const Sha256Digest digest = Sha256Of(out);
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

TEST_F(CheckpointStoreTest, FormatOneFiles_StillRead) {
  auto store = MakeStore();
  const Checkpoint ckpt = MakeCheckpoint(4);
  WriteFile(dir_ + "/ckpt-00000004.fedge", FormatOneFile(ckpt));
  std::vector<std::string> skipped;
  auto loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  ExpectSameCheckpoint(ckpt, **loaded);
  EXPECT_TRUE(skipped.empty());
  // And a damaged one is still caught.
  std::string bytes = FormatOneFile(ckpt);
  bytes[bytes.size() / 2] ^= 0x10;
  WriteFile(dir_ + "/ckpt-00000004.fedge", bytes);
  loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  ASSERT_THAT(skipped, SizeIs(1));
  EXPECT_THAT(skipped[0], HasSubstr("SHA-256 mismatch"));
}

TEST_F(CheckpointStoreTest, KnownModelDigest_RecordedNotRecomputed) {
  auto store = MakeStore();
  const Checkpoint ckpt = MakeCheckpoint(5);
  // The right digest: a checkpoint like any other.
  ASSERT_TRUE(store->Save(ckpt, ckpt.model, ModelDigest(ckpt.model)).ok());
  auto loaded = store->LoadNewest();
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  ExpectSameCheckpoint(ckpt, **loaded);
  EXPECT_EQ(ReadFile(dir_ + "/ckpt-00000005.fedge"),
            ReadFile(*store->Save(ckpt)));
  // A wrong one is written as given, and the file never verifies.
  Sha256Digest wrong = ModelDigest(ckpt.model);
  wrong[0] ^= 1;
  ASSERT_TRUE(store->Save(ckpt, ckpt.model, wrong).ok());
  std::vector<std::string> skipped;
  loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  ASSERT_THAT(skipped, SizeIs(1));
  EXPECT_THAT(skipped[0], HasSubstr("model SHA-256 mismatch"));
}

// Hashed while written: the digest handed back is ModelDigest's, and the
// file is byte for byte the one written with the digest known.
TEST_F(CheckpointStoreTest, DigestComputedWhileWriting_ReturnedAndRecorded) {
  auto store = MakeStore();
  const Checkpoint ckpt = MakeCheckpoint(7);
  Sha256Digest digest{};
  absl::StatusOr<std::string> path = store->Save(ckpt, ckpt.model, &digest);
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(digest, ModelDigest(ckpt.model));
  const std::string written = ReadFile(*path);
  ASSERT_TRUE(store->Save(ckpt, ckpt.model, ModelDigest(ckpt.model)).ok());
  EXPECT_TRUE(written == ReadFile(*path));
  auto loaded = store->LoadNewest();
  ASSERT_TRUE(loaded.ok() && loaded->has_value()) << loaded.status();
  ExpectSameCheckpoint(ckpt, **loaded);
}

TEST_F(CheckpointStoreTest, FlippedModelDigestInTheHeader_Skipped) {
  auto store = MakeStore();
  const std::string path = *store->Save(MakeCheckpoint(6));
  std::string bytes = ReadFile(path);
  bytes[8 + 4 + 5 * 8 + 3] ^= 0x01;  // Inside the model's digest.
  WriteFile(path, bytes);
  std::vector<std::string> skipped;
  auto loaded = store->LoadNewest(&skipped);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  ASSERT_THAT(skipped, SizeIs(1));
  EXPECT_THAT(skipped[0], HasSubstr("SHA-256 mismatch"));
}

}  // namespace
}  // namespace fedge
