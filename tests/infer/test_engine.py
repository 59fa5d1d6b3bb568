"""The one engine module: both backends agree, selection and its errors, precision, one place for sessions."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from infer_support import SPEC, build_model, make_document, reference_scores, write_gifs

from gifsent_infer.running import engine as eng
from gifsent_infer.running.engine import DeviceError, ModelError, open_engine
from gifsent_infer.running.session import ModelSession

REPO = Path(__file__).resolve().parents[2]
SHAPE = (SPEC.num_frames, SPEC.crop, SPEC.crop, 3)


def _frames(n: int, seed: int = 0, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def conv_model(path: Path, channels: int = 64, seed: int = 0) -> Path:
    """A small CNN graph, uint8 [B, 8, 8, 3] -> float32 [B, 17], with real convolution kernels.

    Wide enough (3x3 convs over 64 channels, sums of hundreds of products) that running it in
    bf16 instead of f32 moves outputs by ~1e-2: a backend that silently runs bf16 fails parity.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, (channels, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (channels, channels, 3, 3)).astype(np.float32)
    w3 = rng.normal(0, 0.2, (channels, 17)).astype(np.float32)
    x = helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", 8, 8, 3])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 17])
    nodes = [
        helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "inv255"], ["f01"]),
        helper.make_node("Transpose", ["f01"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w3"], ["scores"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"),
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(w3, "w3"),
    ]
    graph = helper.make_graph(nodes, "conv_test", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def model(tmp_path):
    return build_model(tmp_path / "m.onnx")


def _need(name: str) -> None:
    pytest.importorskip(name)


# --- both backends, same answers ------------------------------------------------------------


def test_every_backend_runs_the_contract_model_like_numpy(model, backend):
    e = open_engine(model, backend=backend, device="cpu", threads=1)
    assert (e.backend, e.device, e.precision) == (backend, "cpu", "fp32")
    assert [p.name for p in e.inputs] == ["frames"] and e.inputs[0].dtype == "uint8"
    assert e.inputs[0].shape[1:] == SHAPE and not isinstance(e.inputs[0].shape[0], int)
    frames = _frames(3)
    for n in (1, 3):  # dynamic batch
        got = e.run(frames[:n])
        assert got.dtype == np.float32 and got.shape == (n, 17)
        np.testing.assert_allclose(got, reference_scores(frames[:n]), rtol=1e-5, atol=1e-6)
    assert e.metadata()["gifsent"] == make_document().to_json()
    assert backend in e.describe() and "fp32" in e.describe()


def test_openvino_fp32_matches_onnxruntime_fp32_on_a_cnn(tmp_path):
    _need("onnxruntime")
    _need("openvino")
    path = conv_model(tmp_path / "cnn.onnx")
    frames = _frames(5, seed=3, shape=(8, 8, 3))
    ref = open_engine(path, backend="onnxruntime", device="cpu").run(frames)
    ov = open_engine(path, backend="openvino", device="cpu")
    got = ov.run(frames)
    # f32 on both: every score within 1e-4 (bf16 would be ~1e-2 off on this graph)
    assert np.abs(got - ref).max() <= 1e-4, np.abs(got - ref).max()
    assert float(np.abs(ref).max()) > 0.1  # the bound is not vacuous
    # the precision was set explicitly, not left to OpenVINO's CPU default
    hint = ov._compiled.get_property("INFERENCE_PRECISION_HINT")
    assert "f32" in str(hint).lower() or "float32" in str(hint).lower(), hint


def test_bf16_is_opt_in_and_close_to_fp32_where_the_cpu_has_it(tmp_path):
    _need("openvino")
    if eng.cpu_bf16_reason() is not None:
        pytest.skip("this CPU has no native bf16")
    path = conv_model(tmp_path / "cnn.onnx")
    frames = _frames(6, seed=4, shape=(8, 8, 3))
    f32 = open_engine(path, backend="openvino", device="cpu").run(frames)
    b = open_engine(path, backend="openvino", device="cpu", precision="bf16")
    assert b.precision == "bf16"
    got = b.run(frames)
    diff = np.abs(got - f32).max()
    assert 0 < diff < 0.05 * float(np.abs(f32).max())  # bf16 really ran, and stayed close


def test_bf16_without_native_support_is_refused_with_the_reason(tmp_path, monkeypatch):
    _need("openvino")

    class NoBf16Core:
        def get_property(self, device, name):
            assert name == "OPTIMIZATION_CAPABILITIES"
            return ["FP32", "INT8"]

    monkeypatch.setattr(eng, "_CORE", NoBf16Core())
    with pytest.raises(DeviceError, match=r"no native bf16.*FP32, INT8.*--precision fp32"):
        open_engine(conv_model(tmp_path / "c.onnx"), backend="openvino", precision="bf16")


def test_bf16_is_refused_on_onnxruntime(model):
    _need("onnxruntime")
    with pytest.raises(DeviceError, match="only available with --backend openvino"):
        open_engine(model, backend="onnxruntime", precision="bf16")


def test_openvino_engine_is_safe_to_share_between_threads(tmp_path):
    _need("openvino")
    path = conv_model(tmp_path / "cnn.onnx")
    e = open_engine(path, backend="openvino", device="cpu")
    inputs = [_frames(2, seed=s, shape=(8, 8, 3)) for s in range(6)]
    want = [e.run(x) for x in inputs]
    got: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(3):
            got[i] = e.run(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(6):
        np.testing.assert_array_equal(got[i], want[i])


def test_every_backend_loads_bytes_and_refuses_junk(model, tmp_path, backend):
    e = open_engine(model.read_bytes(), backend=backend, device="cpu")
    assert e.metadata()["gifsent"] == make_document().to_json()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match=f"{backend} cannot"):
        open_engine(junk, backend=backend, device="cpu")
    with pytest.raises(ModelError, match="does not exist"):
        open_engine(tmp_path / "gone.onnx", backend=backend)


# --- choosing a backend -----------------------------------------------------------------------


def test_auto_prefers_openvino_on_the_cpu_when_installed(model):
    _need("openvino")
    e = open_engine(model)  # this machine: no CUDA
    assert e.backend == "openvino" and e.device == "cpu"
    assert "auto: CPU with openvino" in e.note


def test_auto_without_openvino_uses_onnxruntime_and_says_what_openvino_would_buy(
    model, monkeypatch
):
    _need("onnxruntime")
    monkeypatch.setitem(sys.modules, "openvino", None)
    e = open_engine(model)
    assert e.backend == "onnxruntime" and e.provider == "CPUExecutionProvider"
    assert "faster" in e.note and "gifsent[openvino]" in e.note
    with pytest.raises(ImportError, match=r"pip install 'gifsent\[openvino\]'"):
        open_engine(model, backend="openvino")
    with pytest.raises(DeviceError, match="bf16 needs OpenVINO"):
        open_engine(model, precision="bf16")


def test_no_backend_at_all_is_an_import_error_with_the_install_line(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"no inference backend is installed: pip install"):
        open_engine(model)
    with pytest.raises(ImportError, match=r"gifsent\[cpu\]"):
        open_engine(model, backend="onnxruntime")


def test_openvino_never_pretends_to_run_on_cuda(model):
    with pytest.raises(DeviceError, match="--device cuda is not usable with --backend openvino"):
        open_engine(model, backend="openvino", device="cuda")


def test_bad_names_are_value_errors(model):
    with pytest.raises(ValueError, match="backend must be one of"):
        open_engine(model, backend="tensorrt")
    with pytest.raises(ValueError, match="precision must be one of"):
        open_engine(model, precision="int4")


def test_int8_model_on_onnxruntime_cpu_warns(tmp_path, backend):
    import dataclasses

    doc = dataclasses.replace(make_document(), precision="int8")
    m = build_model(tmp_path / "q.onnx", metadata=doc.to_json())
    if backend == "onnxruntime":
        with pytest.warns(RuntimeWarning, match="int8 runs slower than the fp32 model"):
            s = ModelSession(m, device="cpu", backend=backend)
        assert s.warnings and "--backend openvino" in s.warnings[0]
        assert s.precision == "int8+fp32"
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            s = ModelSession(m, device="cpu", backend=backend)
        assert s.warnings == []


# --- the library and the CLI on each backend ---------------------------------------------------


def test_scorer_rows_have_the_same_shape_and_model_id_on_every_backend(model, tmp_path):
    _need("onnxruntime")
    _need("openvino")
    from gifsent_infer.running.scorer import Scorer

    gifs = write_gifs(tmp_path / "g", 4)
    rows = {}
    for b in ("onnxruntime", "openvino"):
        s = Scorer(model, device="cpu", backend=b)
        assert s.backend == b
        rows[b] = [r.to_row() for r in s.score_many(gifs, batch_size=3, workers=0)]
    a, o = rows["onnxruntime"], rows["openvino"]
    assert [list(r) for r in a] == [list(r) for r in o]
    for ra, ro in zip(a, o, strict=True):
        assert ra["model_id"] == ro["model_id"] and ra["status"] == ro["status"] == "ok"
        assert {k: v for k, v in ra.items() if not isinstance(v, float)} == {
            k: v for k, v in ro.items() if not isinstance(v, float)
        }
        for k, v in ra.items():
            if isinstance(v, float):
                assert abs(v - ro[k]) <= 1e-4, (k, v, ro[k])


def test_resume_works_across_backends(model, tmp_path, capsys):
    _need("onnxruntime")
    _need("openvino")
    from gifsent_infer.cli import main

    def cli(*args):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.err

    write_gifs(tmp_path / "g", 3)
    out = tmp_path / "scores.csv"
    code, err = cli(tmp_path / "g", "-m", model, "-o", out, "--backend", "onnxruntime")
    assert code == 0 and "backend onnxruntime" in err
    first = out.read_text()
    write_gifs(tmp_path / "g", 1, start=3)  # one new GIF
    code, err = cli(tmp_path / "g", "-m", model, "-o", out, "--backend", "openvino", "--resume")
    assert code == 0 and "backend openvino" in err, err
    assert "3 already scored" in err  # the same model_id: onnxruntime's rows are kept
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and len({r["model_id"] for r in rows}) == 1
    assert out.read_text().startswith(first.splitlines()[0])  # same header


# --- one place for sessions -------------------------------------------------------------------


def test_no_other_file_creates_a_session():
    """Only gifsent_infer/running/engine.py may create an onnxruntime session or compile an OpenVINO model."""
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    files += [
        str(p.relative_to(REPO))
        for p in REPO.rglob("*.py")
        if ".venv" not in p.parts and str(p.relative_to(REPO)) not in files
    ]
    pattern = re.compile(r"InferenceSession\s*\(|\.compile_model\s*\(|\bCore\s*\(\s*\)")
    me = Path(__file__).resolve()
    offenders = []
    for rel in sorted(set(files)):
        path = REPO / rel
        if path.resolve() in (me, (REPO / "gifsent_infer" / "running" / "engine.py").resolve()):
            continue
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == [], (
        "sessions must be created by gifsent_infer/running/engine.py only:\n" + "\n".join(offenders)
    )


def test_a_reduced_model_warns_on_a_backend_it_was_not_checked_on(tmp_path, backend):
    import dataclasses
    import warnings

    check = {"backends": {"openvino": {"mean_spearman": 0.99}}, "recipe": "sensitive"}
    doc = dataclasses.replace(make_document(), precision="int8", metrics={"precision_check": check})
    m = build_model(tmp_path / "q.onnx", metadata=doc.to_json())
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        s = ModelSession(m, device="cpu", backend=backend)
    unchecked = [w for w in s.warnings if "checked against fp32 on openvino only" in w]
    assert len(unchecked) == (backend == "onnxruntime")
