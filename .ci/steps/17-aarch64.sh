#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# aarch64: lib/ and include/ hold no x86-isms; the library, tests and examples cross-build with
# gcc-aarch64-linux-gnu against Debian's arm64 liburcu and cmocka (cmake/aarch64-linux-gnu.cmake),
# and the unit suite passes under qemu-user.  bench/ is not built: its peers (jemalloc, mimalloc,
# tcmalloc, abseil) would be arm64 packages too, and its numbers mean nothing under emulation.
# qemu-user on x86-64 keeps x86's strong memory order: this run cannot catch a missing barrier.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build-ci-aarch64

# x86-isms: inline assembly, rdtsc, x86 intrinsics or x86-only preprocessor branches
if grep -rnE '\basm\b|__asm__|rdtsc|[a-z]*intrin\.h|__x86_64__|__i386__|_mm_[a-z]' lib include; then
	echo "lib/ or include/ holds the x86-specific code above"
	exit 1
fi
echo "lib/, include/: no inline assembly, rdtsc, x86 intrinsics or x86-only branches"

rm -rf "$build"
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
	-DBPFMEM_BUILD_BENCH=OFF
cmake --build "$build" -j2
machine=$(readelf -h "$build/libbpfmem.so" | sed -n 's/^ *Machine: *//p')
echo "libbpfmem.so: $machine"
[ "$machine" = "AArch64" ] || { echo "expected an AArch64 library"; exit 1; }
# What qemu-user cannot run, and why (everything else of the unit label runs):
#  test_fork            qemu-user 7.2 aborts in the child of a threaded process that forks
#                       ("cpu_exec: assertion failed: (cpu == current_cpu)"), whatever the child does
#  test_reuse           its fork test hits the same qemu-user fork abort ("cpu_exec: assertion
#                       failed", also "qemu_plugin_vcpu_init_hook"), on every run
#  test_overflow_cpus, rel_test_init_faults
#                       re-exec themselves with another environment: running an aarch64
#                       executable from inside the emulator needs binfmt_misc, which a container
#                       does not have
not_run='^(test_fork|test_reuse|test_overflow_cpus|rel_test_init_faults)$'
if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
	not_run='^(test_fork|test_reuse)$'
fi
echo "not run under qemu-user (see the comment in $0): $not_run"
# the tests' own watchdog (tests/helpers.h), scaled like their CTest timeouts: qemu-user
# translates every instruction and delivers signals only between translated blocks
export T_WATCHDOG_SECONDS=240
ctest --test-dir "$build" -L unit -E "$not_run" -j2 --output-on-failure
echo "aarch64 (gcc $(aarch64-linux-gnu-gcc -dumpversion), $(qemu-aarch64 --version | head -n 1)):" \
	"unit suite passed"
