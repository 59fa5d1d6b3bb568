"""ModelSession: contract checks on load, device selection, model resolution, fixed-batch graphs."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from infer_support import SPEC, build_model, make_document, reference_scores

from gifsent_infer import paths
from gifsent_infer.contract import METADATA_KEY
from gifsent_infer.running.session import (
    DeviceError,
    ModelError,
    ModelSession,
    read_document,
    read_metadata,
    resolve_model,
)


@pytest.fixture
def model(tmp_path):
    return build_model(tmp_path / "m.onnx")


def _frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *SPEC_SHAPE), dtype=np.uint8)


SPEC_SHAPE = (SPEC.num_frames, SPEC.crop, SPEC.crop, 3)


def test_metadata_scanner_agrees_with_onnxruntime(model):
    from gifsent_infer.running.engine import open_engine

    meta = open_engine(model, backend="onnxruntime", device="cpu").metadata()
    assert read_metadata(model) == meta
    assert read_document(model) == make_document()


def test_session_runs_the_graph_and_matches_numpy(model, backend):
    s = ModelSession(model, device="cpu", threads=1, backend=backend)
    assert s.backend == backend and s.device == "cpu" and s.precision == "fp32"
    assert (
        s.provider == {"onnxruntime": "CPUExecutionProvider", "openvino": "OpenVINO CPU"}[backend]
    )
    assert s.document == make_document()
    assert s.input_shape == SPEC_SHAPE
    frames = _frames(3)
    np.testing.assert_allclose(s.run(frames), reference_scores(frames), rtol=1e-5, atol=1e-6)
    assert s.run(frames[:0]).shape == (0, 17)
    assert len(s.model_id) == 64


def test_wrong_frames_are_refused_with_the_expected_shape(model, backend):
    s = ModelSession(model, device="cpu", backend=backend)
    with pytest.raises(ValueError, match=r"\[batch, 4, 16, 16, 3\]"):
        s.run(np.zeros((1, 5, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        s.run(np.zeros((1, *SPEC_SHAPE), np.float32))


def test_graph_without_document_is_refused(tmp_path, backend):
    bare = build_model(tmp_path / "bare.onnx", metadata=None)
    with pytest.raises(ModelError, match="no 'gifsent' metadata document"):
        ModelSession(bare, device="cpu", backend=backend)
    with pytest.raises(ModelError, match="not a gifsent model"):
        read_document(bare)


def test_graph_with_a_bad_document_is_refused(tmp_path, backend):
    data = json.loads(make_document().to_json())
    data["schema_version"] = 7
    bad = build_model(tmp_path / "bad.onnx", metadata=json.dumps(data))
    with pytest.raises(ModelError, match="schema version 7"):
        ModelSession(bad, device="cpu", backend=backend)
    garbage = build_model(tmp_path / "garbage.onnx", metadata="{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_document(garbage)


def test_graph_whose_io_breaks_the_contract_is_refused(tmp_path, backend):
    wrong = build_model(tmp_path / "wrong.onnx", input_name="pixels")
    with pytest.raises(ModelError, match="needs input 'frames'"):
        ModelSession(wrong, device="cpu", backend=backend)


def test_graph_whose_shape_disagrees_with_its_spec_is_refused(tmp_path, backend):
    other = SPEC.__class__(segments=3, frames_per_segment=2, fps=10.0, size=16, crop=16)
    # graph built for 6 frames, document says 4
    m = build_model(tmp_path / "m.onnx", spec=other, metadata=make_document(SPEC).to_json())
    with pytest.raises(ModelError, match="sampling spec says"):
        ModelSession(m, device="cpu", backend=backend)


def test_not_an_onnx_file_is_a_model_error(tmp_path, backend):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 100)
    with pytest.raises(ModelError):
        ModelSession(junk, device="cpu", backend=backend)
    with pytest.raises(ModelError):
        read_document(junk)


def test_fixed_batch_graph_is_fed_in_chunks(tmp_path, backend):
    m = build_model(tmp_path / "b2.onnx", batch=2)
    s = ModelSession(m, device="cpu", backend=backend)
    assert s.fixed_batch == 2
    frames = _frames(5, seed=1)
    np.testing.assert_allclose(s.run(frames), reference_scores(frames), rtol=1e-5, atol=1e-6)


def test_cuda_on_a_cpu_onnxruntime_is_an_error_not_a_fallback(model):
    with pytest.raises(DeviceError) as e:
        ModelSession(model, device="cuda", backend="onnxruntime")
    msg = str(e.value)
    assert "no CUDA provider" in msg and "onnxruntime-gpu" in msg and "--device cpu" in msg


def test_auto_device_says_why_it_chose_the_cpu(model):
    s = ModelSession(model, device="auto", backend="onnxruntime")
    assert s.provider == "CPUExecutionProvider"
    assert "auto: CPU" in s.device_note


def test_unknown_device_is_refused(model):
    with pytest.raises(ValueError, match="device must be one of"):
        ModelSession(model, device="tpu")


def test_model_resolution_order(tmp_path, monkeypatch, gifsent_home):
    explicit = build_model(tmp_path / "explicit.onnx")
    env = build_model(tmp_path / "env.onnx")
    default = build_model(paths.default_model_path("rnn"))
    assert resolve_model() == default
    monkeypatch.setenv("GIFSENT_MODEL", str(env))
    assert resolve_model() == env
    assert resolve_model(explicit) == explicit
    monkeypatch.setenv("GIFSENT_MODEL", str(tmp_path / "gone.onnx"))
    with pytest.raises(ModelError, match=r"\$GIFSENT_MODEL"):
        resolve_model()


def test_missing_model_says_how_to_get_one():
    with pytest.raises(ModelError) as e:
        resolve_model()
    msg = str(e.value)
    assert "gifsent-export --model rnn" in msg and "make demo" in msg and "GIFSENT_MODEL" in msg


def test_missing_onnxruntime_raises_import_error_with_the_hint(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"gifsent\[cpu\]"):
        ModelSession(model, device="cpu", backend="onnxruntime")
    # reading the contract needs no onnxruntime at all
    assert read_document(model).sampling == SPEC
    assert METADATA_KEY in read_metadata(model)
