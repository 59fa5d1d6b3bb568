"""The recorded precision check (metrics.precision_checks) and the accuracy-aware int8 mix:
what an export measures and writes, and how the mixed recipe keeps layers in float."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from support import tiny_checkpoint  # noqa: E402

from gifsent_export import precision as prec  # noqa: E402
from gifsent_export.api import export_checkpoint  # noqa: E402
from gifsent_export.checks import bf16_unavailable  # noqa: E402
from gifsent_export.frames import generate_gifs, load_frames  # noqa: E402
from gifsent_export.parity import ort_session, run_session  # noqa: E402
from gifsent_infer.contract import AUTO_BF16_MIN_MEAN_SPEARMAN  # noqa: E402
from gifsent_models.checkpoint import load_checkpoint  # noqa: E402
from gifsent_models.onnx import FEATURES_NAME, export_proto  # noqa: E402


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("checks")
    ckpt = root / "tiny.pt"
    tiny_checkpoint(ckpt, "maxpool")
    return {
        "root": root,
        "ckpt": ckpt,
        "eval": generate_gifs(root / "eval", 10, seed=21),
        "calib": generate_gifs(root / "calib", 3, seed=22),
    }


def test_fp32_export_records_its_bf16_check(work, tmp_path):
    r = export_checkpoint(
        work["ckpt"], tmp_path / "m.onnx", parity_gifs=work["eval"], eval_count=10
    )
    checks = r.document.metrics["precision_checks"]
    assert checks["gifs"] == 10 and r.parity.n_gifs == 8  # parity keeps its own 8 GIFs
    bf16 = checks["bf16"]
    why = bf16_unavailable()
    if why is not None:
        assert bf16 == {"skipped": why}
    else:
        assert bf16["backend"] == "openvino" and -1 <= bf16["mean_spearman"] <= 1
        assert bf16["holds"] == (bf16["mean_spearman"] >= AUTO_BF16_MIN_MEAN_SPEARMAN)
    assert "precision_checks" in r.summary()


def test_measure_none_records_nothing(work, tmp_path):
    r = export_checkpoint(work["ckpt"], tmp_path / "m.onnx", parity_gifs=work["eval"], measure=())
    assert "precision_checks" not in r.document.metrics
    with pytest.raises(ValueError, match="cannot measure"):
        export_checkpoint(work["ckpt"], tmp_path / "x.onnx", measure=("fp8",))


def test_refused_int8_recipes_are_kept_in_an_fp32_exports_record(work, tmp_path):
    r = export_checkpoint(
        work["ckpt"],
        tmp_path / "m.onnx",
        parity_gifs=work["eval"],
        calibration_gifs=work["calib"],
        calibration_count=2,
        eval_count=10,
        measure=("int8",),
        int8_recipe="minmax",
        min_mean_spearman=1.01,  # nothing can hold: every recipe is refused, and recorded
    )
    rec = r.document.metrics["precision_checks"]["int8"]["minmax"]
    assert rec["holds"] is False and rec["gate"] == 1.01 and rec["backends"]
    assert "bf16" not in r.document.metrics["precision_checks"]  # measured only when asked


def test_int8_export_records_every_recipe_it_tried(work, tmp_path):
    r = export_checkpoint(
        work["ckpt"],
        tmp_path / "m.onnx",
        precision="int8",
        parity_gifs=work["eval"],
        calibration_gifs=work["calib"],
        calibration_count=2,
        eval_count=10,
        min_mean_spearman=-1.0,
    )
    tried = r.document.metrics["precision_checks"]["int8"]
    assert list(tried) == ["minmax"] and tried["minmax"]["holds"] is True
    assert r.document.metrics["precision_check"]["recipe"] == "minmax"


@pytest.fixture(scope="module")
def encoder_graphs(work):
    loaded = load_checkpoint(work["ckpt"])
    enc = loaded.encoder.eval()
    frames, _ = load_frames(work["eval"], enc.spec, limit=6)
    graph = export_proto(enc, example=torch.from_numpy(frames[:2]), output_names=(FEATURES_NAME,))
    return graph, frames


class FakeJudge:
    """Layer `key` matters: the probe gains only when it is float; the gate holds only then."""

    gate = 0.5

    def __init__(self, key):
        self.key = key

    def _has_float(self, enc):
        return self.key not in prec.quantized_layers(enc)

    def probe(self, enc):
        return 1.0 if self._has_float(enc) else 0.0

    def judge(self, enc):
        return 1.0 if self._has_float(enc) else 0.0


def test_a_gate_that_cannot_hold_ends_with_every_weight_layer_float(encoder_graphs):
    graph, frames = encoder_graphs
    report = {}
    never = FakeJudge("no such layer")
    never.gate = 2.0  # no candidate can hold: the search ends with every layer in float
    all_float = prec.quantize_encoder(graph, frames[:2], recipe="mixed", judge=never, report=report)
    # nothing made the fake gate hold, so every weight layer ended in float
    assert prec.weight_layers(all_float) == []
    assert len(report["kept_float"]) > 0
    assert len(report["kept_float"]) == report["weight_layers"]


def test_mixed_keeps_the_measured_sensitive_layer_and_records_it(encoder_graphs):
    graph, frames = encoder_graphs
    holds = FakeJudge("no such layer")
    holds.gate = -1.0  # the full int8 graph already holds: nothing is kept float
    report = {}
    full = prec.quantize_encoder(graph, frames[:2], recipe="mixed", judge=holds, report=report)
    assert report["kept_float"] == []
    layers = prec.quantized_layers(full)
    weights = prec.weight_layers(full)
    assert weights and set(weights) <= set(layers)
    key = weights[len(weights) // 2]
    report = {}
    mixed = prec.quantize_encoder(
        graph, frames[:2], recipe="mixed", judge=FakeJudge(key), report=report
    )
    assert [k["layer"] for k in report["kept_float"]] == [key]
    assert report["kept_float"][0]["probe_gain"] == 1.0
    assert report["int8_weight_layers"] == report["weight_layers"] - 1
    assert key not in prec.quantized_layers(mixed)
    assert len(prec.quantized_layers(mixed)) == len(layers) - 1
    onnx.checker.check_model(mixed)


def test_every_recipe_calibrates_strided(encoder_graphs, monkeypatch):
    """Bounded calibration memory: one batch of intermediate tensors at a time, every recipe."""
    import onnxruntime.quantization as q

    graph, frames = encoder_graphs
    seen = {}
    real = q.quantize_static

    def spy(*args, **kwargs):
        seen[kwargs["calibrate_method"]] = dict(kwargs["extra_options"])
        return real(*args, **kwargs)

    monkeypatch.setattr(q, "quantize_static", spy)
    for recipe in ("minmax", "percentile", "sensitive"):
        prec.quantize_encoder(graph, frames[:2], recipe=recipe)
    assert seen and all(extra.get("CalibStridedMinMax") == 1 for extra in seen.values())


class SpearmanJudge(FakeJudge):
    """The nncf recipe's metric: 1.0 on any candidate (the gate holds at once)."""

    gate = 0.98

    def __init__(self, frames):
        super().__init__("no such layer")
        self.frames = frames
        self.validated = 0

    def held_out(self):
        return self.frames

    def validate(self, enc, indices):
        self.validated += 1
        assert all(0 <= i < len(self.frames) for i in indices)
        return 1.0


def test_the_nncf_recipe_quantizes_and_records_its_float_layers(encoder_graphs):
    pytest.importorskip("nncf")
    graph, frames = encoder_graphs
    report = {}
    judge = SpearmanJudge(frames)
    q = prec.quantize_encoder(graph, frames[:2], recipe="nncf", judge=judge, report=report)
    onnx.checker.check_model(q)
    assert judge.validated >= 1
    assert report["int8_weight_layers"] == len(prec.weight_layers(q)) > 0
    assert report["weight_layers"] == report["int8_weight_layers"] + len(report["kept_float"])
    # the preprocessing stays float, as in every recipe
    assert not set(prec.preprocessing_nodes(graph)) & set(prec.quantized_layers(q))
    assert (
        run_session(ort_session(q), frames).shape == run_session(ort_session(graph), frames).shape
    )


def test_nncf_is_not_in_auto_and_is_named_in_errors():
    assert "nncf" not in prec.int8_recipes("auto")
    assert prec.int8_recipes("nncf") == ("nncf",)
    with pytest.raises(ValueError, match="nncf"):
        prec.int8_recipes("bogus")


def test_layer_groups_cut_at_blocks_in_order():
    names = ["/stem/conv/Conv"] + [
        f"/layer{b}/layer{b}.{i}/conv{c}/Conv" for b in (1, 2) for i in range(3) for c in (1, 2)
    ]
    groups = prec.layer_groups(names, count=4)
    assert [n for g in groups for n in g] == names  # every layer once, graph order kept
    assert len(groups) <= 4
    # blocks are never split between groups
    block = {n: n.split("/")[2] if n.count("/") > 3 else n for n in names}
    owner = {block[n]: i for i, g in enumerate(groups) for n in g}
    assert all(owner[block[n]] == i for i, g in enumerate(groups) for n in g)
    flat = [f"Conv_{i}" for i in range(30)]  # no structure in the names: equal runs
    assert [len(g) for g in prec.layer_groups(flat, count=6)] == [5] * 6
    assert prec.layer_groups([], count=3) == []


def test_mixed_search_stays_within_its_probe_budget(encoder_graphs, monkeypatch):
    graph, frames = encoder_graphs
    monkeypatch.setattr(prec, "MIXED_PROBES", 4)
    monkeypatch.setattr(prec, "MIXED_GROUPS", 2)
    seen = {"probe": 0, "judge": 0}

    class Counting(FakeJudge):
        def probe(self, enc):
            seen["probe"] += 1
            return super().probe(enc)

        def judge(self, enc):
            seen["judge"] += 1
            return super().judge(enc)

    full = prec.quantize_encoder(graph, frames[:2], recipe="minmax")
    key = prec.weight_layers(full)[0]
    report = {}
    prec.quantize_encoder(graph, frames[:2], recipe="mixed", judge=Counting(key), report=report)
    assert seen["probe"] <= 1 + 4  # the int8 baseline, then the budget
    assert key in [k["layer"] for k in report["kept_float"]]


def _only_all_float_holds(monkeypatch):
    """mixed's gate judge (export's _MixedJudge.judge) holds only for an encoder with no
    quantized layer left: the search must end with every weight layer in float. The probes
    and the export's own final ranking gate still measure the real graphs."""
    from gifsent_export import api

    def judge(self, encoder):
        self.judged += 1
        self.last = 0.0 if prec.quantized_layers(encoder) else 1.0
        return self.last

    monkeypatch.setattr(api._MixedJudge, "judge", judge)


def test_an_int8_export_with_no_int8_left_writes_nothing_and_says_so(work, tmp_path, monkeypatch):
    from gifsent_export.parity import ParityError

    _only_all_float_holds(monkeypatch)
    out = tmp_path / "m-int8.onnx"
    with pytest.raises(ParityError) as err:
        export_checkpoint(
            work["ckpt"],
            out,
            precision="int8",
            int8_recipe="mixed",
            parity_gifs=work["eval"],
            calibration_gifs=work["calib"],
            calibration_count=2,
            eval_count=10,
        )
    msg = str(err.value)
    assert "refusing to write the graph" in msg
    assert "int8 (mixed) holds the gate only with every weight layer in float" in msg
    assert "no int8 left to run" in msg
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no file, no temporary left


def test_an_fp32_export_keeps_the_record_of_a_mix_with_no_int8_left(work, tmp_path, monkeypatch):
    _only_all_float_holds(monkeypatch)
    r = export_checkpoint(
        work["ckpt"],
        tmp_path / "m.onnx",
        parity_gifs=work["eval"],
        calibration_gifs=work["calib"],
        calibration_count=2,
        eval_count=10,
        measure=("int8",),
        int8_recipe="mixed",
    )
    assert r.path.is_file() and r.precision == "fp32"  # the fp32 model is still written
    rec = r.document.metrics["precision_checks"]["int8"]["mixed"]
    # the all-float mix held the real gate on every backend, yet it is recorded as refused
    assert rec["holds"] is False and rec["backends"]
    assert all(b["mean_spearman"] >= rec["gate"] for b in rec["backends"].values())
    search = rec["search"]
    assert search["int8_weight_layers"] == 0 and search["weight_layers"] > 0
    assert len(rec["kept_float"]) == search["weight_layers"]
    assert search["candidates_judged"] >= 2  # the int8 graph, then candidates up to all float
    # and the record is in the written file, where `gifsent-infer info` reads it
    from gifsent_infer.running.modelfile import read_document

    written = read_document(r.path).metrics["precision_checks"]["int8"]["mixed"]
    assert written["holds"] is False and written["search"]["int8_weight_layers"] == 0
