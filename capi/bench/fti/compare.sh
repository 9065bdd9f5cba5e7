#!/bin/bash
# Restart after a kill, from C: ckp against FTI (https://github.com/leobago/fti).
#
# Each round, in a fresh directory: ckp_restart saves a 64 MiB region 5 times
# (sync=always keep=3) and dies by SIGKILL, then a new process opens, registers and
# restores it; fti_restart checkpoints the same region 5 times at FTI's level 1 and
# dies by SIGKILL, then a new process runs FTI_Init, FTI_Protect and FTI_Recover. Both
# check every byte. Rounds interleave. Each line gives the time inside the program
# (from before ckpOpen / FTI_Init to the restored region) and the whole process's.
#
#   FTI_HOME=/path/to/fti/install capi/bench/fti/compare.sh [rounds]
#
# FTI is not packaged by Debian: build it with cmake (its CMakeLists.txt, with MPI and
# OpenSSL found) and install it under FTI_HOME. Needs cc, mpicc and the Go toolchain.
set -euo pipefail
: "${FTI_HOME:?set FTI_HOME to an FTI installation (include/fti.h, lib/libfti.so)}"
rounds=${1:-8}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$root" && go build -buildmode=c-shared -o "$work/libckp.so" ./capi)
rm -f "$work/libckp.h" # cgo's header; ckp_util.h is the interface
cc -O2 -I"$root/capi" -o "$work/ckp_restart" "$here/ckp_restart.c" -L"$work" -lckp -Wl,-rpath,"$work"
mpicc -O2 -I"$FTI_HOME/include" -o "$work/fti_restart" "$here/fti_restart.c" \
	-L"$FTI_HOME/lib" -lfti -Wl,-rpath,"$FTI_HOME/lib"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
n=$((64 << 20))
usec() { echo $(( ($2 - $1) / 1000 )); }
for r in $(seq 1 "$rounds"); do
	d=$(mktemp -d "$work/round.XXXX")
	cd "$d"
	"$work/ckp_restart" save r.ckp $n 2>/dev/null || true
	s=$(date +%s%N); in=$("$work/ckp_restart" restart r.ckp $n); e=$(date +%s%N)
	echo "round $r: $in, process $(usec "$s" "$e") us"
	cp "$here/config.fti" config.fti
	"$work/fti_restart" save config.fti $n >/dev/null 2>&1 || true
	s=$(date +%s%N); in=$("$work/fti_restart" restart config.fti $n 2>/dev/null | grep restart); e=$(date +%s%N)
	echo "round $r: $in, process $(usec "$s" "$e") us"
	cd "$work"
	rm -rf "$d"
done
