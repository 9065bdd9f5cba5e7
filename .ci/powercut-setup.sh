#!/usr/bin/env bash
# Installs what the power-cut test (powercut/) needs:
#   - qemu-system-x86 (Debian package) if qemu-system-x86_64 is missing
#   - Debian's cloud kernel, downloaded (not installed) and extracted into a
#     cache directory, plus the virtio modules the guest loads.
# Idempotent: a second run with everything present makes no network access.
# Prints the resulting paths as KEY=VALUE lines. The Go harness finds them
# by itself when CKP_POWERCUT_CACHE is the same (or unset) in both.
#
# Env:
#   CKP_POWERCUT_CACHE  cache dir (default $HOME/.cache/ckp-powercut)
# Remove the cache dir to pick up a newer kernel package.
set -euo pipefail

CACHE="${CKP_POWERCUT_CACHE:-${HOME:-/root}/.cache/ckp-powercut}"
# Modules the guest needs for /dev/vda. Their dependencies are added, and the
# load order (modules/order) is derived from the modules' depends= fields.
MODS=(virtio_pci virtio_blk)

log() { echo "powercut-setup: $*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_updated=0
apt_update_once() {
	if [ "$apt_updated" = 0 ]; then
		log "apt-get update"
		$SUDO apt-get update -qq >&2
		apt_updated=1
	fi
}

# 1. qemu + e2fsprogs
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	apt_update_once
	log "installing qemu-system-x86"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-system-x86 >&2
fi
if ! PATH="$PATH:/usr/sbin:/sbin" command -v debugfs >/dev/null 2>&1; then
	apt_update_once
	log "installing e2fsprogs"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends e2fsprogs >&2
fi

# 2. kernel. The cache is complete when $CACHE/current points to a dir with
# vmlinuz and all modules (uncompressed .ko) and a "complete" stamp.
mkdir -p "$CACHE"
if [ ! -f "$CACHE/current/complete" ]; then
	resolve() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9].*-cloud-amd64/ {print $2; exit}'; }
	pkg="$(resolve || true)"
	if [ -z "$pkg" ]; then
		apt_update_once
		pkg="$(resolve || true)"
	fi
	if [ -z "$pkg" ]; then
		log "cannot resolve linux-image-cloud-amd64 (apt-cache depends)"; exit 1
	fi
	log "kernel package: $pkg"
	dir="$CACHE/$pkg"
	tmp="$(mktemp -d "$CACHE/.tmp.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	chmod 755 "$tmp" # lets apt's _apt user write the download (no warning)
	(cd "$tmp" && apt-get download -o APT::Sandbox::User=root "$pkg" >&2) || { apt_update_once; (cd "$tmp" && apt-get download -o APT::Sandbox::User=root "$pkg" >&2); }
	deb="$(ls "$tmp"/*.deb)"
	mkdir -p "$tmp/x"
	dpkg-deb -x "$deb" "$tmp/x"
	rm -rf "$dir.new"
	mkdir -p "$dir.new/modules"
	cp "$tmp"/x/boot/vmlinuz-* "$dir.new/vmlinuz"
	# Extract each wanted module and, recursively, what it depends on (the
	# "depends=" field of its .modinfo), writing them in load order
	# (dependencies first). The .deb has no modules.dep.
	: >"$dir.new/modules/order"
	declare -A seen=()
	visit() {
		local m="$1" f d
		m="${m//-/_}"
		[ -n "${seen[$m]:-}" ] && return 0
		seen[$m]=1
		f="$(find "$tmp/x/lib/modules" \( -name "$m.ko*" -o -name "${m//_/-}.ko*" \) -print -quit)"
		if [ -z "$f" ]; then
			if grep -Eq "/(${m}|${m//_/-})\.ko\$" "$tmp"/x/lib/modules/*/modules.builtin; then
				log "module $m: built in"
				return 0
			fi
			log "module $m not found in $pkg"
			exit 1
		fi
		log "module $m: ${f#"$tmp/x/"}"
		case "$f" in
		*.ko) cp "$f" "$dir.new/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$f" >"$dir.new/modules/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$dir.new/modules/$m.ko" ;;
		*.ko.gz) gzip -dc "$f" >"$dir.new/modules/$m.ko" ;;
		*) log "unknown module file $f"; exit 1 ;;
		esac
		for d in $(tr '\0' '\n' <"$dir.new/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
			visit "$d"
		done
		echo "$m.ko" >>"$dir.new/modules/order"
	}
	for m in "${MODS[@]}"; do visit "$m"; done
	echo "$pkg" >"$dir.new/package"
	touch "$dir.new/complete"
	rm -rf "$dir"
	mv "$dir.new" "$dir"
	ln -sfn "$pkg" "$CACHE/current.new"
	mv -T "$CACHE/current.new" "$CACHE/current"
	rm -rf "$tmp"
	trap - EXIT
fi

echo "CKP_POWERCUT_QEMU=$(command -v qemu-system-x86_64)"
echo "CKP_POWERCUT_KERNEL=$CACHE/current/vmlinuz"
echo "CKP_POWERCUT_MODULES=$CACHE/current/modules"
