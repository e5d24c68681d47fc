#include "common/file_util.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class FileUtilTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(testing::TempDir(), "/fedge_file_util_test.", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(FileUtilTest, WriteAtomically_ThenRead) {
  const std::string path = dir_ + "/f";
  ASSERT_TRUE(WriteStringAtomically(path, "old").ok());
  ASSERT_TRUE(WriteStringAtomically(path, "new contents").ok());
  EXPECT_EQ(*ReadSmallFile(path, 100), "new contents");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(FileUtilTest, WriteFileAtomically_ConcatenatesChunks) {
  const std::string path = dir_ + "/chunks";
  int n = 0;
  ASSERT_TRUE(WriteFileAtomically(path, [&](std::string* out) {
                if (n == 3) return false;
                *out = absl::StrCat("part", n++, ";");
                return true;
              }).ok());
  EXPECT_EQ(*ReadSmallFile(path, 100), "part0;part1;part2;");
}

TEST_F(FileUtilTest, WriteIntoMissingDirectory_NotFoundNamingPath) {
  const absl::Status s = WriteStringAtomically(dir_ + "/no/such/f", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("/no/such/f"));
}

TEST_F(FileUtilTest, CheckCanCreateFile_ExistingFolder_OkAndCreatesNothing) {
  EXPECT_TRUE(CheckCanCreateFile(dir_ + "/m.fedge").ok());
  EXPECT_TRUE(fs::is_empty(dir_));
  EXPECT_TRUE(CheckCanCreateFile("relative_in_cwd.fedge").ok());
}

TEST_F(FileUtilTest, CheckCanCreateFile_MissingFolder_NotFoundNamingIt) {
  const absl::Status s = CheckCanCreateFile(dir_ + "/no/such/m.fedge");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("cannot create ", dir_,
                                                  "/no/such/m.fedge in "
                                                  "folder ",
                                                  dir_, "/no/such: ")));
}

TEST_F(FileUtilTest, CheckCanCreateFile_FolderIsAFile_FailedPrecondition) {
  ASSERT_TRUE(WriteStringAtomically(dir_ + "/f", "x").ok());
  const absl::Status s = CheckCanCreateFile(dir_ + "/f/m.fedge");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("not a folder"));
}

TEST_F(FileUtilTest, ReadSmallFile_Errors) {
  EXPECT_EQ(ReadSmallFile(dir_ + "/missing", 10).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteStringAtomically(dir_ + "/big", "0123456789").ok());
  EXPECT_EQ(ReadSmallFile(dir_ + "/big", 5).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(FileUtilTest, ReadFileChunks_RespectsChunkSize) {
  ASSERT_TRUE(WriteStringAtomically(dir_ + "/f", "abcdefg").ok());
  std::vector<std::string> pieces;
  ASSERT_TRUE(ReadFileChunks(dir_ + "/f", 3, [&](absl::string_view p) {
                pieces.emplace_back(p);
                return absl::OkStatus();
              }).ok());
  EXPECT_THAT(pieces, testing::ElementsAre("abc", "def", "g"));
}

TEST_F(FileUtilTest, FileLock_SecondAcquireFails_UntilReleased) {
  const std::string path = dir_ + "/LOCK";
  auto first = FileLock::Acquire(path, "hint");
  ASSERT_TRUE(first.ok()) << first.status();
  const absl::Status second = FileLock::Acquire(path, "use another").status();
  EXPECT_EQ(second.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(second.message(),
            path + " is locked by another process (use another)");
  first->reset();
  EXPECT_TRUE(FileLock::Acquire(path, "hint").ok());
}

TEST(ErrnoStatusTest, MapsCodes) {
  EXPECT_EQ(ErrnoStatus(ENOENT, "open", "/x").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrnoStatus(EACCES, "open", "/x").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoStatus(ENOSPC, "write", "/x").code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrnoStatus(EIO, "read", "/x").code(), absl::StatusCode::kInternal);
  EXPECT_THAT(ErrnoStatus(EIO, "read", "/x").message(), HasSubstr("read /x"));
}

}  // namespace
}  // namespace fedge
