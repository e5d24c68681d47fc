# Cross-compiles fedge for 64-bit ARM Linux (aarch64, Debian 12 userland) on
# an x86-64 Debian 12 host. scripts/build-arm64.sh makes the sysroot and runs
# cmake with this file; see docs/arm64.md.
#
# - Compilers: Debian's aarch64-linux-gnu-gcc/g++ (crossbuild-essential-arm64).
# - Libraries and headers (LibTorch, gRPC, protobuf, abseil, OpenSSL, zlib,
#   cpp-httplib, OpenBLAS): the arm64 sysroot FEDGE_ARM64_SYSROOT (default
#   <source>/build-arm64-sysroot), never the host's /usr.
# - Code generators run on the host: /usr/bin/protoc and
#   /usr/bin/grpc_cpp_plugin (proto/CMakeLists.txt reads
#   FEDGE_GRPC_CPP_PLUGIN), of the same protobuf/gRPC version as the sysroot.
# - Target programs that a build step would run go through qemu-aarch64-static.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

if(NOT FEDGE_ARM64_SYSROOT)
  if(DEFINED ENV{FEDGE_ARM64_SYSROOT})
    set(FEDGE_ARM64_SYSROOT "$ENV{FEDGE_ARM64_SYSROOT}")
  else()
    get_filename_component(FEDGE_ARM64_SYSROOT
      "${CMAKE_CURRENT_LIST_DIR}/../build-arm64-sysroot" ABSOLUTE)
  endif()
endif()
if(NOT EXISTS "${FEDGE_ARM64_SYSROOT}/usr/include/torch")
  message(FATAL_ERROR "No arm64 sysroot with LibTorch at "
    "${FEDGE_ARM64_SYSROOT}: run scripts/build-arm64.sh (or set "
    "FEDGE_ARM64_SYSROOT).")
endif()
# try_compile() projects load this file again: hand them the sysroot.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES FEDGE_ARM64_SYSROOT)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_SYSROOT "${FEDGE_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${FEDGE_ARM64_SYSROOT}")
# Programs from the host; libraries, headers and CMake packages from the
# sysroot only.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Code generation with the host's tools (the sysroot's are arm64 binaries).
set(Protobuf_PROTOC_EXECUTABLE /usr/bin/protoc CACHE FILEPATH
  "protoc that runs on the build machine")
set(FEDGE_GRPC_CPP_PLUGIN /usr/bin/grpc_cpp_plugin CACHE FILEPATH
  "grpc_cpp_plugin that runs on the build machine")

# pkg-config (cpp-httplib) reads the sysroot's .pc files only.
set(ENV{PKG_CONFIG_DIR} "")
set(ENV{PKG_CONFIG_LIBDIR}
  "${FEDGE_ARM64_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${FEDGE_ARM64_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${FEDGE_ARM64_SYSROOT}")

set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L "${FEDGE_ARM64_SYSROOT}")
