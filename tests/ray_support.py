"""Helpers for the Ray tests: a private local Ray instance, the local CLI's rows as reference,
and what a plain reader of an output folder sees."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from gifsent_infer.cli import main
from gifsent_infer.contract import EMOTIONS
from gifsent_infer.writing.outputs import COLUMNS, read_rows


def init_local_ray(ray, num_cpus: int = 2) -> None:
    """A new local Ray instance on free ports; address="local" so that it is never a
    cluster another process on this machine started (plain ray.init() would join one)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 << 20,
        configure_logging=False,
    )


def local_rows(model: Path, gifs: Path, out: Path) -> dict[str, dict]:
    """The local CLI's rows for the same inputs, keyed by path."""
    try:
        main([str(gifs), "--out", str(out), "--model", str(model), "--device", "cpu", "--quiet"])
    except SystemExit as e:
        assert e.code in (0, 1)  # 1: some inputs failed
    return {r["path"]: r for r in read_rows(out).rows}


def assert_same_rows(got: list[dict], want: dict[str, dict]) -> None:
    paths = [r["path"] for r in got]
    assert Counter(paths) == Counter(list(want)), "not one row per input"
    for row in got:
        assert_same_row(row, want[row["path"]])


def assert_same_row(row: dict, ref: dict) -> None:
    assert tuple(row) == tuple(ref)  # COLUMNS plus the same extras (the default `top`)
    assert set(COLUMNS) <= set(row)
    for c in ref:
        if c in EMOTIONS and row[c] is not None and ref[c] is not None:
            assert math.isclose(row[c], ref[c], rel_tol=0, abs_tol=1e-6), (row["path"], c)
        else:
            assert row[c] == ref[c], (row["path"], c, row[c], ref[c])


def pyarrow_rows(out: Path) -> list[dict]:
    """The folder as a plain reader sees it: pyarrow's dataset discovery (what
    pandas.read_parquet uses), which skips names starting with "_" or "."."""
    import pyarrow.parquet as pq

    if not any(p.suffix == ".parquet" for p in out.iterdir()):
        return []
    return pq.read_table(str(out)).to_pylist()


def assert_at_most_once(out: Path) -> list[dict]:
    rows = pyarrow_rows(out)
    twice = {p: n for p, n in Counter(r["path"] for r in rows).items() if n > 1}
    assert not twice, f"a plain reader sees two rows for {sorted(twice)}"
    return rows
