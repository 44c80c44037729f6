# SPDX-License-Identifier: MIT
# Cross-build for 64-bit ARM on Debian: gcc-aarch64-linux-gnu (g++-aarch64-linux-gnu for the
# C++17 header test) against the arm64 multiarch packages (dpkg --add-architecture arm64;
# liburcu-dev:arm64, libcmocka-dev:arm64); tests run under qemu-user (package qemu-user).
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   ctest --test-dir build-aarch64 -L unit
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Debian installs arm64 libraries beside the host's, in /usr/lib/aarch64-linux-gnu: search
# there (and never the host's directories) for libraries and pkg-config files.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# CTest runs each test executable through qemu-user.  No -L /usr/aarch64-linux-gnu: the
# loader and libc come from libc6:arm64 (a dependency of liburcu-dev:arm64), at the paths
# the executables name.  With -L the loader of libc6-arm64-cross (an older 2.36 build)
# would load the multiarch libc of another build, and the first pthread_create hangs.
find_program(BPFMEM_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${BPFMEM_QEMU_AARCH64})
