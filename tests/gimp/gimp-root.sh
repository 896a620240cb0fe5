#!/usr/bin/env bash
# Build (once) or reuse a Debian trixie root with a headless GIMP 3.0 in it, and print its path.
#
# GIMP 3 is packaged in Debian 13 (trixie), not in Debian 12, so the real-GIMP test runs it in a
# chroot. The root lives outside the repository (default /var/cache/layerbridge/gimp-root, or
# $LAYERBRIDGE_GIMP_ROOT) so clones and CI runs on the same machine share it. A root is only reused
# once a marker file says its build finished; a half-built one is thrown away and built again.
# Needs root (debootstrap, chroot) and network access to deb.debian.org for the first build.
set -euo pipefail

ROOT=${LAYERBRIDGE_GIMP_ROOT:-/var/cache/layerbridge/gimp-root}
MIRROR=${LAYERBRIDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
READY="$ROOT/.layerbridge-gimp-ready"
PACKAGES="gimp python3-gi gir1.2-gimp-3.0"

log() { echo "gimp-root: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "needs root (debootstrap and chroot); run it as root or with sudo"
    exit 77
fi

mkdir -p "$(dirname "$ROOT")"
# One builder at a time: two CI jobs on one machine would otherwise debootstrap into the same folder.
exec 9>"$ROOT.lock"
flock 9

if [ -f "$READY" ] && [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
    log "reusing $ROOT"
    echo "$ROOT"
    exit 0
fi

start=$(date +%s)
if [ -e "$ROOT" ]; then
    log "removing the unfinished root at $ROOT"
    rm -rf --one-file-system "$ROOT"
fi
if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    apt-get install -y debootstrap >&2 || { apt-get update >&2 && apt-get install -y debootstrap >&2; }
fi
log "debootstrap trixie into $ROOT"
debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >&2
# The host's resolver, so apt inside the root reaches the mirror.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
log "installing $PACKAGES"
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get update >&2
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends $PACKAGES >&2
chroot "$ROOT" apt-get clean >&2
chroot "$ROOT" gimp-console-3.0 --version >&2
touch "$READY"
log "built $ROOT in $(( $(date +%s) - start )) s"
echo "$ROOT"
