#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the build tree into a scratch prefix, then uses it as a user would: a CMake project
# through find_package(bpfmem), and the README example through `pkg-config bpfmem`.
# Usage: install_check.sh <build dir> <source dir> <scratch dir> <cmake> <C compiler> [cflags
#        [ldflags [toolchain file [emulator]]]]
# (the compiler and linker flags the library was built with, sanitizers included, which its
# users need too; ldflags default to cflags.  A cross build passes its toolchain file and the
# command that runs its executables, e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu".)
set -eu

build=$1 src=$2 work=$3 cmake=$4 cc=$5 flags=${6:-} ldflags=${7-${6:-}} toolchain=${8:-}
emulator=${9:-}
prefix=$work/prefix

rm -rf "$work"
mkdir -p "$work"
"$cmake" --install "$build" --prefix "$prefix"

pcfile=$(find "$prefix" -name bpfmem.pc -path '*/pkgconfig/*')
libdir=$(dirname "$(find "$prefix" -name 'libbpfmem.so.0' | head -n 1)")
[ -n "$pcfile" ] || { echo "no bpfmem.pc under $prefix"; exit 1; }
[ -d "$libdir" ] || { echo "no libbpfmem.so.0 under $prefix"; exit 1; }
[ -f "$prefix/include/bpfmem.h" ] || { echo "no include/bpfmem.h under $prefix"; exit 1; }
[ -f "$prefix/include/bpfmem_version.h" ] || { echo "no include/bpfmem_version.h under $prefix"; exit 1; }
for page in man7/libbpfmem.7 man3/bpf_mem_alloc.3 man3/bpf_mem_cache_free.3; do
	[ -n "$(find "$prefix" -path "*/man/$page")" ] || { echo "no man/$page under $prefix"; exit 1; }
done

# run <exe>: runs a program of the target architecture
run() {
	# shellcheck disable=SC2086 # $emulator is a command with its options
	$emulator "$@"
}
# shared_libs <exe>: what ldd prints, also for another architecture: its own dynamic loader,
# run by the emulator, lists what it would load
shared_libs() {
	if [ -n "$emulator" ]; then
		run "$(LC_ALL=C readelf -l "$1" |
			sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')" --list "$1"
	else
		ldd "$1"
	fi
}

# Nothing but the scratch prefix may provide libbpfmem from here on.
LD_LIBRARY_PATH=$libdir
export LD_LIBRARY_PATH

echo "== find_package(bpfmem) -> bpfmem::bpfmem"
"$cmake" -S "$src/tests/packaging/consumer" -B "$work/consumer" \
	-DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
	-DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" \
	${toolchain:+-DCMAKE_TOOLCHAIN_FILE="$toolchain"}
"$cmake" --build "$work/consumer"
# the library the consumer loads must be the installed one
shared_libs "$work/consumer/consumer" | grep -F "$libdir/libbpfmem.so.0" ||
	{ echo "consumer does not load $libdir/libbpfmem.so.0:"; shared_libs "$work/consumer/consumer"
	  exit 1; }
run "$work/consumer/consumer"
if [ -x "$work/consumer/consumer_static" ]; then
	if shared_libs "$work/consumer/consumer_static" | grep -F libbpfmem; then
		echo "consumer_static links libbpfmem dynamically"
		exit 1
	fi
	run "$work/consumer/consumer_static"
fi

echo "== pkg-config bpfmem: the README example"
PKG_CONFIG_PATH=$(dirname "$pcfile")
export PKG_CONFIG_PATH
pc=$(pkg-config --cflags --libs bpfmem)
echo "pkg-config --cflags --libs bpfmem: $pc"
# The .pc may spell paths relative to itself (${pcfiledir}/../..): compare resolved paths.
incs="" libs=""
for opt in $pc; do
	case $opt in
	-I*) incs="$incs $(readlink -f "${opt#-I}")" ;;
	-L*) libs="$libs $(readlink -f "${opt#-L}")" ;;
	esac
done
case "$incs " in
*" $(readlink -f "$prefix/include") "*) ;;
*) echo "pkg-config's include path does not point at $prefix/include"; exit 1 ;;
esac
case "$libs " in
*" $(readlink -f "$libdir") "*) ;;
*) echo "pkg-config's library path does not point at $libdir"; exit 1 ;;
esac
# shellcheck disable=SC2086 # $pc, $flags and $ldflags are lists of options
"$cc" $flags -Wall -Wextra -Werror -o "$work/readme_example" \
	"$src/tests/packaging/readme_example.c" $pc $ldflags
out=$(run "$work/readme_example")
echo "$out"
case $out in
"42: virtual CPU "[0-9]*) ;;
*) echo "unexpected output from the README example"; exit 1 ;;
esac
echo "installed package usable through CMake and pkg-config"
