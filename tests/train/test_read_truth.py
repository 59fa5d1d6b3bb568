"""One rule for truth files (demo data's true strengths): columns by name, any order, extra
columns ignored, .gz accepted, blank rows skipped, a file without the columns refused by name.
The run reads truth through the same function (`gifsent_train.stages.truth_map`)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from gifsent_infer.contract import EMOTIONS
from gifsent_train.config import TrainConfig
from gifsent_train.demo_data import read_truth
from gifsent_train.stages import truth_map

# two GIFs; value of emotion k is k/10 (first) and -k (second), so order mix-ups show
IDS = ["gifA", "gifB"]
WANT = np.array([[k / 10 for k in range(17)], [-float(k) for k in range(17)]])


def write(path: Path, columns: list[str], blank_row: bool = False) -> Path:
    lines = [",".join(columns)]
    for i, g in enumerate(IDS):
        cell = {"id": g, "note": "x"} | {e: repr(float(WANT[i, k])) for k, e in enumerate(EMOTIONS)}
        lines.append(",".join(cell[c] for c in columns))
        if blank_row:
            lines.append("")
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_demo_order_plain(tmp_path):
    ids, vals = read_truth(write(tmp_path / "truth.csv", ["id", *EMOTIONS]))
    assert ids == IDS
    assert vals.dtype == np.float64 and np.array_equal(vals, WANT)


def test_reordered_columns_extra_column_blank_rows_and_gzip(tmp_path):
    cols = ["note", *reversed(EMOTIONS), "id"]
    ids, vals = read_truth(write(tmp_path / "truth.csv.gz", cols, blank_row=True))
    assert ids == IDS
    assert np.array_equal(vals, WANT)


def test_missing_columns_are_named(tmp_path):
    p = write(tmp_path / "truth.csv", ["id", *EMOTIONS[:-1]])
    with pytest.raises(ValueError, match=EMOTIONS[-1]):
        read_truth(p)
    with pytest.raises(ValueError, match="header lacks id"):
        read_truth(write(tmp_path / "noid.csv", list(EMOTIONS)))


def test_the_run_reads_truth_with_the_same_rule(tmp_path):
    p = write(tmp_path / "truth.csv.gz", ["note", *reversed(EMOTIONS), "id"])
    tmap = truth_map(TrainConfig(data_dir=str(tmp_path), truth=str(p)))
    assert sorted(tmap) == IDS
    assert np.array_equal(tmap["gifB"], WANT[1])
    # found by default in the data folder, .gz included
    assert truth_map(TrainConfig(data_dir=str(tmp_path))) is not None
    assert truth_map(TrainConfig(data_dir=str(tmp_path / "none"))) is None
