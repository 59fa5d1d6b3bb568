"""Decode memory is bounded by bytes in flight, not by --workers (issue 12)."""

from __future__ import annotations

import threading
import time
import tracemalloc

import pytest
from infer_support import SPEC, build_model, gif_bytes

from gifsent_infer.reading.budget import MemoryBudget, estimate_decode_bytes, parse_size
from gifsent_infer.reading.gifio import DEFAULT_LIMITS, read_gif
from gifsent_infer.running.scorer import Scorer


def test_budget_never_exceeds_its_limit_and_lets_big_items_run_alone():
    budget = MemoryBudget(100)
    live, peaks = [0], []
    lock = threading.Lock()

    def work(n: int) -> None:
        with budget.hold(n) as got:
            with lock:
                live[0] += got
                peaks.append(live[0])
            time.sleep(0.01)
            with lock:
                live[0] -= got

    threads = [threading.Thread(target=work, args=(n,)) for n in [40, 40, 40, 250, 10, 60] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert max(peaks) <= 100 and budget.peak <= 100 and budget.used == 0
    with pytest.raises(ValueError):
        MemoryBudget(0)


def test_sizes():
    assert parse_size("2G") == 2 << 30
    assert parse_size("512MiB") == 512 << 20
    assert parse_size("1.5k") == 1536
    assert parse_size("800000000") == 800_000_000
    for bad in ("", "abc", "2X", "-1G", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_the_estimate_covers_what_decoding_allocates():
    data = gif_bytes(3, frames=12, size=(640, 480))
    tracemalloc.start()
    try:
        read_gif(data, SPEC)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    est = estimate_decode_bytes(data, SPEC, DEFAULT_LIMITS)
    assert peak <= est <= 20 * peak + (1 << 20), (peak, est)


def test_scorer_keeps_decoding_within_its_budget_whatever_the_workers(tmp_path):
    model = build_model(tmp_path / "m.onnx")
    gifs = [gif_bytes(i, frames=6, size=(320, 240)) for i in range(12)]
    one = estimate_decode_bytes(gifs[0], SPEC, DEFAULT_LIMITS)
    scorer = Scorer(model, device="cpu", threads=1, memory_budget=int(2.5 * one))
    results = list(scorer.score_many(gifs, workers=8, batch_size=4))
    assert [r.status for r in results] == ["ok"] * 12
    assert one <= scorer.budget.peak <= 2.5 * one  # at most two decodes at once, not eight
    # a budget smaller than one input: each runs alone, none is lost
    tiny = Scorer(model, device="cpu", threads=1, memory_budget=1000)
    assert all(r.ok for r in tiny.score_many(gifs[:4], workers=4))
    assert tiny.budget.peak == 1000


def test_cli_memory_budget_option(tmp_path, capsys):
    from gifsent_infer.cli import main

    model = build_model(tmp_path / "m.onnx")
    (tmp_path / "a.gif").write_bytes(gif_bytes(1))
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "a.gif"), "-m", str(model), "--memory-budget", "lots"])
    assert e.value.code == 2 and "--memory-budget" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "a.gif"), "-m", str(model), "--memory-budget", "64M", "-q"])
    assert e.value.code == 0
