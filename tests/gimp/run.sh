#!/usr/bin/env bash
# The GIMP 3 plug-in in a real GIMP 3.0 (`make test-gimp`; CI runs it too).
#
# Builds a Debian trixie root with GIMP once (tests/gimp/gimp-root.sh; reused afterwards from
# /var/cache/layerbridge/gimp-root or $LAYERBRIDGE_GIMP_ROOT), then runs
# tests/gimp/run_gimp_test.py: install with `layerbridge install-gimp-plugin`, drive every
# procedure through GIMP's PDB against `layerbridge serve` in headless gimp-console, check the
# saved XCF/ORA from outside, then press Ctrl+Z/Ctrl+Y in the GUI binary on a virtual display
# (Xvfb) and check that undo and redo bring back exactly the image before and after each one.
# Arguments go to run_gimp_test.py (e.g. --engine classic, --keep, --out DIR).
# Needs root for debootstrap/chroot: without it the test is skipped (exit 0) unless
# LAYERBRIDGE_REQUIRE_GIMP=1, which makes a missing root a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

started=$(date +%s)
status=0
ROOT=$(bash tests/gimp/gimp-root.sh) || status=$?
if [ "$status" -eq 77 ] && [ "${LAYERBRIDGE_REQUIRE_GIMP:-0}" != 1 ]; then
    echo "test-gimp: SKIPPED (needs root to build and enter the GIMP 3 chroot)"
    exit 0
elif [ "$status" -ne 0 ]; then
    echo "test-gimp: could not build the GIMP 3 root (exit $status)" >&2
    exit "$status"
fi
echo "test-gimp: GIMP root ready in $(( $(date +%s) - started )) s: $ROOT"
exec "$PYTHON" tests/gimp/run_gimp_test.py --root "$ROOT" "$@"
