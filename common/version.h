// fedge's version, reported by every binary (and as fedge_build_info).
#ifndef FEDGE_COMMON_VERSION_H_
#define FEDGE_COMMON_VERSION_H_

namespace fedge {

inline constexpr char kFedgeVersion[] = "0.2.0";

}  // namespace fedge

#endif  // FEDGE_COMMON_VERSION_H_
