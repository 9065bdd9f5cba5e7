#!/usr/bin/env bash
# Builds ckp's C library and installs it under a prefix, so that a C, C++ or Fortran
# project builds against it in one line:
#
#   bash capi/install.sh /usr/local            # or any prefix; needs go and cc
#   cc prog.c $(pkg-config --cflags --libs ckp)          # libckp.so
#   cc prog.c $(pkg-config --cflags --libs ckp-static)   # libckp.a
#   gfortran -I/usr/local/include prog.f90 /usr/local/include/ckp_util.f90 ... (see README)
#
# Installs PREFIX/lib/libckp.so, PREFIX/lib/libckp.a, PREFIX/include/ckp_util.h,
# PREFIX/include/ckp_util.f90 (the Fortran module's source) and
# PREFIX/lib/pkgconfig/ckp.pc and ckp-static.pc. With a prefix pkg-config does not
# search, set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig.
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

mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
(cd "$here/.." && CGO_ENABLED=1 "$go" build -buildmode=c-shared -o "$prefix/lib/libckp.so" ./capi)
(cd "$here/.." && CGO_ENABLED=1 "$go" build -buildmode=c-archive -o "$prefix/lib/libckp.a" ./capi)
# go build writes its own header beside each library; ckp_util.h is the one to use.
rm -f "$prefix/lib/libckp.h"
install -m 0644 "$here/ckp_util.h" "$here/fortran/ckp_util.f90" "$prefix/include/"
for pc in ckp ckp-static; do
	sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "$here/$pc.pc.in" >"$prefix/lib/pkgconfig/$pc.pc"
done
echo "installed libckp under $prefix (pkg-config: PKG_CONFIG_PATH=$prefix/lib/pkgconfig)"
