#include "common/version.h"

#ifndef FEDGE_VERSION
#error "FEDGE_VERSION is set by common/CMakeLists.txt (project VERSION)"
#endif

namespace fedge {

const char kFedgeVersion[] = FEDGE_VERSION;

}  // namespace fedge
