"""Hostile inputs: FIFOs, sockets, devices, unreadable paths, odd names, symlink loops (issue 12).

Each case gets exactly one row with a clear reason, never a hang or a traceback. Calls that
used to hang run in a thread with a deadline, so a regression fails instead of hanging.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from pathlib import Path

import pytest
from infer_support import build_model, gif_bytes

from gifsent_infer.inputs import InputError, NoInputsError, expand_inputs, read_file
from gifsent_infer.scorer import Scorer


def within(seconds: float, fn, *args, **kw):
    """fn(*args, **kw), failing the test if it has not returned after `seconds`."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as e:  # re-raised in the test thread
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} hung for {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> Scorer:
    return Scorer(build_model(tmp_path_factory.mktemp("model") / "m.onnx"), device="cpu", threads=1)


@pytest.fixture
def odd(tmp_path) -> Path:
    """A folder with one good GIF, a .gif FIFO, a FIFO without suffix, a socket, a loop."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "good.gif").write_bytes(gif_bytes(1))
    os.mkfifo(d / "p.gif")
    os.mkfifo(d / "pipe")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "s.gif"))
    s.close()
    os.symlink("loop.gif", d / "loop.gif")  # points at itself
    return d


def by_name(expansion) -> dict[str, str | None]:
    return {Path(i.name).name: i.error for i in expansion.items}


def test_fifos_sockets_and_loops_in_a_folder_get_one_row_each_without_hanging(odd):
    got = by_name(within(10, expand_inputs, [str(odd)]))
    assert got["good.gif"] is None
    assert "FIFO" in got["p.gif"] and "not a regular file" in got["p.gif"]
    assert "socket" in got["s.gif"]
    assert "symlink loop" in got["loop.gif"]
    assert "pipe" not in got  # a FIFO without .gif is skipped, and never opened


def test_a_fifo_named_on_the_command_line_gets_a_correct_row(odd):
    e = within(10, expand_inputs, [str(odd / "good.gif"), str(odd / "pipe"), "/dev/null"])
    got = by_name(e)
    assert "FIFO" in got["pipe"]  # not "no such file or folder"
    assert "character device" in got["null"]


def test_read_file_and_scorer_refuse_non_regular_files_without_opening_them(odd, scorer):
    with pytest.raises(InputError, match="FIFO"):
        within(10, read_file, odd / "p.gif")
    r = within(10, scorer.score, str(odd / "p.gif"))
    assert r.status == "error" and "FIFO" in r.error
    r = within(10, scorer.score, odd / "loop.gif")
    assert "symlink loop" in r.error


def test_over_long_names_and_unreadable_paths_are_rows(tmp_path, monkeypatch, scorer):
    good = tmp_path / "good.gif"
    good.write_bytes(gif_bytes(2))
    long = str(tmp_path / ("x" * 300 + ".gif"))
    e = expand_inputs([str(good), long])
    assert by_name(e)[Path(long).name] == "file name too long"
    assert "too long" in scorer.score(long).error

    # Permission denied, as root too (root reads mode-000 files): make stat/scandir say EACCES.
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "inner.gif").write_bytes(gif_bytes(3))
    real_stat, real_scandir = os.stat, os.scandir

    def fake_stat(p, *a, **kw):
        if str(p).startswith(str(locked / "inner")):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_stat(p, *a, **kw)

    def fake_scandir(p=".", *a, **kw):
        if str(p) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_scandir(p, *a, **kw)

    monkeypatch.setattr(os, "stat", fake_stat)
    monkeypatch.setattr(os, "scandir", fake_scandir)
    e = expand_inputs([str(good), str(locked / "inner.gif"), str(locked)])
    got = {i.name: i.error for i in e.items}
    assert got[str(locked / "inner.gif")] == "permission denied"
    assert got[str(locked)] == "cannot list folder: permission denied"  # not "no GIFs"
    with pytest.raises(NoInputsError, match="permission denied"):
        expand_inputs([str(locked)])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files and folders")
def test_mode_000_folder_as_a_normal_user(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.gif").write_bytes(gif_bytes(1))
    locked.chmod(0)
    try:
        e = expand_inputs([str(tmp_path / "locked"), str(locked / "a.gif"), str(tmp_path)])
        assert all(i.error and "permission denied" in i.error for i in e.items)
    finally:
        locked.chmod(0o755)


def test_symlinks_to_one_file_keep_one_row_per_name(tmp_path):
    (tmp_path / "a.gif").write_bytes(gif_bytes(1))
    os.symlink("a.gif", tmp_path / "b.gif")
    e = expand_inputs([str(tmp_path / "a.gif"), str(tmp_path / "b.gif"), str(tmp_path / "a.gif")])
    assert [Path(i.name).name for i in e.items] == ["a.gif", "b.gif"]


def test_a_file_just_over_the_limit_says_by_how_much(tmp_path):
    p = tmp_path / "x.gif"
    p.write_bytes(b"GIF89a" + b"\0" * 1024)
    with pytest.raises(InputError, match=r"6 bytes over the 1\.0 KiB limit"):
        read_file(p, max_bytes=1024)
