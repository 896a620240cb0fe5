"""``layerbridge install-gimp-plugin``: put the GIMP 3 plug-in where GIMP finds it, and check it.

GIMP 3 runs ``plug-ins/<name>/<name>.py`` from its profile folder when the file is executable.
GIMP's Python has no pip, so the plug-in folder gets its own copy of what it imports besides
the standard library: the product's client (``protocol.py`` and ``client.py``, as a small
``layerbridge`` package under ``vendor/``) and the ``websockets`` package of this Python's
installation. websockets' compiled speedup is left out: it is built for this Python, not
GIMP's, and websockets falls back to pure Python without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

PLUGIN_NAME = "layerbridge"
PLUGIN_FILES = ("layerbridge.py", "plugin_core.py")
CLIENT_FILES = ("__init__.py", "types.py", "protocol.py", "logs.py", "client.py")
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".c")
FLATPAK_ID = "org.gimp.GIMP"

# Run by the check in a fresh interpreter: the vendored copies must be the ones imported.
CHECK_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import plugin_core
import layerbridge.client, websockets, websockets.sync.client
for module in (plugin_core, layerbridge.client, websockets):
    if not module.__file__.startswith(sys.argv[1]):
        raise SystemExit(f"{module.__name__} came from {module.__file__}, not the plug-in")
print(f"Python {sys.version.split()[0]}, websockets {websockets.__version__}, "
      f"protocol {layerbridge.client.protocol.PROTOCOL_VERSION}")
"""


class InstallError(Exception):
    """Something that stops the install; the message says what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gimp-dir",
        type=Path,
        metavar="DIR",
        help="GIMP's plug-ins folder, or the profile folder that holds it "
        "(default: every GIMP 3 profile found, else the standard one)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        metavar="PATH",
        help="the Python that checks the installed plug-in imports (default: this one; "
        "GIMP's own Python is the better judge where you know its path)",
    )
    parser.add_argument("--no-check", action="store_true", help="copy only; skip the import check")


def install(args: argparse.Namespace) -> int:
    try:
        targets = [plugins_folder(args.gimp_dir)] if args.gimp_dir else default_plugin_folders()
        for folder in targets:
            installed = install_into(folder)
            print(f"Installed the LayerBridge GIMP plug-in into {installed}")
            for line in verify(installed, None if args.no_check else args.python):
                print(f"  ok: {line}")
    except InstallError as exc:
        print(f"layerbridge install-gimp-plugin: {exc}", file=sys.stderr)
        return 1
    print(
        "Restart GIMP; the commands are under Layer > LayerBridge. "
        "Start the server first with: layerbridge serve"
    )
    return 0


# --- where GIMP looks -------------------------------------------------------------------


def plugins_folder(given: Path) -> Path:
    """``--gimp-dir`` may name the plug-ins folder itself or the profile folder above it."""
    given = given.expanduser()
    if given.name != "plug-ins" and (given / "plug-ins").is_dir():
        return given / "plug-ins"
    return given


def profile_candidates(
    platform: str | None = None,
    env: dict[str, str] | None = None,
    home: Path | None = None,
) -> list[Path]:
    """GIMP 3 profile folders this platform may use, the standard one first."""
    platform = platform or sys.platform
    env = dict(os.environ) if env is None else env
    home = home or Path.home()
    if env.get("GIMP3_DIRECTORY"):  # GIMP's own override of the profile folder
        return [Path(env["GIMP3_DIRECTORY"])]
    if platform.startswith("win"):
        roots = [Path(env.get("APPDATA") or home / "AppData" / "Roaming") / "GIMP"]
    elif platform == "darwin":
        roots = [home / "Library" / "Application Support" / "GIMP"]
    else:
        config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        roots = [
            config / "GIMP",
            home / ".var" / "app" / FLATPAK_ID / "config" / "GIMP",
            home / "snap" / "gimp" / "current" / ".config" / "GIMP",
        ]
    found = [path for root in roots for path in sorted(root.glob("3.*")) if path.is_dir()]
    return found or [roots[0] / "3.0"]


def default_plugin_folders() -> list[Path]:
    return [profile / "plug-ins" for profile in profile_candidates()]


# --- what goes there --------------------------------------------------------------------


def plugin_source() -> Path:
    """The plug-in's files: inside the package when installed from a wheel, beside it in a
    checkout or an editable install."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "gimp_plugin", package.parents[1] / "gimp_plugin" / PLUGIN_NAME):
        if all((candidate / name).is_file() for name in PLUGIN_FILES):
            return candidate
    raise InstallError(
        f"the plug-in's files are not found in or beside {package}; reinstall LayerBridge "
        "(pip install --force-reinstall layerbridge, or pip install -e . in a checkout)"
    )


def websockets_source() -> Path:
    try:
        import websockets
    except ImportError as exc:
        raise InstallError("the websockets package is missing: pip install websockets") from exc
    return Path(websockets.__file__).resolve().parent


def install_into(plugins: Path) -> Path:
    """Copy the plug-in into ``plugins/layerbridge``, replacing an older copy whole."""
    target = plugins / PLUGIN_NAME
    staging = plugins / f".{PLUGIN_NAME}.new"
    try:
        plugins.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        source = plugin_source()
        for name in PLUGIN_FILES:
            shutil.copy2(source / name, staging / name)
        entry = staging / f"{PLUGIN_NAME}.py"
        entry.chmod(entry.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        vendor_client(staging / "vendor" / "layerbridge")
        shutil.copytree(
            websockets_source(),
            staging / "vendor" / "websockets",
            ignore=shutil.ignore_patterns("__pycache__", *(f"*{s}" for s in COMPILED_SUFFIXES)),
        )
        # Swapped in at the end, so a failed copy never leaves GIMP half a plug-in.
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InstallError(f"cannot write the plug-in into {plugins}: {exc}") from exc
    return target


def vendor_client(destination: Path) -> None:
    """The product's own client, the same files the server's tests use."""
    package = Path(__file__).resolve().parent
    destination.mkdir(parents=True)
    for name in CLIENT_FILES:
        shutil.copy2(package / name, destination / name)


# --- checking the result -----------------------------------------------------------------


def verify(installed: Path, python: str | None) -> list[str]:
    """What GIMP needs to find and run the plug-in; raise :class:`InstallError` if missing."""
    entry = installed / f"{installed.name}.py"
    if not entry.is_file():
        raise InstallError(f"{entry} is missing (GIMP runs <folder>/<folder>.py)")
    if os.name != "nt" and not os.access(entry, os.X_OK):
        raise InstallError(f"{entry} is not executable, so GIMP would ignore it: chmod +x it")
    vendored = [installed / "vendor" / "layerbridge" / name for name in CLIENT_FILES]
    vendored.append(installed / "vendor" / "websockets" / "sync" / "client.py")
    missing = [str(path) for path in vendored if not path.is_file()]
    if missing:
        raise InstallError(f"vendored files are missing: {', '.join(missing)}")
    lines = [f"{entry.name} is executable and named like its folder", "client vendored"]
    if python:
        lines.append(f"imports with {python}: {check_imports(installed, python)}")
    return lines


def check_imports(installed: Path, python: str) -> str:
    """Import the installed core and its vendored client in a fresh interpreter."""
    try:
        result = subprocess.run(
            [python, "-I", "-B", "-c", CHECK_SCRIPT, str(installed)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"cannot run {python} to check the plug-in: {exc}") from exc
    if result.returncode != 0:
        raise InstallError(
            f"the installed plug-in does not import with {python}:\n{result.stderr.strip()}"
        )
    return result.stdout.strip()
