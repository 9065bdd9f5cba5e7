#!/usr/bin/env bash
# Installs what the Python package's tests (python/, examples/python) need, from the
# distribution's packages, when missing: Debian's python3 (/usr/bin/python3, which the
# tests use, whatever python3 comes first on PATH) with
#   - pip, setuptools and wheel (pip install ./python builds with them, offline)
#   - numpy, pytest, mpi4py (with Open MPI) and torch (CPU)
# Idempotent: a second run with everything present makes no network access.
# Prints the interpreter as a KEY=VALUE line.
set -euo pipefail

log() { echo "python-setup: $*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PY=/usr/bin/python3

# Debian package -> the module it provides.
declare -A modules=(
	[python3-pip]=pip [python3-setuptools]=setuptools [python3-wheel]=wheel
	[python3-numpy]=numpy [python3-pytest]=pytest [python3-mpi4py]=mpi4py [python3-torch]=torch
)
missing=()
if [ ! -x "$PY" ]; then
	missing+=(python3 "${!modules[@]}")
else
	for pkg in "${!modules[@]}"; do
		"$PY" -c "import ${modules[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
	done
fi
command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)

if [ "${#missing[@]}" -gt 0 ]; then
	log "apt-get update"
	$SUDO apt-get update -qq >&2
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

for pkg in "${!modules[@]}"; do
	if ! "$PY" -c "import ${modules[$pkg]}" >/dev/null 2>&1; then
		log "$PY cannot import ${modules[$pkg]} ($pkg)"; exit 1
	fi
done
echo "CKP_PYTHON=$PY"
