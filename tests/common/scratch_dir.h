// Test files that do not outlive their test: a folder for one test's files
// (state dirs, logs, models of up to 100 MB), removed when the test passed
// and kept, for its logs, when it failed; and folders a test binary shares,
// removed when it exits.
#ifndef FEDGE_TESTS_COMMON_SCRATCH_DIR_H_
#define FEDGE_TESTS_COMMON_SCRATCH_DIR_H_

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace fedge::testing {

class ScratchDir {
 public:
  // testing::TempDir()/`name`, made empty.
  explicit ScratchDir(const std::string& name)
      : path_(std::filesystem::path(::testing::TempDir()) / name) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    std::filesystem::create_directories(path_, ec);
    EXPECT_FALSE(ec) << "cannot make " << path_ << ": " << ec.message();
  }
  // Destroy it after whatever writes into it (the test's processes).
  ~ScratchDir() {
    if (::testing::Test::HasFailure()) {
      std::cerr << "the failed test's files are kept in " << path_ << "\n";
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // A name for the running test's folder: <prefix>_<pid>_<test name>, a
  // parameterized test's '/' written '_' (one folder, not nested ones).
  static std::string NameForCurrentTest(const std::string& prefix) {
    std::string test =
        ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(test.begin(), test.end(), '/', '_');
    return prefix + "_" + std::to_string(getpid()) + "_" + test;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Removes `path` (a folder a test binary shares among its tests, e.g. its
// certificates) when the binary exits.
inline void RemoveAtExit(std::string path) {
  static std::vector<std::string>* paths = [] {
    auto* p = new std::vector<std::string>();
    std::atexit([] {
      for (const std::string& path : *paths) {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
      }
    });
    return p;
  }();
  paths->push_back(std::move(path));
}

}  // namespace fedge::testing

#endif  // FEDGE_TESTS_COMMON_SCRATCH_DIR_H_
