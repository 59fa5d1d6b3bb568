"""ScoreOptions is the one definition of the scoring options: `score` and `ray` offer every
field under its flag with its default, `score_to_file` and `score_with_ray` take it, and Ray's
rows equal the local CLI's under every option."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import typer
from infer_support import build_model, gif_bytes, make_document, write_bad_inputs_folder

from gifsent_infer.cli import app
from gifsent_infer.contract import EMOTIONS, ScoreQuantiles
from gifsent_infer.options import OptionsError, ScoreOptions
from gifsent_infer.reading.budget import parse_size


def _params(command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["score", "ray", "serve"])
def test_every_score_option_is_a_flag_with_the_fields_default(command):
    from gifsent_infer.cli.serve import NOT_SERVED

    params = _params(command)
    defaults = ScoreOptions()
    for f in dataclasses.fields(ScoreOptions):
        if command == "serve" and f.name in NOT_SERVED:
            assert f.name not in params
            continue
        assert f.name in params, f"`gifsent-infer {command}` lacks {ScoreOptions.flag(f.name)}"
        p = params[f.name]
        assert ScoreOptions.flag(f.name) in p.opts, (command, f.name, p.opts)
        want = getattr(defaults, f.name)
        got = parse_size(p.default) if f.name == "memory_budget" else p.default
        assert got == want, (command, f.name, got, want)


def test_bad_option_values_are_usage_errors_naming_the_flag(tmp_path, capsys):
    from gifsent_infer.cli import main

    model = build_model(tmp_path / "m.onnx")
    (tmp_path / "a.gif").write_bytes(gif_bytes(1))
    for argv, words in (
        (["--memory-budget", "lots"], "--memory-budget"),
        (["--precision", "fp8"], "--precision"),
    ):
        with pytest.raises(SystemExit) as e:
            main([str(tmp_path / "a.gif"), "-m", str(model), *argv])
        assert e.value.code == 2 and words in capsys.readouterr().err
    with pytest.raises(OptionsError, match="--top"):
        ScoreOptions(top=18)


def test_the_keyword_api_and_from_options_agree(tmp_path):
    from gifsent_infer import Scorer

    model = build_model(tmp_path / "m.onnx")
    by_keywords = Scorer(model, device="cpu", threads=1, timeout=5.0)
    by_options = Scorer.from_options(ScoreOptions(model=model, device="cpu", threads=1, timeout=5))
    assert by_keywords.options == by_options.options
    a = by_keywords.score(gif_bytes(3))
    b = by_options.score(gif_bytes(3))
    assert a.scores == b.scores


def test_score_to_file_takes_batch_workers_and_row_extras_from_the_options(tmp_path):
    from gifsent_infer import Scorer
    from gifsent_infer.running.readable import ReadableError
    from gifsent_infer.writing.outpath import check_output
    from gifsent_infer.writing.outputs import read_rows
    from gifsent_infer.writing.run import score_to_file

    model = _model_with_quantiles(tmp_path / "q.onnx")
    items = [gif_bytes(i) for i in range(3)]
    opts = ScoreOptions(model=model, device="cpu", top=2, percentiles=True, batch_size=2, workers=0)
    scorer = Scorer.from_options(opts)
    out = tmp_path / "s.jsonl"
    tally = score_to_file(scorer, items, check_output(str(out)), "jsonl", options=opts)
    assert tally.ok == 3
    rows = read_rows(out).rows
    assert all(len(r["top"]) == 2 and f"{EMOTIONS[0]}_pct" in r for r in rows)

    plain = Scorer.from_options(ScoreOptions(model=build_model(tmp_path / "p.onnx")))
    with pytest.raises(ReadableError):
        score_to_file(plain, items, check_output(str(tmp_path / "x.csv")), "csv", options=opts)
    assert not (tmp_path / "x.csv").exists()


def _model_with_quantiles(path: Path) -> Path:
    levels = (0.0, 25.0, 50.0, 75.0, 100.0)
    values = {e: (0.0, 0.3, 0.5, 0.6, 1.0) for e in EMOTIONS}
    doc = dataclasses.replace(
        make_document(), score_quantiles=ScoreQuantiles(levels=levels, values=values, gifs=4)
    )
    return build_model(path, metadata=doc.to_json())


# --- Ray equals the local CLI under every option -----------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    pytest.importorskip("pyarrow")
    from ray_support import init_local_ray

    init_local_ray(ray, num_cpus=2)
    yield ray
    ray.shutdown()


def _cli(argv: list[str]) -> int:
    from gifsent_infer.cli import main

    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def _assert_same_rows(ray_rows: list[dict], local_rows: list[dict]) -> None:
    want = {r["path"]: r for r in local_rows}
    assert sorted(r["path"] for r in ray_rows) == sorted(want)
    for row in ray_rows:
        ref = want[row["path"]]
        assert list(row) == list(ref), (list(row), list(ref))
        assert row == ref, row["path"]


def test_ray_rows_equal_the_local_clis_under_every_option(local_ray, tmp_path):
    """One Ray run with every scoring option away from its default at once (what can differ
    on a CPU), then one with the row extras off, each against the local CLI's rows."""
    from hostile_http import HostileServer

    from gifsent_infer.scaleout.distributed import read_scores

    model = _model_with_quantiles(tmp_path / "q.onnx")
    gifs = write_bad_inputs_folder(tmp_path / "gifs", 4)
    (gifs / "big.gif").write_bytes(gif_bytes(3) + bytes(2000))  # refused as too large
    max_bytes = 2000
    options = [
        *("--device", "cpu", "--backend", "onnxruntime", "--precision", "fp32"),
        *("--threads", "1", "--batch-size", "3", "--workers", "1", "--memory-budget", "300M"),
        *("--max-bytes", max_bytes, "--timeout", "5", "--allow-private-urls"),
        *("--top", "5", "--percentiles", "--clip"),
    ]
    with HostileServer(gif_bytes(7)) as server:
        inputs = [gifs, f"{server.base}/ok.gif"]
        local = tmp_path / "local.jsonl"
        assert _cli(["score", *inputs, "-m", model, "-o", local, "-q", *options]) == 1
        out = tmp_path / "ray"
        assert _cli(["ray", *inputs, "-m", model, "-o", out, "-q", *options]) == 1
    local_rows = [json.loads(line) for line in local.read_text().splitlines()]
    ray_rows = read_scores(out)
    assert any("--max-bytes" in (r["error"] or "") for r in ray_rows)
    assert any(r["path"].startswith("http") and r["status"] == "ok" for r in ray_rows)
    assert all(len(r["top"]) == 5 for r in ray_rows if r["status"] == "ok")
    _assert_same_rows(ray_rows, local_rows)

    # the extras off: the plain columns (a table holds one kind of row: a fresh one)
    plain = ["--device", "cpu", "--top", "0", "--batch-size", "2"]
    local = tmp_path / "plain.jsonl"
    assert _cli(["score", gifs, "-m", model, "-o", local, "-q", *plain]) == 1
    out2 = tmp_path / "ray-plain"
    assert _cli(["ray", gifs, "-m", model, "-o", out2, "-q", *plain]) == 1
    _assert_same_rows(
        read_scores(out2), [json.loads(line) for line in local.read_text().splitlines()]
    )
    # resuming a table with other extra columns is refused, and changes nothing
    assert _cli(["ray", gifs, "-m", model, "-o", out2, "-q", "--top", "2"]) == 2


def test_the_model_actor_runs_at_the_options_precision(local_ray, tmp_path):
    from gifsent_infer.files import file_sha256
    from gifsent_infer.running.engine import DeviceError
    from gifsent_infer.scaleout.distributed import ModelLoadError, _ScoreActor

    model = build_model(tmp_path / "m.onnx")
    ref = [local_ray.put(model.read_bytes())]
    actor = _ScoreActor(file_sha256(model), "cpu", 1, None, "onnxruntime", "bf16")
    assert actor.load(ref).startswith(DeviceError.__name__) and "bf16" in actor.load_error
    with pytest.raises(ModelLoadError, match="bf16"):
        actor.score(ref, [])


@pytest.mark.parametrize(
    ("plan_cap", "slots", "workers", "budget", "want"),
    [
        (None, 2.0, None, 1 << 30, None),  # the default budget (4 tasks) binds not on 2 CPUs
        (None, 16.0, None, 1 << 30, 4),  # ... but on 16: 1 GiB of 256 MiB tasks
        (None, 16.0, 3, 1 << 30, 3),  # --workers 3
        (None, 16.0, 0, 1 << 30, 1),  # --workers 0: one at a time
        (2, float("inf"), None, 100 << 20, 1),  # decoding sharing 2 CPUs, a 100 MiB budget
        (2, float("inf"), 8, 1 << 30, 2),  # never more than the plan allows
    ],
)
def test_ray_decoding_tasks_follow_workers_and_the_memory_budget(
    plan_cap, slots, workers, budget, want
):
    from gifsent_infer.scaleout.distributed import DEFAULT_DECODE_MEMORY, decode_tasks_cap

    assert decode_tasks_cap(plan_cap, slots, workers, budget, DEFAULT_DECODE_MEMORY) == want
