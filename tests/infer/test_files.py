"""gifsent_infer.files: hashes against hashlib, atomic writes that leave old or new, never half."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from gifsent_infer import files


def test_file_sha256_streams_and_matches_hashlib(tmp_path):
    data = os.urandom(files.CHUNK * 2 + 12345)  # three chunks, the last one short
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    seen: list[int] = []
    assert files.file_sha256(p, on_read=seen.append) == hashlib.sha256(data).hexdigest()
    assert seen == [files.CHUNK, 2 * files.CHUNK, len(data)]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert files.file_sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "sub" / "out.txt"  # the folder is created
    files.atomic_write_text(p, "one\n")
    files.atomic_write_bytes(p, b"two\n")
    assert p.read_bytes() == b"two\n"
    assert sorted(x.name for x in p.parent.iterdir()) == ["out.txt"]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "keep.csv"
    p.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"), files.atomic_open(p, "w") as f:
        f.write("half a new fi")
        # while the block runs the destination is still the old file
        assert p.read_text() == "old\n"
        raise RuntimeError("boom")
    assert p.read_text() == "old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["keep.csv"]

    with pytest.raises(ValueError, match="mode must be"), files.atomic_open(p, "a"):
        pass


def test_atomic_path_gives_a_name_in_the_same_folder(tmp_path):
    p = tmp_path / "model.onnx"
    with files.atomic_path(p) as tmp:
        assert tmp.parent == tmp_path and tmp.exists() and tmp.name.startswith(".model.onnx.")
        tmp.write_bytes(b"graph")
        assert not p.exists()
    assert p.read_bytes() == b"graph" and not tmp.exists()


def test_created_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        p = files.atomic_write_bytes(tmp_path / "x", b"x")
        with files.atomic_path(tmp_path / "y") as tmp:
            tmp.write_bytes(b"y")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "y").stat().st_mode) == 0o644


def test_json_round_trip_and_defaults(tmp_path):
    p = tmp_path / "doc.json"
    files.write_json(p, {"b": 1, "a": [1.5, "é"]})
    assert (
        p.read_text(encoding="utf-8")
        == json.dumps({"a": [1.5, "é"], "b": 1}, indent=2, sort_keys=True) + "\n"
    )
    assert files.read_json(p) == {"a": [1.5, "é"], "b": 1}
    files.write_json(p, {"b": 1, "a": 2}, indent=1, sort_keys=False)
    assert p.read_text() == '{\n "b": 1,\n "a": 2\n}\n'

    missing, broken = tmp_path / "missing.json", tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(OSError):
        files.read_json(missing)
    with pytest.raises(ValueError):
        files.read_json(broken)
    assert files.read_json(missing, {}) == {} and files.read_json(broken, None) is None
