// Not a test of its own: the program scratch_dir_test runs to watch
// ScratchDir and RemoveAtExit from outside a test binary. Each probe test
// writes a file into ScratchDir("probe") and a folder removed at exit
// ("shared"), under TEST_TMPDIR; the Fails probe then fails on purpose.
// Not registered with CTest.
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/common/scratch_dir.h"

namespace fedge::testing {
namespace {

// The failure, when `fail`, comes while the ScratchDir is alive, as a
// failing test's would.
void WriteFiles(bool fail) {
  ScratchDir dir("probe");
  std::ofstream(dir.path() + "/log.txt") << "written by the probe\n";
  const std::string shared = ::testing::TempDir() + "/shared";
  std::filesystem::create_directories(shared);
  std::ofstream(shared + "/cert.pem") << "shared\n";
  RemoveAtExit(shared);
  if (fail) {
    ADD_FAILURE() << "deliberate failure: scratch_dir_test checks that "
                     "the folder is kept";
  }
}

TEST(ScratchDirProbe, Passes) { WriteFiles(/*fail=*/false); }
TEST(ScratchDirProbe, Fails) { WriteFiles(/*fail=*/true); }

}  // namespace
}  // namespace fedge::testing
