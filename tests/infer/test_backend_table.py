"""The backend table (running/engine.py): one row per backend, one auto rule, read by the
engine, training's feature stage and Ray; a new backend is one row."""

from __future__ import annotations

import pytest
from infer_support import build_model

from gifsent_infer.running import engine
from gifsent_infer.running.engine import (
    BACKEND_TABLE,
    BACKENDS,
    RUN_PRECISIONS,
    Backend,
    DeviceError,
    auto_backend,
    open_engine,
)


def test_the_table_is_what_the_flags_and_training_offer():
    assert ("auto", *sorted(BACKEND_TABLE)) == BACKENDS
    for b in BACKEND_TABLE.values():
        assert set(b.devices) <= {"cpu", "cuda"} and set(b.precisions) <= set(RUN_PRECISIONS)
    from gifsent_train.features import BACKENDS as FEATURE_BACKENDS
    from gifsent_train.features import GRAPH_BACKENDS

    assert tuple(sorted(BACKEND_TABLE)) == GRAPH_BACKENDS
    assert ("auto", *GRAPH_BACKENDS, "torch") == FEATURE_BACKENDS


@pytest.mark.parametrize(
    ("installed", "precision", "want"),
    [
        (["openvino", "onnxruntime"], "fp32", "openvino"),
        (["onnxruntime"], "fp32", "onnxruntime"),
        (["openvino", "onnxruntime"], "bf16", "openvino"),
        (["onnxruntime"], "bf16", DeviceError),
        ([], "fp32", ImportError),
    ],
)
def test_the_one_auto_rule_on_the_cpu(monkeypatch, installed, precision, want):
    monkeypatch.setattr(engine, "installed_backends", lambda: installed)
    if isinstance(want, str):
        assert auto_backend("cpu", precision) == want
    else:
        with pytest.raises(want):
            auto_backend("cpu", precision)


def test_the_auto_rule_on_cuda():
    assert auto_backend("cuda") == "onnxruntime"
    with pytest.raises(DeviceError, match="CPU option"):
        auto_backend("cuda", "bf16")


def test_a_new_backend_is_one_row(monkeypatch, tmp_path):
    """A row put first in the table (first CPU preference) is what auto opens on the CPU."""
    opened = []

    def open_fake(model, device, threads, precision, quiet, spin, name):
        eng = engine.BACKEND_TABLE["onnxruntime"].open(
            model, device, threads, precision, quiet, spin, name
        )
        opened.append((device, precision))
        return eng

    fake = Backend("fakert", "FakeRT", "json", "pip install fakert", ("cpu",), ("fp32",), open_fake)
    monkeypatch.setattr(engine, "BACKEND_TABLE", {"fakert": fake, **BACKEND_TABLE})
    assert "fakert" in engine.installed_backends()
    eng = open_engine(build_model(tmp_path / "m.onnx"), device="cpu")
    assert opened == [("cpu", "fp32")] and eng.note == ""
