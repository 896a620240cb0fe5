"""``layerbridge install-gimp-plugin`` into temporary folders."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from layerbridge import cli, gimp_install


def installed_files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def test_install_copies_the_plugin_and_its_client_and_checks_it(tmp_path, capsys) -> None:
    plugins = tmp_path / "plug-ins"
    assert cli.main(["install-gimp-plugin", "--gimp-dir", str(plugins)]) == 0
    target = plugins / "layerbridge_gimp"
    files = installed_files(target)
    assert {"layerbridge_gimp.py", "plugin_core.py"} <= files
    assert {"layerbridge/protocol.py", "layerbridge/client.py", "layerbridge/stages.py"} <= files
    assert "websockets/sync/client.py" in files
    assert "layerbridge.py" not in files  # nothing in the folder shadows the vendored package
    assert not [name for name in files if name.endswith((".so", ".pyd", ".pyc"))]
    assert os.stat(target / "layerbridge_gimp.py").st_mode & stat.S_IXUSR
    source = Path(gimp_install.__file__).parent
    assert (target / "layerbridge/client.py").read_bytes() == (
        source / "client.py"
    ).read_bytes()
    out = capsys.readouterr().out
    assert f"into {target}" in out
    assert "imports with" in out and "websockets" in out and "protocol 1" in out
    assert "layerbridge serve" in out


def test_install_twice_replaces_the_old_copy(tmp_path) -> None:
    plugins = tmp_path / "plug-ins"
    first = gimp_install.install_into(plugins)
    (first / "stale.py").write_text("left from an older release")
    second = gimp_install.install_into(plugins)
    assert second == first and not (second / "stale.py").exists()
    assert sorted(p.name for p in plugins.iterdir()) == ["layerbridge_gimp"]  # no staging left


def test_install_removes_the_plugin_of_older_releases(tmp_path) -> None:
    """Older releases installed plug-ins/layerbridge/layerbridge.py: GIMP would find both."""
    old = tmp_path / "plug-ins" / "layerbridge"
    old.mkdir(parents=True)
    (old / "layerbridge.py").write_text("# the old entry point")
    gimp_install.install_into(tmp_path / "plug-ins")
    assert sorted(p.name for p in (tmp_path / "plug-ins").iterdir()) == ["layerbridge_gimp"]


def test_gimp_dir_may_name_the_profile_folder(tmp_path) -> None:
    (tmp_path / "profile" / "plug-ins").mkdir(parents=True)
    assert gimp_install.plugins_folder(tmp_path / "profile") == tmp_path / "profile/plug-ins"
    assert gimp_install.plugins_folder(tmp_path / "new") == tmp_path / "new"


def test_a_folder_that_cannot_be_written_is_reported(tmp_path, capsys) -> None:
    blocker = tmp_path / "plug-ins"
    blocker.write_text("a file where the folder should be")
    args = argparse.Namespace(gimp_dir=blocker, python=sys.executable, no_check=False)
    assert gimp_install.install(args) == 1
    assert "cannot write the plug-in" in capsys.readouterr().err


def test_the_check_catches_a_plugin_gimp_would_ignore(tmp_path) -> None:
    target = gimp_install.install_into(tmp_path / "plug-ins")
    (target / "layerbridge_gimp.py").chmod(0o644)
    with pytest.raises(gimp_install.InstallError, match="not executable"):
        gimp_install.verify(target, None)
    (target / "layerbridge_gimp.py").chmod(0o755)
    (target / "websockets" / "sync" / "client.py").unlink()
    with pytest.raises(gimp_install.InstallError, match="missing"):
        gimp_install.verify(target, None)


def test_the_check_imports_the_vendored_copies(tmp_path) -> None:
    target = gimp_install.install_into(tmp_path / "plug-ins")
    assert "protocol 1" in gimp_install.check_imports(target, sys.executable)
    (target / "layerbridge" / "client.py").write_text("raise ImportError('broken')")
    with pytest.raises(gimp_install.InstallError, match="does not import"):
        gimp_install.check_imports(target, sys.executable)


@pytest.mark.parametrize(
    ("platform", "env", "relative"),
    [
        ("linux", {}, ".config/GIMP/3.0"),
        ("linux", {"XDG_CONFIG_HOME": "{home}/xdg"}, "xdg/GIMP/3.0"),
        ("win32", {"APPDATA": "{home}/AppData/Roaming"}, "AppData/Roaming/GIMP/3.0"),
        ("darwin", {}, "Library/Application Support/GIMP/3.0"),
        ("linux", {"GIMP3_DIRECTORY": "{home}/custom"}, "custom"),
    ],
)
def test_standard_profile_folders(tmp_path, platform, env, relative) -> None:
    env = {key: value.format(home=tmp_path) for key, value in env.items()}
    found = gimp_install.profile_candidates(platform, env, tmp_path)
    assert found == [tmp_path / relative]


def test_existing_profiles_are_all_found_native_and_flatpak(tmp_path) -> None:
    native = tmp_path / ".config/GIMP/3.0"
    flatpak = tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0"
    native.mkdir(parents=True)
    flatpak.mkdir(parents=True)
    assert gimp_install.profile_candidates("linux", {}, tmp_path) == [native, flatpak]


def test_a_wheel_carries_the_plugin_and_installs_it(tmp_path) -> None:
    """Installed from a wheel (no checkout beside it), the installer finds the plug-in's files
    inside the package, put there by the build (setup.py)."""
    checkout = Path(__file__).resolve().parents[1]
    build = [sys.executable, "-m", "pip", "wheel", str(checkout), "--no-deps"]
    build += ["--no-build-isolation", "-q", "-w", str(tmp_path / "dist")]
    subprocess.run(build, check=True, cwd=tmp_path, capture_output=True)
    wheel = next((tmp_path / "dist").glob("layerbridge-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    script = (
        "import sys; from layerbridge import cli, gimp_install; "
        "print(gimp_install.plugin_source()); "
        f"sys.exit(cli.main(['install-gimp-plugin', '--gimp-dir', {str(tmp_path / 'gimp')!r}]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == str(site / "layerbridge" / "gimp_plugin")
    for name in gimp_install.PLUGIN_FILES:
        installed = tmp_path / "gimp" / "layerbridge_gimp" / name
        source = checkout / "gimp_plugin" / "layerbridge_gimp" / name
        assert installed.read_bytes() == source.read_bytes()
