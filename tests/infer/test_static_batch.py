"""OpenVINO's static-batch twin (engine.py): a batch of the announced size runs through a graph
compiled with that static batch, lazily, with the same outputs as the dynamic graph; every
other size runs the dynamic one. And the compiled-model cache gives what a cold compile gives."""

from __future__ import annotations

import numpy as np
import pytest
from infer_support import SPEC, build_model, write_gifs
from test_engine import conv_model

from gifsent_infer import paths
from gifsent_infer.options import ScoreOptions
from gifsent_infer.running import engine as engines
from gifsent_infer.running.engine import open_engine
from gifsent_infer.running.scorer import Scorer

pytest.importorskip("openvino")

SHAPE = (SPEC.num_frames, SPEC.crop, SPEC.crop, 3)


def _frames(n: int, shape=SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _cache_folders() -> set:
    root = paths.cache_dir() / "openvino"
    return set(root.iterdir()) if root.is_dir() else set()


def _int8_conv(tmp_path):
    """conv_model quantized to QDQ int8 by onnxruntime (a stand-in for export's int8 graphs)."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    src = conv_model(tmp_path / "cnn.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"frames": _frames(4, (8, 8, 3), seed=i)} for i in range(2)])

        def get_next(self):
            return next(self.feeds, None)

    out = tmp_path / "cnn-int8.onnx"
    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ)
    return out


def lstm_model(path, hidden: int = 65, layers: int = 3, seed: int = 0):
    """uint8 [B, 4, 8, 8, 3] -> scores [B, 17] through stacked LSTMs whose zero initial states
    come from the input's shape (ConstantOfShape), as the exported LSTM heads do. OpenVINO
    2026.4's default compiled-model cache brings this graph back with wrong outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "inv255"], ["f01"]),
        helper.make_node("ReduceMean", ["f01", "hw"], ["m"], keepdims=0),  # [B, 4, 3]
        helper.make_node("MatMul", ["m", "Wp"], ["mp"]),
        helper.make_node("Transpose", ["mp"], ["seq0"], perm=[1, 0, 2]),  # [4, B, P]
        helper.make_node("Shape", ["frames"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["b"], axis=0),
        helper.make_node("Concat", ["one", "b", "hidden"], ["hshape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["hshape"],
            ["h0"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
        ),
    ]
    inits = {
        "inv255": np.array(1 / 255, np.float32),
        "hw": np.array([2, 3], np.int64),
        "Wp": rng.normal(0, 0.5, (3, 32)).astype(np.float32),
        "zero": np.array([0], np.int64),
        "one": np.array([1], np.int64),
        "hidden": np.array([hidden], np.int64),
        "last": np.array(3, np.int64),
        "Wo": rng.normal(0, 0.5, (hidden, 17)).astype(np.float32),
    }
    prev, width = "seq0", 32
    for i in range(layers):
        inits[f"W{i}"] = rng.normal(0, 0.3, (1, 4 * hidden, width)).astype(np.float32)
        inits[f"R{i}"] = rng.normal(0, 0.3, (1, 4 * hidden, hidden)).astype(np.float32)
        inits[f"B{i}"] = rng.normal(0, 0.1, (1, 8 * hidden)).astype(np.float32)
        ins = [prev, f"W{i}", f"R{i}", f"B{i}", "", "h0", "h0"]
        nodes.append(helper.make_node("LSTM", ins, [f"Y{i}"], hidden_size=hidden))
        nodes.append(helper.make_node("Squeeze", [f"Y{i}", "one"], [f"s{i}"]))  # [4, B, H]
        prev, width = f"s{i}", hidden
    nodes.append(helper.make_node("Gather", [prev, "last"], ["h"], axis=0))
    nodes.append(helper.make_node("MatMul", ["h", "Wo"], ["scores"]))
    x = helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", 4, 8, 8, 3])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 17])
    graph = helper.make_graph(
        nodes, "lstm", [x], [y], [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, str(path))
    return path


def test_a_warm_compiled_model_cache_gives_the_same_outputs_as_a_cold_compile(tmp_path):
    """The dynamic model compiled cold into the cache, then loaded from it, and its static
    twin, on a stacked-LSTM head: the same outputs as onnxruntime every time."""
    pytest.importorskip("onnxruntime")
    path = lstm_model(tmp_path / "lstm.onnx")
    frames = _frames(4, (4, 8, 8, 3), seed=2)
    ref = open_engine(path, backend="onnxruntime", device="cpu").run(frames)
    assert float(np.abs(ref).max()) > 0.1
    for state in ("cold", "warm"):
        e = open_engine(path, backend="openvino", device="cpu")
        np.testing.assert_allclose(e.run(frames[:3]), ref[:3], atol=1e-5, err_msg=state)
        e.expect_batch(4)
        np.testing.assert_allclose(e.run(frames), ref, atol=1e-5, err_msg=f"{state} twin")
        assert e.static_batches == (4,)
    assert len(_cache_folders()) == 1  # the warm round loaded the dynamic model from it
    # the same file elsewhere (a Ray actor writes the model to its own temporary folder), the
    # first copy gone: the same cache folder, weights read from the file at hand
    moved = tmp_path / "elsewhere" / "model.onnx"
    moved.parent.mkdir()
    moved.write_bytes(path.read_bytes())
    path.unlink()
    e = open_engine(moved, backend="openvino", device="cpu")
    np.testing.assert_allclose(e.run(frames), ref, atol=1e-5, err_msg="moved")
    assert len(_cache_folders()) == 1


def test_a_full_batch_runs_the_static_twin_with_identical_outputs(tmp_path):
    path = build_model(tmp_path / "m.onnx", timeline=True, std=True, mean_output="features")
    names = ["scores", "segment_scores", "scores_std", "features"]
    dynamic = open_engine(path, backend="openvino", device="cpu")
    static = open_engine(path, backend="openvino", device="cpu")
    static.expect_batch(4)
    assert static.static_batches == ()  # announced, not compiled: nothing ran yet
    frames = _frames(4)
    want = dynamic.run_all({"frames": frames}, names)
    got = static.run_all({"frames": frames}, names)
    assert static.static_batches == (4,)
    for name, w, g in zip(names, want, got, strict=True):
        assert g.shape == w.shape and np.array_equal(g, w), name
    # another size (a last partial batch, one GIF) runs the dynamic graph: no new compile
    for n in (3, 1):
        out = static.run_all({"frames": frames[:n]}, names)
        assert [o.shape[0] for o in out] == [n] * 4
        for name, w, g in zip(names, want, out, strict=True):
            np.testing.assert_allclose(g, w[:n], rtol=1e-6, atol=1e-7, err_msg=name)
    assert static.static_batches == (4,)
    assert dynamic.static_batches == ()  # nothing announced: never compiled


@pytest.mark.parametrize("kind", ["fp32", "bf16", "int8"])
def test_static_and_dynamic_agree_on_a_cnn_in_every_precision(tmp_path, kind):
    if kind == "bf16" and engines.cpu_bf16_reason() is not None:
        pytest.skip("this CPU has no native bf16")
    path = _int8_conv(tmp_path) if kind == "int8" else conv_model(tmp_path / "cnn.onnx")
    precision = "bf16" if kind == "bf16" else "fp32"
    frames = _frames(8, (8, 8, 3), seed=5)
    dynamic = open_engine(path, backend="openvino", device="cpu", precision=precision)
    static = open_engine(path, backend="openvino", device="cpu", precision=precision)
    static.expect_batch(8)
    want, got = dynamic.run(frames), static.run(frames)
    assert static.static_batches == (8,)
    assert float(np.abs(want).max()) > 0.1  # not a vacuous comparison
    assert np.array_equal(got, want), np.abs(got - want).max()


def test_batch_one_and_a_fixed_batch_graph_never_compile_a_twin(tmp_path):
    e = open_engine(build_model(tmp_path / "m.onnx"), backend="openvino", device="cpu")
    e.expect_batch(1)  # measured no faster static; a one-GIF run must not compile twice
    e.run(_frames(1))
    assert e.static_batches == ()
    fixed = open_engine(build_model(tmp_path / "f.onnx", batch=2), backend="openvino", device="cpu")
    fixed.expect_batch(2)
    fixed.run(_frames(2))
    assert fixed.static_batches == ()  # already static: nothing to fix
    ort = open_engine(tmp_path / "m.onnx", backend="onnxruntime", device="cpu")
    ort.expect_batch(4)  # a no-op there
    assert ort.run(_frames(4)).shape == (4, 17)


def test_the_twin_leaves_the_compiled_model_cache_to_the_dynamic_model(tmp_path):
    path = build_model(tmp_path / "m.onnx")
    e = open_engine(path, backend="openvino", device="cpu")
    base = _cache_folders()
    assert len(base) == 1 and any(base.copy().pop().iterdir())  # the dynamic model's blob
    e.expect_batch(4)
    e.run(_frames(4))
    assert e.static_batches == (4,) and _cache_folders() == base  # compiled, not cached
    again = open_engine(path, backend="openvino", device="cpu")  # a later run: same folder
    again.expect_batch(3)
    again.run(_frames(3))
    assert again.static_batches == (3,) and _cache_folders() == base


def test_scorer_announces_its_batch_size_and_scores_the_same(tmp_path):
    gifs = write_gifs(tmp_path / "gifs", 5)
    path = build_model(tmp_path / "m.onnx")
    opts = ScoreOptions(model=str(path), backend="openvino", device="cpu", precision="fp32")
    served = Scorer.from_options(opts.replace(batch_size=4))  # as the service builds it
    frames = np.stack([served.prepare(g)[0] for g in gifs[:4]])
    rows = served.run_batch(frames)  # the service's full batch: its static twin
    assert served.session.engine.static_batches == (4,) and len(rows) == 4
    scorer = Scorer.from_options(opts.replace(batch_size=4))
    engine = scorer.session.engine
    got = list(scorer.score_many(gifs, batch_size=4, workers=0))  # one full batch, then 1
    assert engine.static_batches == (4,)
    np.testing.assert_array_equal(np.stack([r.array for r in got[:4]]), np.stack(rows))
    plain = Scorer(path, backend="openvino", device="cpu", precision="fp32")
    want = list(plain.score_many(gifs, batch_size=1, workers=0))  # the dynamic graph, GIF by GIF
    assert plain.session.engine.static_batches == ()
    for g, w in zip(got, want, strict=True):
        assert g.ok and w.ok
        np.testing.assert_allclose(g.array, w.array, rtol=1e-6, atol=1e-7)
    one = Scorer.from_options(opts.replace(batch_size=8))
    assert one.score(gifs[0]).ok  # a one-GIF run: the dynamic graph only
    assert one.session.engine.static_batches == ()
