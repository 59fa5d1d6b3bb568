"""Issue 26: score files carry their provenance, Parquet equals CSV, embeddings and similarity
search, progress in logs, the model lookup after `make demo`, and `gifsent-infer models`."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from infer_support import build_model, make_document, write_gifs

from gifsent_infer.contract import Provenance

pa = pytest.importorskip("pyarrow")


def _cli(*args, cwd=None, env=None) -> tuple[int, str, str]:
    """gifsent-infer in a subprocess (stdout and stderr are pipes, not terminals)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from gifsent_infer.cli import main; main()", *map(str, args)],
        capture_output=True,
        timeout=180,
        text=True,
        cwd=cwd,
        env=env,
    )
    return proc.returncode, proc.stdout, proc.stderr


def demo_model(path: Path, **kw) -> Path:
    doc = dataclasses.replace(
        make_document(), provenance=Provenance(dataset_kind="procedural-demo", dataset_name="demo")
    )
    return build_model(path, metadata=doc.to_json(), **kw)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    return {
        "root": root,
        "model": build_model(root / "m.onnx", mean_output="features"),
        "demo": demo_model(root / "demo.onnx"),
        "gifs": write_gifs(root / "gifs", 6),
    }


# --- provenance of score files -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "parquet"])
def test_score_file_provenance_round_trip(work, tmp_path, fmt):
    from gifsent_infer.files import file_sha256
    from gifsent_infer.writing.provenance import read_score_metadata, sidecar_path

    out = tmp_path / f"s.{fmt}"
    code, _, err = _cli(work["root"] / "gifs", "-o", out, "-m", work["demo"], "-q")
    assert code == 0, err
    meta = read_score_metadata(out)
    assert meta is not None
    assert meta["model_id"] == meta["model_sha256"] == file_sha256(work["demo"])
    assert meta["is_demo"] is True and meta["dataset_kind"] == "procedural-demo"
    assert meta["backend"] in ("onnxruntime", "openvino") and meta["precision"] == "fp32"
    # the default --precision auto says why it ran fp32 (this test model records no bf16 check)
    assert meta["precision_reason"].startswith("auto") and meta["backend_reason"]
    assert meta["gifsent_version"] and meta["written"].endswith("Z")
    if fmt == "parquet":
        assert not sidecar_path(out).exists()  # in the file's own metadata
    else:
        assert json.loads(sidecar_path(out).read_text())["model_id"] == meta["model_id"]
    if fmt == "jsonl":  # the file stays rows only: every line is a row
        lines = out.read_text().splitlines()
        assert all("path" in json.loads(line) for line in lines)


def test_report_shows_the_demo_banner_from_the_score_file_alone(work, tmp_path):
    scores = tmp_path / "s.csv"
    code, _, err = _cli(work["root"] / "gifs", "-o", scores, "-m", work["demo"], "-q")
    assert code == 0, err
    out = tmp_path / "r.html"
    # no --model, and no model anywhere the report looks: only the sidecar says "demo"
    code, _, err = _cli("report", scores, "-o", out)
    assert code == 0, err
    html = out.read_text()
    assert 'id="demo-warning"' in html and "per the score file: scored by demo.onnx" in html
    code, _, err = _cli("search", scores, "-e", "happiness")
    assert code == 0 and "procedural demo data" in err
    # a file without provenance: no banner
    scores.with_name(scores.name + ".meta.json").unlink()
    code, _, err = _cli("report", scores, "-o", out)
    assert code == 0 and 'id="demo-warning"' not in out.read_text()


def test_scorer_on_a_demo_model_warns_once(work):
    from gifsent_infer.running.scorer import DemoModelWarning, Scorer

    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("default")
        for _ in range(3):
            Scorer(work["demo"], backend="onnxruntime")
        Scorer(work["model"], backend="onnxruntime")
    demo = [w for w in got if issubclass(w.category, DemoModelWarning)]
    assert len(demo) == 1 and issubclass(DemoModelWarning, UserWarning)
    assert "scores on real GIFs mean nothing" in str(demo[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DemoModelWarning)
        Scorer(work["demo"], backend="onnxruntime")  # silenced the usual way


# --- Parquet ---------------------------------------------------------------------------------


def test_parquet_equals_csv_row_for_row(work, tmp_path):
    from gifsent_infer.running.rows import arrow_schema
    from gifsent_infer.writing.outputs import read_rows

    bad = tmp_path / "bad.gif"
    bad.write_bytes(b"GIF89a broken")
    inputs = [work["root"] / "gifs", bad]
    csv_out, pq_out = tmp_path / "s.csv", tmp_path / "s.parquet"
    for out in (csv_out, pq_out):
        code, _, err = _cli(*inputs, "-o", out, "-m", work["model"], "--top", "3", "-q")
        assert code == 1, err  # the broken GIF is an error row in both
    a, b = read_rows(csv_out).rows, read_rows(pq_out).rows
    assert len(a) == len(b) == 7
    for ra, rb in zip(
        sorted(a, key=lambda r: r["path"]), sorted(b, key=lambda r: r["path"]), strict=True
    ):
        assert ra.keys() == rb.keys()
        for k in ra:
            if k == "top":
                assert (ra[k] or []) == (rb[k] or []) or [t["emotion"] for t in ra[k]] == [
                    t["emotion"] for t in rb[k]
                ]
            else:
                assert ra[k] == rb[k] or (ra[k] in ("", None) and rb[k] in ("", None)), k
    import pyarrow.parquet as pq

    schema = pq.read_schema(pq_out)
    base = arrow_schema()  # the Ray shards' schema: the same types for the row's columns
    for name in base.names:
        assert schema.field(name).type == base.field(name).type


def test_parquet_to_stdout_is_a_usage_error(work):
    code, _, err = _cli(work["root"] / "gifs", "-o", "-", "-f", "parquet", "-m", work["model"])
    assert code == 2 and "Parquet needs an output file" in err


# --- embeddings and similarity -------------------------------------------------------------


def test_embeddings_equal_the_graphs_features_and_knn_matches_brute_force(work, tmp_path):
    from gifsent_infer.reading.gifio import read_gif
    from gifsent_infer.running.engine import open_engine
    from gifsent_infer.running.session import read_document
    from gifsent_infer.views.similar import similar
    from gifsent_infer.writing.embeddings import load_embeddings

    emb = tmp_path / "emb"
    gifs = sorted((work["root"] / "gifs").iterdir())
    code, _, err = _cli(*gifs, "-o", tmp_path / "s.csv", "-m", work["model"], "--embeddings", emb)
    assert code == 0, err
    vectors, index, meta = load_embeddings(emb)
    assert meta["output"] == "features" and meta["dim"] == 3 and meta["rows"] == len(gifs)
    assert [r["path"] for r in index] == [str(g) for g in gifs]
    assert (emb / "index.parquet").is_file() and list((emb / "emb").glob("*.npy"))
    # the vectors are the graph's `features` output for the same frames
    spec = read_document(work["model"]).sampling
    frames = np.stack([read_gif(g, spec).frames for g in gifs])
    want = open_engine(work["model"], backend="onnxruntime", device="cpu").run(frames, "features")
    np.testing.assert_allclose(vectors, want, rtol=0, atol=1e-5)
    # kNN order equals a brute-force cosine ranking
    unit = want / np.linalg.norm(want, axis=1, keepdims=True)
    for q in range(len(gifs)):
        sims = unit @ unit[q]
        ref = [i for i in sorted(range(len(gifs)), key=lambda i: (-sims[i], i)) if i != q]
        hits = similar(emb, str(gifs[q]), top=len(gifs))
        assert [h.path for h in hits] == [str(gifs[i]) for i in ref]
        assert [round(h.similarity, 5) for h in hits] == [round(float(sims[i]), 5) for i in ref]


def test_cosine_knn_matches_brute_force_and_ann_agrees_on_random_vectors():
    from gifsent_infer.views.similar import ann_knn, cosine_knn, normalise

    rng = np.random.default_rng(0)
    unit = normalise(rng.normal(size=(2000, 32)).astype(np.float32))
    q = 17
    ids, sims = cosine_knn(unit, unit[q], 25, exclude=q)
    brute = np.argsort(-(unit @ unit[q]), kind="stable")
    brute = [i for i in brute if i != q][:25]
    assert ids.tolist() == brute and np.all(np.diff(sims) <= 0)
    pytest.importorskip("faiss")
    ann_ids, _ = ann_knn(unit, unit[q], 25, exclude=q)
    assert q not in ann_ids.tolist()
    assert len(set(ann_ids.tolist()) & set(brute)) >= 23  # HNSW recall@25 on 2,000 vectors


def test_embeddings_need_a_features_output(work, tmp_path):
    old = build_model(tmp_path / "old.onnx")
    code, _, err = _cli(
        work["root"] / "gifs", "-o", tmp_path / "s.csv", "-m", old, "--embeddings", tmp_path / "e"
    )
    assert code == 2 and "no 'features' output" in err and "export the model again" in err
    assert not (tmp_path / "s.csv").exists()


def test_search_like_gif_with_embeddings_cli(work, tmp_path):
    emb = tmp_path / "emb"
    gifs = sorted((work["root"] / "gifs").iterdir())
    code, _, err = _cli(
        *gifs, "-o", tmp_path / "s.csv", "-m", work["model"], "--embeddings", emb, "-q"
    )
    assert code == 0, err
    code, out, err = _cli("search", "--embeddings", emb, "--like", gifs[0], "-n", "3", "-f", "json")
    assert code == 0, err
    hits = json.loads(out)
    assert len(hits) == 3 and str(gifs[0]) not in {h["path"] for h in hits}
    code, _, err = _cli("search", "--embeddings", emb, "--like", tmp_path / "nope.gif")
    assert code == 2 and "not in these embeddings" in err


# --- progress in logs ------------------------------------------------------------------------


def test_lines_progress_prints_a_line_every_n_seconds():
    from io import StringIO

    from rich.console import Console

    from gifsent_infer.cli.common import LinesProgress

    buf = StringIO()
    p = LinesProgress(every=10, console=Console(file=buf, width=200))
    now = [100.0]
    p._now = lambda: now[0]
    p.start(40)
    for i in range(40):
        now[0] += 1.0  # one GIF a second
        p.advance(ok=i % 10 != 0)
    p.stop()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 5  # at 10, 20, 30, 40 s, and the last
    assert lines[0] == "progress: 10/40 (25%), 1.0 GIFs/s, 1 error(s), elapsed 0:00:10, ETA 0:00:30"
    assert lines[-1].startswith("progress: 40/40 (100%)") and "ETA" not in lines[-1]


def test_progress_off_a_terminal_is_lines(work, tmp_path, capsys, monkeypatch):
    import itertools

    from gifsent_infer.cli import common, main

    assert isinstance(common.run_progress("auto", quiet=False), common.LinesProgress)  # no TTY
    assert isinstance(common.run_progress("auto", quiet=True), common.BarProgress)
    # a run whose stderr is not a terminal, on a clock that moves 1 s per look: a line every
    # 10 s of it, whatever this machine's speed
    init = common.LinesProgress.__init__

    def slow_clock_init(self, *a, **kw):
        init(self, *a, **kw)
        ticks = itertools.count()
        self._now = lambda: float(next(ticks))

    monkeypatch.setattr(common.LinesProgress, "__init__", slow_clock_init)
    gifs = write_gifs(tmp_path / "many", 30)

    def run(*args) -> tuple[int, str]:
        try:
            main([*map(str, gifs), "-o", str(tmp_path / "s.csv"), "-m", str(work["model"]), *args])
        except SystemExit as e:
            return e.code, capsys.readouterr().err
        return 0, capsys.readouterr().err

    code, err = run("--backend", "onnxruntime")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("progress: ")]
    assert len(lines) >= 2 and "/30 (" in lines[0] and "GIFs/s" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("progress: 30/30 (100%)")
    assert "\x1b[" not in err
    code, err = run("--backend", "onnxruntime", "--progress", "none")
    assert code == 0 and "progress: " not in err
    code, err = run("--progress", "dots")
    assert code == 2 and "--progress must be one of" in err


# --- finding the model -----------------------------------------------------------------------


def test_make_demos_model_is_found_from_the_repository_folder(tmp_path, monkeypatch):
    from gifsent_infer import paths
    from gifsent_infer.running.session import ModelError, resolve_model

    monkeypatch.delenv("GIFSENT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as e:
        resolve_model()
    msg = str(e.value)
    assert str(tmp_path / "home" / ".gifsent" / "models" / "gifsent-rnn.onnx") in msg
    assert str(tmp_path / "demo-home" / "models" / "gifsent-rnn.onnx") in msg
    stray = build_model(tmp_path / "demo-home" / "models" / "gifsent-rnn-int8.onnx")
    with pytest.raises(ModelError, match="Found nearby") as e:
        resolve_model()
    assert str(stray) in str(e.value)
    made = build_model(tmp_path / "demo-home" / "models" / "gifsent-rnn.onnx")
    assert resolve_model() == made
    assert paths.find_default_model() == made
    # a chosen GIFSENT_HOME is the only home: ./demo-home is not searched then
    monkeypatch.setenv("GIFSENT_HOME", str(tmp_path / "chosen"))
    assert paths.find_default_model() is None


def test_models_lists_and_model_name_picks(work, gifsent_home, tmp_path):
    from gifsent_infer.files import file_sha256

    models = gifsent_home / "models"
    models.mkdir(exist_ok=True)
    real = build_model(models / "gifsent-rnn.onnx")
    demo = demo_model(models / "gifsent-maxpool.onnx")
    code, out, err = _cli("models", "--json")
    assert code == 0, err
    listed = {e["name"]: e for e in json.loads(out)}
    assert set(listed) == {"gifsent-rnn", "gifsent-maxpool"}
    assert listed["gifsent-rnn"]["default"] and not listed["gifsent-maxpool"]["default"]
    assert listed["gifsent-maxpool"]["is_demo"] and listed["gifsent-maxpool"][
        "provenance"
    ].startswith("demo")
    assert listed["gifsent-rnn"]["model_id"] == file_sha256(real)
    code, out, _ = _cli("models")
    assert code == 0 and "gifsent-maxpool" in out
    for name in ("gifsent-maxpool", file_sha256(demo)[:10]):
        code, _, err = _cli(work["root"] / "gifs", "-o", tmp_path / "s.csv", "--model", name)
        assert code == 0, err
        assert f"model {demo}" in err and "procedural demo data" in err
    code, _, err = _cli(work["root"] / "gifs", "-o", tmp_path / "s.csv", "--model", "nosuch")
    assert code == 2 and "no model in `gifsent-infer models` has that name" in err
