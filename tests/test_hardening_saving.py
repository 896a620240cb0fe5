"""Saving that cannot be turned against the host: a client's `save` never follows a
symlink, never opens a FIFO or another job's file, and is refused before the job runs
when the writer would refuse it. Real server, real classic engine, real files read back
with psd-tools."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from psd_tools import PSDImage

from layerbridge import protocol
from layerbridge.export import check_save_name
from tests.helpers import Peer, outcome
from tests.synthetic import flat_design as design


def saved_path(messages: list[dict], out: Path) -> Path:
    done = messages[-1]
    assert done["type"] == "done", done
    path = Path(done["saved"])
    assert path.parent == out and path.is_file() and not path.is_symlink()
    return path


def test_a_symlink_in_the_output_folder_is_not_followed(serve, classic_engine, tmp_path) -> None:
    out, outside = tmp_path / "out", tmp_path / "precious.txt"
    out.mkdir()
    outside.write_text("keep me")
    (out / "poster.psd").symlink_to(outside)
    running = serve(classic_engine, output_dir=out)
    with Peer(running.url, "saver") as peer:
        peer.submit("s1", design(seed=1), {"save": "poster.psd"})
        path = saved_path(peer.until_final("s1"), out)
    assert outside.read_text() == "keep me"
    assert (out / "poster.psd").is_symlink() and path.name == "poster (2).psd"
    assert PSDImage.open(path).width == 160


def test_a_fifo_in_the_output_folder_does_not_block_the_worker(
    serve, classic_engine, tmp_path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "pipe.ora")
    running = serve(classic_engine, output_dir=out, job_timeout_s=20)
    started = time.monotonic()
    with Peer(running.url, "saver") as peer:
        peer.submit("f1", design(seed=2), {"save": "pipe.ora"})
        path = saved_path(peer.until_final("f1", 30), out)
    assert time.monotonic() - started < 15
    assert path.name == "pipe (2).ora"


def test_two_jobs_saving_one_name_get_two_files(serve, classic_engine, tmp_path) -> None:
    out = tmp_path / "out"
    running = serve(classic_engine, output_dir=out)
    paths = []
    for n in range(3):
        with Peer(running.url, f"user{n}", source=f"127.0.0.{n + 1}") as peer:
            peer.submit("same", design(seed=n), {"save": "shared.psd"})
            paths.append(saved_path(peer.until_final("same"), out))
    assert [p.name for p in paths] == ["shared.psd", "shared (2).psd", "shared (3).psd"]
    assert len({p.read_bytes() for p in paths}) == 3  # each job's own file, none replaced
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp


@pytest.mark.parametrize("name", ["x.pſd", "x.oRa\u200b", "K.psd".replace("K", "\u212a"), "ok.PSD"])
def test_a_name_the_writer_refuses_is_refused_before_the_job(
    serve, classic_engine, tmp_path, name
) -> None:
    running = serve(classic_engine, output_dir=tmp_path)
    writer_accepts = True
    try:
        check_save_name(name)
    except ValueError:
        writer_accepts = False
    with Peer(running.url, "names") as peer:
        peer.submit("n", design(seed=3), {"save": name})
        messages = peer.until_final("n", 60)
    if writer_accepts:
        assert outcome(messages) == "done" and Path(messages[-1]["saved"]).exists()
    else:
        assert [m["type"] for m in messages] == ["error"], messages  # no layer streamed
        assert messages[0]["code"] == "bad_params"
        assert "ASCII" in messages[0]["message"]
    # the protocol's check is the writer's: same verdict on the same name
    try:
        protocol.validate_params("decompose", {"save": name}, protocol.Limits())
        protocol_accepts = True
    except protocol.ProtocolError:
        protocol_accepts = False
    assert protocol_accepts == writer_accepts
