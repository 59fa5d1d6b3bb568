"""The fast path by default: --precision auto from the model's recorded check, --backend auto
by measurement (cached), each with its reason. The CPU's bf16 capability is mocked; what the
engines compute is not."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from infer_support import build_model, make_document

from gifsent_infer.contract import AUTO_BF16_MIN_MEAN_SPEARMAN
from gifsent_infer.running import autotune
from gifsent_infer.running import engine as engines
from gifsent_infer.running.precision import choose_precision, describe_checks, recorded_bf16
from gifsent_infer.running.session import ModelSession

HAS_BF16 = lambda: None  # noqa: E731  (a CPU with native bf16)
NO_BF16 = lambda: "this CPU has no native bf16"  # noqa: E731


def _need(*names):
    have = engines.installed_backends()
    for n in names:
        if n not in have:
            pytest.skip(f"{n} not installed")


def document(bf16_mean: float | None = 0.997, *, precision: str = "fp32", skipped: str = ""):
    doc = make_document()
    checks: dict = {"reference": "fp32 graph on onnxruntime", "gifs": 32}
    if skipped:
        checks["bf16"] = {"skipped": skipped}
    elif bf16_mean is not None:
        checks["bf16"] = {
            "backend": "openvino",
            "mean_spearman": bf16_mean,
            "min_spearman": bf16_mean - 0.01,
            "max_abs": 0.01,
            "holds": bf16_mean >= AUTO_BF16_MIN_MEAN_SPEARMAN,
            "gate": AUTO_BF16_MIN_MEAN_SPEARMAN,
        }
    metrics = {**doc.metrics, "precision_checks": checks} if bf16_mean or skipped else doc.metrics
    return dataclasses.replace(doc, metrics=metrics, precision=precision)


# -- the precision rule ----------------------------------------------------------------------


def test_auto_runs_bf16_on_openvino_with_native_bf16_and_a_holding_check():
    c = choose_precision("auto", "openvino", document(0.997), HAS_BF16)
    assert c.precision == "bf16" and "0.9970" in c.reason and "native" in c.reason


def test_auto_runs_fp32_on_a_cpu_without_bf16():
    c = choose_precision("auto", "openvino", document(0.997), NO_BF16)
    assert c.precision == "fp32" and "no native bf16" in c.reason


def test_auto_runs_fp32_when_the_recorded_check_misses_the_gate():
    c = choose_precision("auto", "openvino", document(0.985), HAS_BF16)
    assert c.precision == "fp32" and "0.9850 < 0.99" in c.reason


@pytest.mark.parametrize("doc", [document(None), document(skipped="no bf16 where exported")])
def test_a_model_without_a_recorded_check_runs_fp32(doc):
    assert recorded_bf16(doc) is None
    c = choose_precision("auto", "openvino", doc, HAS_BF16)
    assert c.precision == "fp32" and "no recorded bf16 check" in c.reason


def test_auto_is_fp32_on_onnxruntime_and_for_reduced_graphs_and_pins_win():
    assert choose_precision("auto", "onnxruntime", document(), HAS_BF16).precision == "fp32"
    assert (
        choose_precision("auto", "openvino", document(precision="int8"), HAS_BF16).precision
        == "fp32"
    )
    pinned = choose_precision("fp32", "openvino", document(), HAS_BF16)
    assert pinned.precision == "fp32" and pinned.reason == "--precision fp32"
    assert choose_precision("bf16", "openvino", document(0.5), HAS_BF16).precision == "bf16"
    with pytest.raises(ValueError):
        choose_precision("fp8", "openvino", document(), HAS_BF16)


def test_describe_checks_says_what_was_recorded():
    lines = describe_checks(document(0.997).metrics["precision_checks"])
    assert lines and "bf16 on openvino" in lines[0] and "holds" in lines[0]
    assert describe_checks(None) == []


# -- the session uses the rule ---------------------------------------------------------------


def _model(tmp_path, doc, name="m.onnx", seed=0):
    return build_model(tmp_path / name, metadata=doc.to_json(), seed=seed)


@pytest.mark.parametrize("cpu, want", [(HAS_BF16, "bf16"), (NO_BF16, "fp32")])
def test_session_precision_auto_follows_the_cpu(tmp_path, monkeypatch, cpu, want):
    _need("openvino")
    monkeypatch.setattr(engines, "cpu_bf16_reason", cpu)
    s = ModelSession(_model(tmp_path, document(0.997)), device="cpu", backend="openvino")
    assert s.engine.precision == want and s.choice.precision.precision == want
    assert s.describe()["choice"]["precision_reason"] == s.choice.precision.reason


def test_session_without_a_recorded_check_runs_fp32(tmp_path, monkeypatch):
    _need("openvino")
    monkeypatch.setattr(engines, "cpu_bf16_reason", HAS_BF16)
    s = ModelSession(build_model(tmp_path / "m.onnx"), device="cpu", backend="openvino")
    assert s.engine.precision == "fp32"


# -- backend auto by measurement, cached --------------------------------------------------------


def test_auto_backend_keeps_the_measured_faster_one(tmp_path, monkeypatch):
    _need("openvino", "onnxruntime")
    path = _model(tmp_path, document(None))
    for fast in ("onnxruntime", "openvino"):
        speeds = {"onnxruntime": 10.0, "openvino": 5.0}
        if fast == "openvino":
            speeds = {"onnxruntime": 5.0, "openvino": 10.0}
        monkeypatch.setattr(autotune, "measure", lambda opened, doc, s=speeds: dict(s))
        for f in autotune.cache_folder().glob("*.json"):
            f.unlink()
        s = ModelSession(path, device="cpu")
        assert s.backend == fast and s.choice.backend_reason.startswith("auto: CPU with " + fast)
        assert "measured" in s.choice.backend_reason and not s.choice.cached


def test_auto_backend_measures_once_per_model_and_reuses_the_cache(tmp_path, monkeypatch):
    _need("openvino", "onnxruntime")
    calls = []
    real = autotune.measure

    def counting(opened, doc, **kw):
        calls.append(sorted(opened))
        return real(opened, doc, **kw)

    monkeypatch.setattr(autotune, "measure", counting)
    a = _model(tmp_path, document(None), "a.onnx", seed=0)
    first = ModelSession(a, device="cpu")
    assert calls == [["onnxruntime", "openvino"]] and not first.choice.cached
    again = ModelSession(a, device="cpu")
    assert len(calls) == 1 and again.choice.cached and again.backend == first.backend
    assert "cached measurement" in again.choice.backend_reason
    entry = json.loads(next(autotune.cache_folder().glob("*.json")).read_text())
    assert entry["key"]["model_sha256"] == first.model_id and entry["backend"] == first.backend
    # another model (or another thread setting) is measured again
    ModelSession(_model(tmp_path, document(None), "b.onnx", seed=1), device="cpu")
    ModelSession(a, device="cpu", threads=1)
    assert len(calls) == 3


def test_measurement_runs_every_engine_on_the_models_input_shape(tmp_path):
    _need("onnxruntime")
    path = build_model(tmp_path / "m.onnx")
    eng = engines.open_engine(path, backend="onnxruntime", device="cpu")
    speeds = autotune.measure({"onnxruntime": eng}, make_document(), batch=2)
    assert (
        set(speeds) == {"onnxruntime"}
        and np.isfinite(speeds["onnxruntime"])
        and speeds["onnxruntime"] > 0
    )


def test_pinned_backend_is_not_measured(tmp_path, monkeypatch):
    _need("onnxruntime")
    monkeypatch.setattr(
        autotune, "measure", lambda *a, **k: pytest.fail("measured a pinned backend")
    )
    s = ModelSession(build_model(tmp_path / "m.onnx"), device="cpu", backend="onnxruntime")
    assert "auto" not in s.choice.backend_reason and s.engine.precision == "fp32"


# -- OpenVINO's compiled-model cache key -------------------------------------------------------


def test_compiled_cache_folder_changes_with_model_version_and_options():
    from gifsent_infer.running.ovcache import compiled_cache_dir

    opts = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    a = compiled_cache_dir("a" * 64, "2026.4.1", opts)
    assert a == compiled_cache_dir("a" * 64, "2026.4.1", dict(opts))
    assert a != compiled_cache_dir("b" * 64, "2026.4.1", opts)  # another model
    assert a != compiled_cache_dir("a" * 64, "2026.5.0", opts)  # another OpenVINO
    assert a != compiled_cache_dir(
        "a" * 64, "2026.4.1", {**opts, "INFERENCE_PRECISION_HINT": "bf16"}
    )
    assert a != compiled_cache_dir("a" * 64, "2026.4.1", {**opts, "INFERENCE_NUM_THREADS": 1})


def test_openvino_compiles_into_a_keyed_cache_and_reuses_it(tmp_path):
    _need("openvino")
    path = build_model(tmp_path / "m.onnx")
    root = autotune.paths.cache_dir() / "openvino"
    engines.open_engine(path, backend="openvino", device="cpu")
    first = sorted(p for p in root.iterdir())
    assert len(first) == 1 and any(first[0].iterdir())  # one folder, holding the blob
    engines.open_engine(path, backend="openvino", device="cpu")  # same model, same options
    assert sorted(root.iterdir()) == first
    engines.open_engine(path, backend="openvino", device="cpu", threads=1)  # an option changed
    other = build_model(tmp_path / "other.onnx", seed=3)  # another model
    engines.open_engine(other, backend="openvino", device="cpu")
    assert len(list(root.iterdir())) == 3
