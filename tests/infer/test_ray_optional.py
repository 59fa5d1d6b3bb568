"""The Ray path without Ray: importing costs nothing, a missing Ray says how to install it; shard bookkeeping."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.scaleout.distributed import (
    _drain,
    auto_shard_rows,
    list_shards,
    list_staged,
    read_manifest,
    read_scores,
    read_shard,
    rebuild_manifest,
    shard_name,
    write_shard,
)
from gifsent_infer.scaleout.ray_shards import ShardWriter


def test_import_does_not_import_ray_and_missing_ray_gives_the_hint(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if Ray were not installed\n"
        "import gifsent_infer.scaleout.distributed as d\n"
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


class Block:
    """What Ray Data hands the driver: a block of score rows (here without pyarrow)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def to_pylist(self) -> list[dict]:
        return self.rows


def blocks(n_blocks: int, per_block: int, pause: float):
    """A pipeline that delivers `per_block` rows every `pause` seconds."""
    k = 0
    for _ in range(n_blocks):
        rows = []
        for _ in range(per_block):
            rows.append({**row(f"g{k:03d}.gif", f"s{k}"), "index": k})
            k += 1
        yield Block(rows)
        time.sleep(pause)


def test_shards_flush_by_rows(tmp_path: Path):
    w = ShardWriter(tmp_path, 1, "jsonl", rows=3, seconds=3600.0, replaces=set())
    _drain(lambda: blocks(4, 2, 0.0), w)
    sizes = sorted(len(read_shard(p)) for p in list_shards(tmp_path))
    assert sizes == [2, 3, 3] and (w.scored, w.failed) == (8, 0)


def test_shards_flush_by_time_while_the_pipeline_is_busy(tmp_path: Path, monkeypatch):
    """Rows arriving every 0.6 s with a 0.1 s flush interval are on disk before the next
    block comes, though the row limit (1000) is never reached."""
    from gifsent_infer.scaleout import ray_cluster

    written: list[tuple[float, int]] = []
    t0 = time.monotonic()
    monkeypatch.setattr(
        ray_cluster,
        "fault_hook",
        lambda stage, n: (
            stage == "shard" and written.append((time.monotonic() - t0, len(list_shards(tmp_path))))
        ),
    )
    w = ShardWriter(tmp_path, 1, "jsonl", rows=1000, seconds=0.1, replaces=set())
    _drain(lambda: blocks(3, 2, 0.6), w)
    assert [n for _, n in written] == [1, 2, 3]
    # block k arrives at ~0.6*k s; its shard is written ~0.1 s later, before block k+1
    for k, (t, _) in enumerate(written):
        assert 0.6 * k + 0.05 < t < 0.6 * k + 0.5, written
    assert sorted(len(read_shard(p)) for p in list_shards(tmp_path)) == [2, 2, 2]


def test_replacement_rows_are_staged_and_shard_rows_follow_the_input_count(tmp_path: Path):
    w = ShardWriter(tmp_path, 2, "jsonl", rows=100, seconds=3600.0, replaces={"g001.gif"})
    _drain(lambda: blocks(1, 3, 0.0), w)
    assert [len(read_shard(p)) for p in list_shards(tmp_path)] == [2]
    assert [[r["path"] for r in read_shard(p)] for p in list_staged(tmp_path)] == [["g001.gif"]]
    assert [auto_shard_rows(n) for n in (1, 238, 1000, 10_000, 100_000)] == [8, 8, 32, 313, 1024]
