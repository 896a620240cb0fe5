#!/usr/bin/env bash
# Build (once) or reuse a Debian trixie root with GIMP 3.0 in it, and print its path.
#
# GIMP 3 is packaged in Debian 13 (trixie), not in Debian 12, so the real-GIMP test runs it in a
# chroot. The root lives outside the repository (default /var/cache/layerbridge/gimp-root, or
# $LAYERBRIDGE_GIMP_ROOT) so clones and CI runs on the same machine share it. A root is only reused
# once a marker file says its build finished; a half-built one is thrown away and built again.
# A reused root gets the packages it lacks (a root built before PACKAGES grew), so a machine
# with an older root and a fresh CI machine end up with the same set.
# Needs root (debootstrap, chroot) and network access to deb.debian.org for the first build.
set -euo pipefail

ROOT=${LAYERBRIDGE_GIMP_ROOT:-/var/cache/layerbridge/gimp-root}
MIRROR=${LAYERBRIDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
READY="$ROOT/.layerbridge-gimp-ready"
# gimp-console for the headless run; Xvfb and xdotool for the run of the GUI binary that
# presses Ctrl+Z in an image window (GIMP's PDB cannot undo); x11-apps for xwd, which takes the
# screenshots of `make screenshots`.
PACKAGES="gimp python3-gi gir1.2-gimp-3.0 xvfb xdotool x11-apps"

log() { echo "gimp-root: $*" >&2; }

# The PACKAGES the root has not installed (none: prints nothing).
missing_packages() {
    local package
    for package in $PACKAGES; do
        chroot "$ROOT" dpkg-query -W -f='${Status}' "$package" 2>/dev/null \
            | grep -q "install ok installed" || echo "$package"
    done
}

install_packages() {
    # The host's resolver, so apt inside the root reaches the mirror.
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get update >&2
    chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "$@" >&2
    chroot "$ROOT" apt-get clean >&2
}

if [ "$(id -u)" -ne 0 ]; then
    log "needs root (debootstrap and chroot); run it as root or with sudo"
    exit 77
fi

mkdir -p "$(dirname "$ROOT")"
# One builder at a time: two CI jobs on one machine would otherwise debootstrap into the same folder.
exec 9>"$ROOT.lock"
flock 9

if [ -f "$READY" ] && [ -x "$ROOT/usr/bin/gimp-console-3.0" ]; then
    missing=$(missing_packages | paste -sd ' ')
    if [ -n "$missing" ]; then
        start=$(date +%s)
        log "adding $missing to $ROOT"
        # shellcheck disable=SC2086  # one word per package
        install_packages $missing
        log "added them in $(( $(date +%s) - start )) s"
    fi
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
log "installing $PACKAGES"
# shellcheck disable=SC2086  # one word per package
install_packages $PACKAGES
chroot "$ROOT" gimp-console-3.0 --version >&2
touch "$READY"
log "built $ROOT in $(( $(date +%s) - start )) s"
echo "$ROOT"
