"""The training run: the stages of `gifsent_train.stages` in order, each skipped when its
outputs are current.

A stage records the hash of its inputs (files and the config fields it reads) in
``<run>/stages.json`` when it finishes; a later call with the same inputs and its
outputs present does nothing. Everything a stage writes lives in the run folder
(``gifsent_train.run.RunLayout``), except the feature cache, which is shared between
runs and keyed by content. The configuration is `gifsent_train.config.TrainConfig`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gifsent_infer.files import write_json as atomic_write_json

# TrainConfig and its helpers live in gifsent_train.config, the stages and the reporter in
# gifsent_train.stages; re-exported here because users (and older scripts) import them
# from the pipeline.
from gifsent_train.config import (  # noqa: F401
    PRESETS,
    TrainConfig,
    check_config_types,
    load_config_file,
    no_data_message,
    resolve_config,
)
from gifsent_train.run import RunLayout, mark_latest
from gifsent_train.stages import STAGES as STAGE_CLASSES
from gifsent_train.stages import Context, NoDataError, Reporter  # noqa: F401

STAGES = tuple(STAGE_CLASSES)  # ("scores", "features", "search", "report")


@dataclass
class RunResult:
    layout: RunLayout
    table1: str
    files: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds
    cpu_timings: dict[str, float] = field(default_factory=dict)  # CPU seconds, all threads


def _remove_if_empty(root: Path) -> None:
    """Delete a run folder that holds nothing but its config.json and empty folders."""
    import shutil

    try:
        files = [p for p in root.rglob("*") if not p.is_dir()]
    except OSError:
        return
    if all(p == root / "config.json" for p in files):
        shutil.rmtree(root, ignore_errors=True)


def run_all(
    config: TrainConfig,
    reporter: Reporter | None = None,
    *,
    stages: tuple[str, ...] = STAGES,
    force: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> RunResult:
    """Run `stages` in order (each skipped when current); mark the run as latest when complete."""
    layout = config.run_layout().ensure()
    atomic_write_json(layout.config, config.to_dict())
    ctx = Context(config, layout, reporter or Reporter(), force=force)
    try:
        for name, stage in STAGE_CLASSES.items():
            if name not in stages:
                continue
            if on_stage:
                on_stage(name)
            stage().execute(ctx)
    except BaseException:
        _remove_if_empty(layout.root)  # a failed first stage leaves no empty run folder
        raise
    ctx.write_timings()
    table1 = ""
    t1 = layout.report / "table1.md"
    if t1.is_file():
        table1 = t1.read_text(encoding="utf-8")
    if "report" in stages and all(layout.checkpoint(h).is_file() for h in config.heads):
        mark_latest(layout)
    return RunResult(
        layout=layout,
        table1=table1,
        files=ctx.report_files,
        timings=ctx.timings,
        cpu_timings=ctx.cpu_timings,
    )
