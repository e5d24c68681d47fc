// fedge's version, reported by every binary: fedge_build_info on /metrics
// (RegisterBuildInfo), the agent's Join and start-up line. Its one home is
// the CMake project's VERSION (CMakeLists.txt), compiled into
// common/version.cc only, so a release changes one line and rebuilds one
// file.
#ifndef FEDGE_COMMON_VERSION_H_
#define FEDGE_COMMON_VERSION_H_

namespace fedge {

// "MAJOR.MINOR.PATCH", e.g. "0.2.0".
extern const char kFedgeVersion[];

}  // namespace fedge

#endif  // FEDGE_COMMON_VERSION_H_
