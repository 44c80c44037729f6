#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Debian packages: dpkg-buildpackage -us -uc -b on a copy of the tree, lintian at the error
# level, `apt-get install ./*.deb`, then the README example (pkg-config) and
# tests/packaging/consumer (find_package) built and run against the installed packages only.
# The packages are purged again on the way out.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$root/build-ci-deb
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
project_version=$(sed -n 's/^project(bpfmem VERSION \([0-9.]*\) .*/\1/p' CMakeLists.txt)

# debian/changelog and project(VERSION) name one release
if [ "${version%%-*}" != "$project_version" ]; then
	echo "debian/changelog has version $version, CMakeLists.txt $project_version"
	exit 1
fi

rm -rf "$work"
mkdir -p "$work/libbpfmem-$version"
# the tracked tree (plus files not yet committed, for a developer's run), no build output;
# dpkg-buildpackage writes the packages next to it, inside $work
git ls-files -z --cached --others --exclude-standard |
	tar --null -T - -cf - | tar -xf - -C "$work/libbpfmem-$version"

echo "== dpkg-buildpackage -us -uc -b (libbpfmem $version)"
(cd "$work/libbpfmem-$version" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 ||
	{ tail -n 60 "$work/build.log"; echo "dpkg-buildpackage failed (log above)"; exit 1; }
tail -n 3 "$work/build.log"
mapfile -t debs < <(ls "$work"/*.deb)
for pkg in libbpfmem0 libbpfmem-dev; do
	ls "$work/${pkg}_${version}_"*.deb >/dev/null ||
		{ echo "no $pkg package built: ${debs[*]}"; exit 1; }
done

echo "== built in $SECONDS s"
echo "== lintian --fail-on error (warnings shown, not fatal)"
lintian --fail-on error --display-level '>=warning' "$work"/*.changes

echo "== apt-get install ./*.deb (at $SECONDS s)"
remove() {
	DEBIAN_FRONTEND=noninteractive apt-get purge -y -q libbpfmem0 libbpfmem-dev >/dev/null || true
}
trap remove EXIT
(cd "$work" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	./libbpfmem0_*.deb ./libbpfmem-dev_*.deb)
multiarch=$(dpkg-architecture -q DEB_HOST_MULTIARCH)
for f in /usr/include/bpfmem.h /usr/include/bpfmem_version.h \
	 "/usr/lib/$multiarch/libbpfmem.so" "/usr/lib/$multiarch/libbpfmem.a" \
	 "/usr/lib/$multiarch/pkgconfig/bpfmem.pc" "/usr/lib/$multiarch/cmake/bpfmem/bpfmemConfig.cmake" \
	 /usr/share/man/man7/libbpfmem.7.gz /usr/share/man/man3/bpf_mem_alloc.3.gz \
	 /usr/share/man/man3/bpfmem_version.3.gz; do
	dpkg -S "$f" >/dev/null || { echo "$f is not in an installed package"; exit 1; }
done
echo "installed: $(dpkg -L libbpfmem0 libbpfmem-dev | grep -c '^/usr/share/man/man[37]/') man pages," \
	"$(dpkg -L libbpfmem-dev | grep -c '^/usr/include/') headers; each listed file checked above"

# From here on only the installed packages may provide libbpfmem: no build tree, no prefix.
unset PKG_CONFIG_PATH LD_LIBRARY_PATH CMAKE_PREFIX_PATH
lib=$(readlink -f "/usr/lib/$multiarch/libbpfmem.so.0")
# loads <exe>: fails unless the executable's libbpfmem resolves to the packaged file
loads_packaged_lib() {
	local got
	got=$(ldd "$1" | awk '$1 == "libbpfmem.so.0" { print $3 }')
	if [ -z "$got" ] || [ "$(readlink -f "$got")" != "$lib" ]; then
		echo "$1 does not load the packaged $lib:"
		ldd "$1"
		exit 1
	fi
	echo "$(basename "$1") loads $lib"
}

echo "== README example: cc readme_example.c \$(pkg-config --cflags --libs bpfmem)"
# shellcheck disable=SC2046 # pkg-config prints a list of options
cc -Wall -Wextra -Werror -o "$work/readme_example" tests/packaging/readme_example.c \
	$(pkg-config --cflags --libs bpfmem)
loads_packaged_lib "$work/readme_example"
out=$("$work/readme_example")
echo "$out"
case $out in
"42: virtual CPU "[0-9]*) ;;
*) echo "unexpected output from the README example"; exit 1 ;;
esac

echo "== tests/packaging/consumer: find_package(bpfmem)"
cmake -S tests/packaging/consumer -B "$work/consumer" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >/dev/null
cmake --build "$work/consumer"
loads_packaged_lib "$work/consumer/consumer"
"$work/consumer/consumer"
if ldd "$work/consumer/consumer_static" | grep -F libbpfmem; then
	echo "consumer_static links libbpfmem dynamically"
	exit 1
fi
"$work/consumer/consumer_static"
echo "libbpfmem0 and libbpfmem-dev $version in $SECONDS s: built, lintian clean at error level, installed," \
	"used through pkg-config and find_package"
