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

from gifsent_infer.reading.inputs import InputError, NoInputsError, expand_inputs, read_file
from gifsent_infer.running.scorer import Scorer


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


# --- names: not UTF-8, control characters, delimiters (D2, D3) --------------------------------

# Characters that break naive writers: CSV delimiters and quotes, line breaks of every kind
# (splitlines() also splits on \x1c, \x85, \u2028), tabs, non-ASCII, and the lone surrogates
# Python uses for the bytes of a file name that is not UTF-8 (b"\xff" -> "\udcff").
_HARD = [*",\"\r\n\t ;'\\", "\x1c", "\x85", "\u2028", "é", "猫", "😀", "\udcff", "\udc80"]


def _names(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    alphabet = _HARD + list("abcXYZ019._-/")
    out = {"plain.gif", "a,b.gif", 'q"uote.gif', "cr\r.gif", "lf\n.gif", "crlf\r\n.gif"}
    out.add(os.fsdecode(b"bad\xff.gif"))
    while len(out) < n:
        out.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) + ".gif")
    return sorted(out)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json"])
def test_every_name_round_trips_through_every_format(tmp_path, fmt):
    """Property: write rows named with generated hostile names, read them back, same names."""
    from gifsent_infer.writing.outputs import FileSink, load_previous, read_rows

    names = _names(300, seed=len(fmt))
    out = tmp_path / f"scores.{fmt}"
    sink = FileSink(out, fmt)
    for i, name in enumerate(names):
        sink.write({"path": name, "status": "ok", "sha256": f"{i:064x}", "frames": i})
    sink.abort()  # the partial file, as --resume reads it
    assert [r["path"] for r in load_previous(out, fmt).rows] == names
    sink = FileSink(out, fmt, keep=load_previous(out, fmt).rows)
    sink.finish()
    rows = read_rows(out).rows
    assert [r["path"] for r in rows] == names
    assert [r["frames"] for r in rows] == list(range(len(names)))


def test_cli_scores_and_resumes_names_that_are_not_utf8_or_hold_control_chars(tmp_path, capsys):
    from gifsent_infer.cli import main
    from gifsent_infer.writing.outputs import read_rows

    model = build_model(tmp_path / "m.onnx")
    d = tmp_path / "g"
    d.mkdir()
    names = [os.fsdecode(b"bad\xff.gif"), "cr\r.gif", "lf\nx.gif", 'q",.gif']
    for i, n in enumerate(names):
        (d / n).write_bytes(gif_bytes(i))

    def run(*args) -> tuple[int, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
        return code, capsys.readouterr().err

    for fmt in ("csv", "jsonl", "json"):
        out = tmp_path / f"o.{fmt}"
        code, err = run(d, "-o", out, "-m", model)
        assert code == 0, err
        rows = read_rows(out).rows
        assert sorted(Path(r["path"]).name for r in rows) == sorted(names)
        assert all(r["status"] == "ok" for r in rows)
        code, err = run(d, "-o", out, "-m", model, "--resume")
        assert code == 0 and f"{len(names)} of these inputs were scored" in err, err
        assert sorted(r["path"] for r in read_rows(out).rows) == sorted(str(d / n) for n in names)
    raw = (tmp_path / "o.csv").read_bytes()
    assert b"bad\xff.gif" in raw  # the name's own bytes, not a replacement character
    # stdout gets the same bytes (a subprocess: capsys cannot hold bytes that are not UTF-8)
    import subprocess
    import sys

    code = "from gifsent_infer.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(d), "-o", "-", "-m", str(model), "-q"],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"bad\xff.gif" in proc.stdout and b'cr\r.gif"' in proc.stdout
    scores = tmp_path / "o.csv"
    for fmt in ("csv", "table", "json"):
        proc = subprocess.run(
            [sys.executable, "-c", code, "search", scores, "-e", "happiness", "-f", fmt],
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert {"csv": b"bad\xff.gif", "table": b"bad\\xff.gif", "json": b"bad\\udcff"}[
            fmt
        ] in proc.stdout, proc.stdout


# --- output paths (D6) --------------------------------------------------------------------------


def _cli(*args) -> tuple[int, str]:
    """Run gifsent-infer in a subprocess: (exit code, stderr)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "from gifsent_infer.cli import main; main()", *map(str, args)],
        capture_output=True,
        timeout=120,
        text=True,
    )
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """(model, folder of 2 GIFs)."""
    root = tmp_path_factory.mktemp("small")
    g = root / "g"
    g.mkdir()
    for i in range(2):
        (g / f"{i}.gif").write_bytes(gif_bytes(i))
    return build_model(root / "m.onnx"), g


def test_bad_output_paths_are_usage_errors_before_any_scoring(tmp_path, small):
    from gifsent_infer.writing.outpath import OutputPathError, check_output

    model, g = small
    (tmp_path / "afile").write_text("x")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock.csv"))
    s.close()
    cases = {
        str(tmp_path): "is a folder",
        str(tmp_path / "afile" / "x.csv"): "not a folder",
        str(tmp_path / "sock.csv"): "socket",
    }
    if Path("/proc/self").is_dir():
        cases["/proc/x.csv"] = "cannot write the output in /proc"  # not writable, even as root
    for out, why in cases.items():
        with pytest.raises(OutputPathError, match=why):
            check_output(out)
    code, err = _cli(g, "-o", tmp_path, "-m", model)  # used to score all, then fail to rename
    assert code == 2 and "is a folder" in err and "Traceback" not in err
    code, err = _cli(g, "-o", tmp_path / "afile" / "x.csv", "-m", model)
    assert code == 2 and "not a folder" in err and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, small):
    model, g = small
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    code, err = _cli(g, "-o", ro / "x.csv", "-m", model)
    assert code == 2 and "permission denied" in err


def test_streams_symlinks_and_modes(tmp_path, small):
    from gifsent_infer.writing.outputs import read_rows

    model, g = small
    code, err = _cli(g, "-o", "/dev/null", "-m", model, "-q")
    assert code == 0, err
    assert stat_kind("/dev/null") == "char"  # still the device, not a regular file

    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, err = _cli(g, "-o", fifo, "-m", model, "-q", "-f", "jsonl")
    reader.join(30)
    assert code == 0, err
    assert got and got[0].count(b'"status": "ok"') == 2

    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real.name)
    code, err = _cli(g, "-o", link, "-m", model, "-q")
    assert code == 0, err
    assert link.is_symlink() and len(read_rows(real).rows) == 2

    umask = os.umask(0o022)
    os.umask(umask)
    code, _ = _cli(g, "-o", tmp_path / "new" / "s.json", "-m", model, "-q")
    assert code == 0
    assert (tmp_path / "new" / "s.json").stat().st_mode & 0o777 == 0o666 & ~umask


def stat_kind(path: str) -> str:
    import stat as st

    mode = os.stat(path).st_mode
    return "char" if st.S_ISCHR(mode) else "reg" if st.S_ISREG(mode) else "other"


# --- stdin, typos, -h, info --model -----------------------------------------------------------


def _cli_in(stdin: bytes, *args) -> tuple[int, bytes, str]:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "from gifsent_infer.cli import main; main()", *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


def test_gif_bytes_on_stdin_are_one_input_and_other_binary_is_refused(tmp_path, small):
    from gifsent_infer.writing.outputs import read_rows

    model, g = small
    gif = (g / "0.gif").read_bytes()
    out = tmp_path / "s.csv"
    code, _, err = _cli_in(gif, "-", "-o", out, "-m", model, "-q")
    assert code == 0, err
    rows = read_rows(out).rows
    assert [r["path"] for r in rows] == ["<stdin>"] and rows[0]["status"] == "ok"
    code, err = _cli(g / "0.gif", "-o", tmp_path / "f.csv", "-m", model, "-q")
    assert read_rows(tmp_path / "f.csv").rows[0]["sha256"] == rows[0]["sha256"]

    # PNG, MP4, WebP... bytes are media too (tests/infer/test_media.py); an ELF binary is not
    code, _, err = _cli_in(b"\x7fELF\x02\x01\x01\0\0\0\0\0", "-", "-m", model)
    assert code == 2 and "binary data that is not a GIF" in err and "Traceback" not in err
    # a list of names, one of them not UTF-8
    bad = os.fsencode(str(g)) + b"/bad\xff.gif"
    Path(os.fsdecode(bad)).write_bytes(gif)
    try:
        code, stdout, err = _cli_in(bad + b"\n", "-", "-m", model, "-q")
        assert code == 0, err
        assert b"bad\xff.gif" in stdout
    finally:
        os.unlink(bad)


def test_typos_of_commands_are_usage_errors_with_a_suggestion(tmp_path, small):
    model, g = small
    code, err = _cli("scroe", g / "0.gif", "-m", model)
    assert code == 2 and "Did you mean 'score'" in err
    code, err = _cli("serch", "x.csv")
    assert code == 2 and "Did you mean 'search'" in err
    # a file that exists under such a name is scored
    (tmp_path / "scroe").write_bytes((g / "0.gif").read_bytes())
    import subprocess
    import sys

    run_cli = "from gifsent_infer.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", run_cli, "scroe", "-m", str(model), "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for cli_main in ("gifsent_train.cli", "gifsent_infer.cli"):
        proc = subprocess.run(
            [sys.executable, "-c", f"from {cli_main} import main; main()", "reprot", "-q"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2
        if cli_main == "gifsent_train.cli":
            assert "Did you mean 'report'" in proc.stderr


@pytest.mark.parametrize(
    "module,args",
    [
        ("gifsent_infer.cli", ["score", "-h"]),
        ("gifsent_infer.cli", ["info", "-h"]),
        ("gifsent_infer.cli", ["search", "-h"]),
        ("gifsent_infer.cli", ["ray", "-h"]),
        ("gifsent_train.cli", ["-h"]),
        ("gifsent_train.cli", ["run", "-h"]),
        ("gifsent_train.cli", ["fetch", "-h"]),
        ("gifsent_export.cli", ["-h"]),
    ],
)
def test_dash_h_works_everywhere(module, args):
    import importlib

    from typer.testing import CliRunner

    app = importlib.import_module(module).app
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_info_takes_model_as_an_option_like_score(small):
    model, _ = small
    code, err = _cli("info", "--model", model)
    assert code == 0, err
    code, err = _cli("info", "-m", model, "--json")
    assert code == 0, err
