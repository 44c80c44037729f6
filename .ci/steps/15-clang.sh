#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# clang 14: the library, tests, examples and bench build with -Wall -Wextra -Werror, and the
# unit suite (ctest -L unit) passes.  The gcc build is the README command's.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build-ci-clang
rm -rf "$build"
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_C_FLAGS=-Werror -DCMAKE_CXX_FLAGS=-Werror
grep -E '^CMAKE_C_COMPILER:|^CMAKE_C_FLAGS:' "$build/CMakeCache.txt"
cmake --build "$build" -j2
ctest --test-dir "$build" -L unit --output-on-failure
echo "clang $(clang -dumpversion): built with -Wall -Wextra -Werror, unit suite passed"
