#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer harness fuzz/fuzz_ops with clang (-fsanitize=fuzzer,address,undefined;
# the library instrumented for coverage too) and fuzzes for 60 s starting from the committed
# seed corpus fuzz/corpus/.  A crash, a failed shadow-model check, a leak or a timeout fails
# the step; the reproducer is left in build-ci-fuzz/artifacts/.
set -euo pipefail

cd "$(dirname "$0")/../.."
build=build-ci-fuzz
rm -rf "$build"
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBPFMEM_SANITIZE=address \
	-DBPFMEM_BUILD_FUZZ=ON -DBPFMEM_BUILD_TESTS=OFF -DBPFMEM_BUILD_BENCH=OFF \
	-DBPFMEM_BUILD_EXAMPLES=OFF -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link >/dev/null
cmake --build "$build" -j2 --target fuzz_ops

# New inputs go to a scratch corpus: the committed one stays as it is.
mkdir -p "$build/corpus" "$build/artifacts"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$build/fuzz/fuzz_ops" -max_total_time=60 -max_len=512 -timeout=30 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$build/artifacts/" "$build/corpus" fuzz/corpus
