#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Rust crate bindings/rust (bpfmem): built with Debian's cargo and rustc (1.63), offline,
# against libbpfmem.so from a fresh build; `cargo test` runs the safe layer and the rbpf helpers,
# from several threads and from a signal handler, then the rbpf example runs.
set -euo pipefail

cd "$(dirname "$0")/../.."
root=$PWD
build=build-ci-rust
rm -rf "$build"
cmake -S . -B "$build" -DBPFMEM_BUILD_TESTS=OFF -DBPFMEM_BUILD_EXAMPLES=OFF \
	-DBPFMEM_BUILD_BENCH=OFF -DBPFMEM_BUILD_STATIC=OFF >/dev/null
cmake --build "$build" -j2 --target bpfmem

# Debian's toolchain even where a rustup one comes first in PATH
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc
export BPFMEM_LIB_DIR=$root/$build CARGO_TARGET_DIR=$root/$build/rust-target
echo "60-rust: $(/usr/bin/cargo --version), $(/usr/bin/rustc --version)"
cd bindings/rust
timeout 600 /usr/bin/cargo test --offline
timeout 120 /usr/bin/cargo run --offline --example rbpf_ranges
echo "60-rust: cargo test and the rbpf_ranges example passed"
