"""The stage bookkeeping written once in `Stage.execute`: run, skip when the inputs hash and
every recorded output are unchanged, rerun when either changes or when forced; stages.json
and the context's timings record what ran. The four real stages run in order."""

from __future__ import annotations

import json
from pathlib import Path

from gifsent_train.config import TrainConfig
from gifsent_train.pipeline import STAGES
from gifsent_train.run import RunLayout
from gifsent_train.stages import Context, Reporter, Stage


class Seen(Reporter):
    def __init__(self):
        self.events: list[tuple[str, bool]] = []

    def stage(self, name: str, skipped: bool = False) -> None:
        self.events.append((name, skipped))


class Echo(Stage):
    """Writes <run>/echo.txt holding its input; counts its runs."""

    name = "echo"

    def __init__(self, value: str):
        self.value = value
        self.runs = 0

    def inputs(self, ctx: Context) -> str:
        return self.value

    def run(self, ctx: Context) -> list[Path]:
        self.runs += 1
        out = ctx.layout.root / "echo.txt"
        out.write_text(self.value, encoding="utf-8")
        return [out]


def test_execute_runs_skips_and_reruns(tmp_path):
    rep = Seen()
    ctx = Context(TrainConfig(), RunLayout(tmp_path / "run").ensure(), rep)
    st = Echo("a")
    st.execute(ctx)
    st.execute(ctx)
    assert st.runs == 1 and rep.events == [("echo", False), ("echo", True)]
    rec = json.loads(ctx.layout.stages.read_text())["echo"]
    assert rec["inputs"] == "a" and rec["outputs"] == [str(ctx.layout.root / "echo.txt")]
    assert set(ctx.timings) == {"echo"} and ctx.timings["echo"] >= 0

    (ctx.layout.root / "echo.txt").unlink()  # an output gone: not current any more
    st.execute(ctx)
    assert st.runs == 2

    other = Echo("b")  # other inputs
    other.execute(ctx)
    assert other.runs == 1 and (ctx.layout.root / "echo.txt").read_text() == "b"

    ctx.force = True
    other.execute(ctx)
    assert other.runs == 2

    ctx.write_timings()
    assert set(json.loads(ctx.layout.timings.read_text())) == {"echo"}


def test_the_pipeline_runs_the_four_stages_in_order():
    assert STAGES == ("scores", "features", "search", "report")


def test_the_scores_stage_makes_the_splits_with_the_configured_seed(tmp_path):
    """The stage that owns the splits takes them from the run's seed (and fractions), and a
    new seed reruns it: caught here, not only by the whole CLI run in test_bugs_train.py."""
    from gifsent_train.demo_data import make_demo_data
    from gifsent_train.splits import load_splits, make_splits
    from gifsent_train.stages import ScoresStage

    data = tmp_path / "demo"
    make_demo_data(data, n_gifs=30, comparisons_per_gif=10, seed=1, size_range=(32, 40))
    fractions = (0.6, 0.2, 0.2)
    cfg = TrainConfig(data_dir=str(data), seed=7, split_fractions=fractions)
    ctx = Context(cfg, RunLayout(tmp_path / "run").ensure(), Seen())
    stage = ScoresStage()
    stage.execute(ctx)
    splits = load_splits(ctx.layout.splits)
    ids = sorted(g for ids in splits.values() for g in ids)
    want = make_splits(ids, seed=7, fractions=fractions)
    assert want != make_splits(ids, seed=0, fractions=fractions), "the seeds must differ here"
    assert splits == want
    assert json.loads(ctx.layout.splits.read_text())["seed"] == 7
    before = stage.inputs(ctx)
    ctx.config = TrainConfig(data_dir=str(data), seed=8, split_fractions=fractions)
    assert stage.inputs(ctx) != before  # another seed: the stage is not current any more


def test_the_report_follows_new_search_results_with_the_same_inputs(tmp_path):
    """`search --force` reruns the search with unchanged inputs and writes a new metrics.json:
    the report stage is no longer current (seen: it skipped itself and kept the old tables)."""
    from gifsent_train.stages import ReportStage

    ctx = Context(TrainConfig(), RunLayout(tmp_path / "run").ensure(), Seen())
    ctx.book.record("search", "same-inputs", [], 0.0)
    ctx.layout.metrics.write_text('{"models": {"rnn": 1}}', encoding="utf-8")
    before = ReportStage().inputs(ctx)
    ctx.book.record("search", "same-inputs", [], 0.0)  # forced rerun: same inputs hash
    ctx.layout.metrics.write_text('{"models": {"rnn": 2}}', encoding="utf-8")
    assert ReportStage().inputs(ctx) != before
    ctx.layout.metrics.write_text('{"models": {"rnn": 1}}', encoding="utf-8")
    assert ReportStage().inputs(ctx) == before  # same results: still current
