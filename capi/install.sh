#!/usr/bin/env bash
# Builds ckp's C library and installs it under a prefix, so that a C, C++ or Fortran
# project builds against it in one line, or finds it with CMake:
#
#   bash capi/install.sh /usr/local            # or any prefix; needs Go 1.26 and cc (cgo)
#   cc prog.c $(pkg-config --cflags --libs ckp)          # libckp.so
#   cc prog.c $(pkg-config --cflags --libs ckp-static)   # libckp.a
#   gfortran -I/usr/local/include prog.f90 /usr/local/include/ckp_util.f90 ... (see README)
#   find_package(ckp REQUIRED) + target_link_libraries(prog PRIVATE ckp::ckp) (CMake)
#
# Installs PREFIX/lib/libckp.so, PREFIX/lib/libckp.a, PREFIX/include/ckp_util.h,
# PREFIX/include/ckp_util.f90 (the Fortran module's source),
# PREFIX/lib/pkgconfig/ckp.pc and ckp-static.pc, and PREFIX/lib/cmake/ckp/
# (ckpConfig.cmake, ckpConfigVersion.cmake). With a prefix pkg-config does not search,
# set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig; CMake: -DCMAKE_PREFIX_PATH=PREFIX.
#
# go build writes a header of its own (cgo's libckp.h) beside each library; the
# libraries are built in a temporary directory and that header is left there:
# ckp_util.h is the interface.
#
# Env: GO, the go command (default: go on PATH, else /usr/local/go/bin/go).
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: bash capi/install.sh PREFIX" >&2
	exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$1"
prefix="$(cd "$1" && pwd)"
go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
version="$(git -C "$here" describe --tags --always 2>/dev/null || echo 0)"

cmake_version="$(tr -d '[:space:]' <"$here/VERSION")"
shared=libckp.so
if [ "$(uname -s)" = Darwin ]; then shared=libckp.dylib; fi

build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
(cd "$here/.." && CGO_ENABLED=1 "$go" build -buildmode=c-shared -o "$build/$shared" ./capi)
(cd "$here/.." && CGO_ENABLED=1 "$go" build -buildmode=c-archive -o "$build/libckp.a" ./capi)

mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/cmake/ckp" "$prefix/include"
rm -f "$prefix/lib/libckp.h" # left by an older install.sh, which built into lib/
install -m 0755 "$build/$shared" "$prefix/lib/"
install -m 0644 "$build/libckp.a" "$prefix/lib/"
install -m 0644 "$here/ckp_util.h" "$here/fortran/ckp_util.f90" "$prefix/include/"
for pc in ckp ckp-static; do
	sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "$here/$pc.pc.in" >"$prefix/lib/pkgconfig/$pc.pc"
done
install -m 0644 "$here/cmake/ckpConfig.cmake" "$prefix/lib/cmake/ckp/"
sed -e "s|@VERSION@|$cmake_version|g" "$here/cmake/ckpConfigVersion.cmake.in" >"$prefix/lib/cmake/ckp/ckpConfigVersion.cmake"
echo "installed libckp under $prefix (pkg-config: PKG_CONFIG_PATH=$prefix/lib/pkgconfig; CMake: -DCMAKE_PREFIX_PATH=$prefix)"
