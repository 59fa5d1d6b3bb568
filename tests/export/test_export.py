"""Export: tiny untrained models go through the real export path and come back equal through the runtime's contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from support import TINY_HEADS, tiny_checkpoint  # noqa: E402

from gifsent_export import api as export_api  # noqa: E402
from gifsent_export.api import PART_METADATA_KEY, export_checkpoint  # noqa: E402
from gifsent_export.frames import generate_gifs, load_frames  # noqa: E402
from gifsent_export.parity import ParityError  # noqa: E402
from gifsent_infer.contract import METADATA_KEY, ModelDocument  # noqa: E402
from gifsent_infer.paths import default_model_path  # noqa: E402
from gifsent_infer.reading.gifio import read_gif  # noqa: E402
from gifsent_infer.running.engine import open_engine  # noqa: E402
from gifsent_models.checkpoint import load_checkpoint  # noqa: E402
from gifsent_models.onnx import export_encoder_graph  # noqa: E402
from gifsent_models.registry import create_encoder  # noqa: E402
from gifsent_train.run import RunLayout, mark_latest  # noqa: E402
from gifsent_train.splits import save_splits  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ckpts = {h: root / f"tiny-{h}.pt" for h in TINY_HEADS}
    for h, p in ckpts.items():
        tiny_checkpoint(p, h)
    return {
        "root": root,
        "ckpt": ckpts,
        "eval": generate_gifs(root / "eval", 24, seed=11),
        "calib": generate_gifs(root / "calib", 16, seed=12),
    }


def document_of(path: Path) -> ModelDocument:
    """Read the metadata the way the runtime does."""
    meta = open_engine(path, backend="onnxruntime", device="cpu").metadata()
    return ModelDocument.from_json(meta[METADATA_KEY])


def ort_scores(path: Path, frames: np.ndarray) -> np.ndarray:
    return open_engine(path, backend="onnxruntime", device="cpu").run(frames, "scores")


def sampled(paths, spec, n):
    return np.stack([read_gif(p, spec).frames for p in paths[:n]])


@pytest.mark.parametrize("head", ["maxpool", "rnn", "linear"])
def test_fp32_export_matches_pytorch_through_the_contract(work, head, tmp_path):
    ckpt = work["ckpt"][head]
    out = tmp_path / f"{head}.onnx"
    result = export_checkpoint(ckpt, out, parity_gifs=work["eval"])
    assert out.is_file() and result.path == out
    assert result.parity.max_abs <= 1e-4 and result.parity.n_gifs == 8
    assert 17 <= result.opset <= 21

    loaded = load_checkpoint(ckpt)
    doc = document_of(out)
    assert doc.precision == "fp32"
    assert doc.head.name == head
    assert doc.checkpoint_sha256 == loaded.sha256
    assert doc.sampling == loaded.encoder.spec
    assert doc.metrics["dev"] == {"rmse": 0.1}

    model = onnx.load(str(out))
    (inp,) = model.graph.input
    assert inp.name == "frames" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [
        doc.sampling.num_frames,
        doc.sampling.crop,
        doc.sampling.crop,
        3,
    ]
    assert [o.name for o in model.graph.output] == ["scores", "segment_scores", "features"]

    # Three GIFs the parity check did not see, at a batch size it did not use.
    frames = sampled(work["eval"][-3:], doc.sampling, 3)
    got = ort_scores(out, frames)
    with torch.inference_mode():
        want = loaded.scorer(torch.from_numpy(frames)).numpy()
    assert got.shape == (3, 17) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_fused_features_equal_the_encoder_graphs_pooled_output(work, tmp_path):
    """The fused graph's `features` [B, D] is the encoder graph's [B, S, D] averaged over
    segments, from the same model call as the scores (to 1e-5)."""
    ckpt = work["ckpt"]["maxpool"]
    fused = tmp_path / "fused.onnx"
    export_checkpoint(ckpt, fused, parity_gifs=work["eval"])
    enc = tmp_path / "enc.onnx"
    export_checkpoint(ckpt, enc, part="encoder", parity_gifs=work["eval"])
    doc = document_of(fused)
    frames = sampled(work["eval"][-3:], doc.sampling, 3)
    engine = open_engine(fused, backend="onnxruntime", device="cpu")
    scores, feats = engine.run_all({"frames": frames}, ["scores", "features"])
    per_segment = open_engine(enc, backend="onnxruntime", device="cpu").run(frames, "features")
    assert feats.shape == (3, doc.encoder.feature_dim) and per_segment.ndim == 3
    np.testing.assert_allclose(feats, per_segment.mean(axis=1), rtol=0, atol=1e-5)
    np.testing.assert_allclose(scores, ort_scores(fused, frames), rtol=0, atol=0)


def test_fp32_parity_on_real_gifs(work, real_gifs, tmp_path):
    out = tmp_path / "real.onnx"
    result = export_checkpoint(work["ckpt"]["rnn"], out, parity_gifs=[real_gifs], parity_count=4)
    assert result.parity.n_gifs == 4 and result.parity.max_abs <= 1e-4
    assert "given GIFs" in result.parity_source


def test_dynamo_exporter(work, tmp_path):
    pytest.importorskip("onnxscript")
    out = tmp_path / "dynamo.onnx"
    result = export_checkpoint(
        work["ckpt"]["rnn"], out, exporter="dynamo", parity_gifs=work["eval"], parity_count=4
    )
    assert result.exporter == "dynamo" and result.parity.max_abs <= 1e-4
    frames = sampled(work["eval"], document_of(out).sampling, 3)
    with torch.inference_mode():
        want = load_checkpoint(work["ckpt"]["rnn"]).scorer(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(ort_scores(out, frames), want, rtol=0, atol=1e-4)


def test_fp16_roundtrip_on_cpu(work, tmp_path):
    out = tmp_path / "fp16.onnx"
    result = export_checkpoint(work["ckpt"]["rnn"], out, precision="fp16", parity_gifs=work["eval"])
    assert document_of(out).precision == "fp16"
    dev = result.deviation
    assert dev is not None and dev.n_gifs == 24 and dev.mean_spearman >= 0.98
    assert 0 < dev.max_abs < 1e-3  # measured 2.8e-4 (tests/export/test_tightened_export.py)
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kinds = {i.data_type for i in model.graph.initializer if i.name.startswith("encoder/")}
    assert onnx.TensorProto.FLOAT16 in kinds
    # The head stays float32.
    head_kinds = {
        i.data_type
        for i in model.graph.initializer
        if i.name.startswith("head/") and len(i.dims) > 1
    }
    assert head_kinds == {onnx.TensorProto.FLOAT}
    frames = sampled(work["eval"], document_of(out).sampling, 2)
    with torch.inference_mode():
        want = load_checkpoint(work["ckpt"]["rnn"]).scorer(torch.from_numpy(frames)).numpy()
    got = ort_scores(out, frames)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_int8_roundtrip_quantizes_only_the_encoder(work, tmp_path):
    out = tmp_path / "int8.onnx"
    result = export_checkpoint(
        work["ckpt"]["maxpool"],
        out,
        precision="int8",
        parity_gifs=work["eval"],
        calibration_gifs=work["calib"],
    )
    dev = result.deviation
    assert dev is not None and dev.mean_spearman >= 0.98 and dev.max_abs > 0
    assert result.calibration_source == "given GIFs"
    assert document_of(out).precision == "int8"
    model = onnx.load(str(out))
    ops = [(n.name, n.op_type) for n in model.graph.node]
    assert any(op == "QuantizeLinear" and name.startswith("encoder/") for name, op in ops)
    assert not any(
        op in ("QuantizeLinear", "DequantizeLinear") and name.startswith("head/")
        for name, op in ops
    )
    assert result.summary()["deviation_vs_fp32"]["spearman"].keys() >= {"amusement", "surprise"}
    # the gate ran on every installed backend, and the contract records what it measured
    from gifsent_infer.running.engine import installed_backends

    check = document_of(out).metrics["precision_check"]
    assert set(check["backends"]) == set(installed_backends())
    assert check["recipe"] in ("minmax", "percentile", "sensitive") and check["gifs"] == 24
    assert all(v["mean_spearman"] >= 0.98 for v in check["backends"].values())
    assert check == result.summary()["precision_check"]


def test_int8_that_cannot_keep_the_ranking_refuses_with_what_it_measured(work, tmp_path):
    out = tmp_path / "int8.onnx"
    with pytest.raises(ParityError) as e:
        export_checkpoint(
            work["ckpt"]["maxpool"],
            out,
            precision="int8",
            parity_gifs=work["eval"],
            calibration_gifs=work["calib"],
            int8_recipe="minmax",
            min_mean_spearman=0.99999,  # unreachable for int8: the refusal path
        )
    msg = str(e.value)
    assert "int8 (minmax) reorders GIFs" in msg and "mean Spearman 0.9" in msg
    assert "onnxruntime" in msg and not out.exists()


def test_reduced_precision_refuses_when_ranking_breaks(work, tmp_path, monkeypatch):
    from gifsent_export import precision as precision_mod

    real = precision_mod.to_fp16

    def scrambled(model):
        model = real(model)
        rng = np.random.default_rng(0)
        for init in model.graph.initializer:  # destroy the encoder: ranking goes
            arr = onnx.numpy_helper.to_array(init)
            if arr.ndim >= 4:
                init.CopyFrom(
                    onnx.numpy_helper.from_array(
                        rng.permutation(arr.ravel()).reshape(arr.shape), init.name
                    )
                )
        return model

    monkeypatch.setattr(precision_mod, "to_fp16", scrambled)
    out = tmp_path / "bad-fp16.onnx"
    with pytest.raises(ParityError, match="Spearman"):
        export_checkpoint(work["ckpt"]["rnn"], out, precision="fp16", parity_gifs=work["eval"])
    assert list(tmp_path.iterdir()) == []


def test_parity_failure_writes_nothing(work, tmp_path, monkeypatch):
    real = export_api.export_proto

    def corrupted(*args, **kwargs):
        model = real(*args, **kwargs)
        big = max(model.graph.initializer, key=lambda i: int(np.prod(i.dims)))
        arr = onnx.numpy_helper.to_array(big).copy()
        arr.flat[0] += 0.5
        big.CopyFrom(onnx.numpy_helper.from_array(arr, big.name))
        return model

    monkeypatch.setattr(export_api, "export_proto", corrupted)
    out = tmp_path / "models" / "bad.onnx"
    with pytest.raises(ParityError, match="refusing to write"):
        export_checkpoint(work["ckpt"]["maxpool"], out, parity_gifs=work["eval"], simplify=False)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_simplification_failure_never_fails_export(work, tmp_path, monkeypatch):
    import onnxscript.optimizer

    def boom(*_a, **_k):
        raise RuntimeError("optimizer exploded")

    monkeypatch.setattr(onnxscript.optimizer, "optimize", boom)
    warnings = []
    result = export_checkpoint(
        work["ckpt"]["maxpool"], tmp_path / "m.onnx", parity_gifs=work["eval"], warn=warnings.append
    )
    assert result.simplified.startswith("skipped")
    assert any("optimizer exploded" in w for w in warnings)


def test_parts_encoder_and_head(work, tmp_path):
    ckpt = work["ckpt"]["rnn"]
    loaded = load_checkpoint(ckpt)
    spec = loaded.encoder.spec
    frames = sampled(work["eval"], spec, 3)

    enc = export_checkpoint(ckpt, tmp_path / "enc.onnx", part="encoder", parity_gifs=work["eval"])
    sess = open_engine(enc.path, backend="onnxruntime", device="cpu")
    meta = sess.metadata()
    assert METADATA_KEY not in meta  # not a scoring model: gifsent-infer must refuse it
    assert json.loads(meta[PART_METADATA_KEY])["part"] == "encoder"
    feats = sess.run(frames, "features")
    assert feats.shape == (3, spec.segments, loaded.encoder.feature_dim)
    with torch.inference_mode():
        want = loaded.encoder(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-4)

    head = export_checkpoint(ckpt, tmp_path / "head.onnx", part="head", parity_gifs=work["eval"])
    hs = open_engine(head.path, backend="onnxruntime", device="cpu")
    assert [i.name for i in hs.inputs] == ["features"]
    got = hs.run(want, "scores")
    with torch.inference_mode():
        ref = loaded.head(torch.from_numpy(want)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)

    with pytest.raises(ValueError, match="fp32"):
        export_checkpoint(ckpt, tmp_path / "h16.onnx", part="head", precision="fp16")


def test_export_encoder_graph_for_feature_extraction(tmp_path):
    encoder = create_encoder("resnext3d-tiny", random_init=True)
    path = export_encoder_graph(encoder, tmp_path / "enc.onnx")
    sess = open_engine(path, backend="onnxruntime", device="cpu")
    s = encoder.spec
    x = np.random.default_rng(0).integers(
        0, 256, (3, s.num_frames, s.crop, s.crop, 3), dtype=np.uint8
    )
    got = sess.run(x, "features")
    with torch.inference_mode():
        want = encoder(torch.from_numpy(x)).numpy()
    assert got.shape == (3, s.segments, encoder.feature_dim)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_load_frames_skips_bad_gifs(tmp_path):
    good = generate_gifs(tmp_path, 2, seed=3)
    bad = tmp_path / "bad.gif"
    bad.write_bytes(b"GIF89a not really")
    spec = create_encoder("resnext3d-tiny", random_init=True).spec
    warnings = []
    frames, used = load_frames([good[0], bad, good[1]], spec, warn=warnings.append)
    assert frames.shape == (2, spec.num_frames, spec.crop, spec.crop, 3) and used == good
    assert len(warnings) == 1 and "bad.gif" in warnings[0]


# -- the command line ---------------------------------------------------------------------


def _fake_run(home: Path, work) -> RunLayout:
    """A finished run as training leaves it: splits, a GIF folder, metrics, best checkpoints."""
    run = RunLayout(home / "runs" / "run-1").ensure()
    gifs = home / "gifs"
    gifs.mkdir()
    ids = []
    for p in work["eval"][:6] + work["calib"][:6]:
        (gifs / p.name).write_bytes(p.read_bytes())
        ids.append(p.stem)
    run.config.write_text(json.dumps({"gifs": "", "heads": ["rnn"]}))
    (run.root / "data.json").write_text(
        json.dumps({"gifs": str(gifs)})
    )  # as the pipeline writes it
    save_splits(run.splits, {"train": ids[6:], "dev": [], "test": ids[:6]})
    run.metrics.write_text(json.dumps({"models": {"rnn": {"test": {"rmse": 0.07, "ev": 0.4}}}}))
    tiny_checkpoint(run.checkpoint("rnn"), "rnn")
    mark_latest(run)
    return run


def test_cli_exports_the_latest_runs_best_checkpoint(work, gifsent_home):
    from typer.testing import CliRunner

    from gifsent_export.cli import app

    run = _fake_run(gifsent_home, work)
    res = CliRunner().invoke(app, ["--model", "rnn", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    out = default_model_path("rnn", "fp32")
    assert summary["file"] == str(out) and out.is_file()
    assert summary["parity"]["source"] == "6 GIFs (the run's test GIFs)"
    assert summary["parity"]["max_abs"] <= 1e-4 and summary["opset"] == 18
    doc = document_of(out)
    assert doc.metrics["test"] == {"rmse": 0.07, "ev": 0.4}
    assert doc.checkpoint_sha256 == load_checkpoint(run.checkpoint("rnn")).sha256


def test_cli_human_summary_and_errors(work, gifsent_home, tmp_path, capsys):
    from gifsent_export.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--model", "rnn"])  # no run yet: a usage error, as in gifsent-infer
    assert e.value.code == 2
    assert "no training run" in capsys.readouterr().err

    with pytest.raises(SystemExit) as e:
        main(
            [
                "--model",
                "maxpool",
                "--checkpoint",
                str(work["ckpt"]["rnn"]),
                "--out",
                str(tmp_path / "x.onnx"),
            ]
        )
    assert e.value.code == 1
    assert "holds a rnn head" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()

    out = tmp_path / "m.onnx"
    with pytest.raises(SystemExit) as e:
        main(
            [
                "--checkpoint",
                str(work["ckpt"]["maxpool"]),
                "--out",
                str(out),
                "--parity-gifs",
                str(work["eval"][0].parent),
            ]
        )
    assert e.value.code in (0, None)
    captured = capsys.readouterr()
    assert f"file       {out}" in captured.out and "opset 18" in captured.out
    assert "parity" in captured.out and "loading checkpoint" in captured.err


def test_cli_model_best_exports_the_head_best_pt_points_at(work, gifsent_home):
    from typer.testing import CliRunner

    from gifsent_export.cli import app

    run = _fake_run(gifsent_home, work)
    tiny_checkpoint(run.checkpoint("linear"), "linear")
    run.link_best("linear")  # training found the linear head best on dev
    res = CliRunner().invoke(app, ["--model", "best", "--json", "--parity-count", "2"])
    assert res.exit_code == 0, res.output
    out = default_model_path("linear", "fp32")
    assert json.loads(res.stdout)["file"] == str(out)
    doc = document_of(out)
    assert doc.head.name == "linear"
    assert doc.checkpoint_sha256 == load_checkpoint(run.checkpoint("linear")).sha256


def test_options_object_and_keywords_write_the_same_bytes(work, tmp_path):
    """export_checkpoint takes one ExportOptions; keyword overrides replace its fields."""
    ckpt = work["ckpt"]["maxpool"]
    opts = export_api.ExportOptions(part="head", parity_gifs=work["eval"], parity_count=2)
    a = export_checkpoint(ckpt, tmp_path / "a.onnx", opts)
    b = export_checkpoint(
        ckpt, tmp_path / "b.onnx", part="head", parity_gifs=work["eval"], parity_count=2
    )
    assert a.path.read_bytes() == b.path.read_bytes()
    with pytest.raises(ValueError, match="head is always exported in fp32"):
        export_checkpoint(ckpt, tmp_path / "c.onnx", opts, precision="int8")
