"""Test support for the runtime tests: tiny ONNX models built with onnx's helper API (GIFs and
documents come from `support`, re-exported here for the runtime tests).

The model follows the gifsent contract: input `frames` uint8 [batch, S*T, crop, crop, 3],
output `scores` float32 [batch, 17] = sigmoid(mean RGB / 255 @ W + b), and a valid `gifsent`
metadata document. Its scores depend on a GIF's colours, so differently coloured GIFs get
different scores. `reference_scores` computes the same function in numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from support import SPEC, gif_bytes, model_document, write_gifs

from gifsent_infer.contract import EMOTIONS, ModelDocument, SamplingSpec


def make_document(spec: SamplingSpec = SPEC) -> ModelDocument:
    """The document of the test model for sampling `spec` (support.model_document)."""
    return model_document(spec=spec)


def weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 17)).astype(np.float32), rng.normal(size=17).astype(np.float32)


def reference_scores(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the test model computes, in numpy: [B, S*T, H, W, 3] uint8 -> [B, 17]."""
    w, b = weights(seed)
    mean = frames.astype(np.float64).mean(axis=(1, 2, 3)) / 255.0
    return 1.0 / (1.0 + np.exp(-(mean @ w + b)))


def reference_timeline(frames: np.ndarray, spec: SamplingSpec = SPEC, seed: int = 0) -> np.ndarray:
    """What the test model's `segment_scores` are, in numpy: [B, S*T, H, W, 3] -> [B, S, 17]."""
    w, b = weights(seed)
    x = frames.astype(np.float64).reshape(frames.shape[0], spec.segments, -1, 3)
    return 1.0 / (1.0 + np.exp(-(x.mean(axis=2) / 255.0 @ w + b)))


def build_model(
    path: Path,
    *,
    spec: SamplingSpec = SPEC,
    seed: int = 0,
    metadata: str | None = "auto",
    batch: int | str = "batch",
    input_name: str = "frames",
    n_out: int = 17,
    mean_output: str | None = None,
    timeline: bool = False,
    std: bool = False,
) -> Path:
    """Write a tiny gifsent-contract ONNX model; metadata=None leaves the document out.
    mean_output names a second output: each GIF's mean RGB in [0, 1], float32 [B, 3].
    timeline adds `segment_scores` [B, S, 17]: the scores' function of each segment's own
    mean colour (reference_timeline); std adds `scores_std` [B, 17] = 0.1 * scores."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, b = weights(seed)
    w, b = w[:, :n_out], b[:n_out]  # n_out < 17: a broken model, for error paths
    n = spec.num_frames
    frames = helper.make_tensor_value_info(
        input_name, TensorProto.UINT8, [batch, n, spec.crop, spec.crop, 3]
    )
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, n_out])
    nodes = [
        helper.make_node("Cast", [input_name], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),  # [B, 3]
        helper.make_node("Mul", ["m", "inv255"], ["m01"]),
        helper.make_node("MatMul", ["m01", "W"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "b"),
    ]
    outputs = [scores]
    if mean_output:
        nodes.append(helper.make_node("Identity", ["m01"], [mean_output]))
        outputs.append(helper.make_tensor_value_info(mean_output, TensorProto.FLOAT, [batch, 3]))
    if timeline:
        nodes += [
            helper.make_node("Reshape", ["x", "seg_shape"], ["xs"]),  # [B, S, T*H*W, 3]
            helper.make_node("ReduceMean", ["xs", "axis2"], ["ms"], keepdims=0),  # [B, S, 3]
            helper.make_node("Mul", ["ms", "inv255"], ["ms01"]),
            helper.make_node("MatMul", ["ms01", "W"], ["zs"]),
            helper.make_node("Add", ["zs", "b"], ["ls"]),
            helper.make_node("Sigmoid", ["ls"], ["segment_scores"]),
        ]
        inits += [
            numpy_helper.from_array(np.array([0, spec.segments, -1, 3], np.int64), "seg_shape"),
            numpy_helper.from_array(np.array([2], np.int64), "axis2"),
        ]
        outputs.append(
            helper.make_tensor_value_info(
                "segment_scores", TensorProto.FLOAT, [batch, spec.segments, n_out]
            )
        )
    if std:
        nodes.append(helper.make_node("Mul", ["scores", "tenth"], ["scores_std"]))
        inits.append(numpy_helper.from_array(np.array(0.1, np.float32), "tenth"))
        outputs.append(
            helper.make_tensor_value_info("scores_std", TensorProto.FLOAT, [batch, n_out])
        )
    graph = helper.make_graph(nodes, "gifsent_test", [frames], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    if metadata == "auto":
        metadata = make_document(spec).to_json()
    if metadata is not None:
        helper.set_model_props(model, {"gifsent": metadata})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_bad_inputs_folder(folder: Path, n_good: int) -> Path:
    """`n_good` GIFs, one more in a subfolder, and three bad inputs named .gif (truncated,
    empty, text): what the batch and Ray tests score to see one row per input."""
    write_gifs(folder, n_good)
    (folder / "sub").mkdir()
    (folder / "sub" / "deep.gif").write_bytes(gif_bytes(99))
    good = gif_bytes(5)
    (folder / "truncated.gif").write_bytes(good[: len(good) // 2])
    (folder / "zero.gif").write_bytes(b"")
    (folder / "text.gif").write_text("this is not a GIF\n")
    return folder


__all__ = [
    "EMOTIONS",
    "SPEC",
    "build_model",
    "gif_bytes",
    "make_document",
    "reference_scores",
    "write_bad_inputs_folder",
    "write_gifs",
]
