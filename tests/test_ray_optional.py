"""The Ray path without Ray: importing costs nothing, a missing Ray says how to install it; shard bookkeeping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.distributed import (
    list_shards,
    read_manifest,
    read_scores,
    read_shard,
    rebuild_manifest,
    shard_name,
    write_shard,
)


def test_import_does_not_import_ray_and_missing_ray_gives_the_hint(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if Ray were not installed\n"
        "import gifsent_infer.distributed as d\n"
        "assert 'pyarrow' not in sys.modules\n"
        "try:\n"
        "    d.score_with_ray(['x.gif'], 'm.onnx', 'out')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'gifsent[ray]'" in proc.stdout


def row(path: str, sha: str, status: str = "ok", score: float = 0.5) -> dict:
    r = {
        "path": path,
        "sha256": sha,
        "model_id": "m",
        "status": status,
        "error": "" if status == "ok" else "broken",
        "frames": 4 if status == "ok" else None,
        "duration": 0.4 if status == "ok" else None,
        "segments": 2 if status == "ok" else None,
        "padding": 0.0 if status == "ok" else None,
    }
    for e in EMOTIONS:
        r[e] = score if status == "ok" else None
    return r


def test_shard_names_are_keyed_by_content_not_order():
    a, b = row("a.gif", "aa"), row("b.gif", "bb")
    assert shard_name([a, b], 1, "jsonl") == shard_name([b, a], 1, "jsonl")
    assert shard_name([a, b], 1, "jsonl") != shard_name([a, row("b.gif", "cc")], 1, "jsonl")
    assert shard_name([a], 1, "jsonl") != shard_name([a], 2, "jsonl")


def test_rebuild_keeps_one_row_per_input_newest_generation_first(tmp_path: Path):
    out = tmp_path
    write_shard(out, [row("a.gif", "aa"), row("b.gif", "bb", "error")], 1, "jsonl")
    write_shard(out, [row("c.gif", "cc")], 1, "jsonl")
    # a later run rescored b (now fixed) and a (content changed)
    write_shard(out, [row("b.gif", "b2", score=0.7), row("a.gif", "a2", score=0.9)], 2, "jsonl")
    # a crash between writing a rewritten shard and removing the old one leaves a duplicate
    write_shard(out, [row("c.gif", "cc"), row("d.gif", "dd")], 1, "jsonl")
    (out / ".part-g0001-junk.tmp").write_text("a torn temporary file")

    manifest = rebuild_manifest(out)
    assert manifest["rows"] == 4 and manifest["ok"] == 4 and manifest["error"] == 0
    paths = [r["path"] for p in list_shards(out) for r in read_shard(p)]
    assert sorted(paths) == ["a.gif", "b.gif", "c.gif", "d.gif"]
    rows = {r["path"]: r for r in read_scores(out)}
    assert rows["a.gif"]["sha256"] == "a2" and rows["a.gif"]["happiness"] == 0.9
    assert rows["b.gif"]["status"] == "ok"
    assert rebuild_manifest(out)["shards"] == manifest["shards"]  # idempotent
    assert read_manifest(out)["rows"] == 4
