#!/usr/bin/env bash
# Installs what the C ABI tests (capi/, examples/c, examples/fortran, examples/mpi)
# need, from the distribution's packages, when missing:
#   - a C and a C++ compiler (gcc, g++; the tests use cc and c++)
#   - gfortran
#   - Open MPI (mpicc, mpif90, mpirun)
#   - pkg-config
#   - cmake (the CMake package configuration's test builds a project with it)
# Idempotent: a second run with everything present makes no network access.
# Prints the tools it found as KEY=VALUE lines.
set -euo pipefail

log() { echo "capi-setup: $*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v gfortran >/dev/null 2>&1 || missing+=(gfortran)
command -v mpicc >/dev/null 2>&1 || missing+=(libopenmpi-dev)
command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)

if [ "${#missing[@]}" -gt 0 ]; then
	log "apt-get update"
	$SUDO apt-get update -qq >&2
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

for tool in cc c++ gfortran mpicc mpif90 mpirun pkg-config cmake; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		log "$tool is still missing"; exit 1
	fi
done
echo "CKP_CAPI_CC=$(command -v cc)"
echo "CKP_CAPI_FC=$(command -v gfortran)"
echo "CKP_CAPI_MPICC=$(command -v mpicc)"
echo "CKP_CAPI_MPIRUN=$(command -v mpirun)"
