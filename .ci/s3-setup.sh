#!/usr/bin/env bash
# Builds versitygw, the S3 server that the tests of store/s3 run (internal/s3test), at
# the version tools/go.mod pins, into the cache directory the tests look in:
#   ${CKP_CACHE:-<user cache dir>/ckp}/versitygw-<version>/versitygw
# (the user cache dir is $XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on
# macOS, as Go's os.UserCacheDir). Without this script the tests build it themselves
# on first use (1-3 minutes); run it ahead so that the tests do not wait.
# Idempotent: with the binary in place it does nothing. A lock file (the same the tests
# take) keeps concurrent builds apart. Prints the binary's path as CKP_S3_VERSITYGW=PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

log() { echo "s3-setup: $*" >&2; }

module=github.com/versity/versitygw
# The version tools/go.mod requires, read as internal/s3test reads it.
version="$(sed -nE "s#^[[:space:]]*(require[[:space:]]+)?$module[[:space:]]+(v[^[:space:]]+).*#\2#p" tools/go.mod | head -n 1)"
if [ -z "$version" ]; then
	log "tools/go.mod does not require $module"; exit 1
fi
if [ -n "${CKP_CACHE:-}" ]; then
	cache="$CKP_CACHE"
elif [ "$(uname)" = Darwin ]; then
	cache="$HOME/Library/Caches/ckp"
else
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/ckp"
fi
dir="$cache/versitygw-$version"
bin="$dir/versitygw"
mkdir -p "$dir"

if [ ! -x "$bin" ]; then
	if command -v flock >/dev/null; then
		exec 9>"$dir/build.lock"
		flock 9
	fi
	if [ ! -x "$bin" ]; then
		log "building versitygw $version (1-3 minutes)"
		start=$(date +%s)
		tmp="$bin.tmp$$"
		trap 'rm -f "$tmp"' EXIT
		(cd tools && go build -o "$tmp" "$module/cmd/versitygw")
		mv "$tmp" "$bin"
		trap - EXIT
		log "built in $(( $(date +%s) - start )) s"
	fi
fi
"$bin" --version >&2
echo "CKP_S3_VERSITYGW=$bin"
