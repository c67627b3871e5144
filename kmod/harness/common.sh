# shellcheck shell=bash
# Shared by kmod/harness/{setup,build-kmod,run-in-guest}: where things live, which kernel.
#
# The target kernel is Debian's newest installed *-amd64 kernel, never `uname -r`: the host
# may run a different kernel (and cannot load modules), the guest boots this one.

KH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KH_REPO=$(cd "$KH_DIR/../.." && pwd)

kh_die() {
	echo "kmod/harness: $*" >&2
	exit 2
}

# Cache: /var/cache/crfs/kmod-harness for root, ~/.cache/crfs/kmod-harness otherwise.
if [ -n "${CRFS_KH_CACHE:-}" ]; then
	KH_CACHE=$CRFS_KH_CACHE
elif [ "$(id -u)" = 0 ]; then
	KH_CACHE=/var/cache/crfs/kmod-harness
else
	KH_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/crfs/kmod-harness
fi

# Newest kernel version X with both /boot/vmlinuz-X and /lib/modules/X/build (headers),
# X ending in -amd64. Prints nothing when there is none.
kh_newest_kver() {
	local d v best=
	for d in /lib/modules/*-amd64; do
		[ -e "$d/build/Makefile" ] || continue
		v=${d##*/}
		[ -r "/boot/vmlinuz-$v" ] || continue
		best=$(printf '%s\n%s\n' "$best" "$v" | sed '/^$/d' | sort -V | tail -n 1)
	done
	printf '%s' "$best"
}

kh_kver() {
	if [ -n "${KVER:-}" ]; then
		printf '%s' "$KVER"
	else
		kh_newest_kver
	fi
}
