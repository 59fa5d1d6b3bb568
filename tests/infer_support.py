"""Test support for the runtime tests: tiny ONNX models built with onnx's helper API, and tiny GIFs.

The model follows the gifsent contract: input `frames` uint8 [batch, S*T, crop, crop, 3],
output `scores` float32 [batch, 17] = sigmoid(mean RGB / 255 @ W + b), and a valid `gifsent`
metadata document. Its scores depend on a GIF's colours, so differently coloured GIFs get
different scores. `reference_scores` computes the same function in numpy.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from gifsent_infer.contract import (
    EMOTIONS,
    EncoderInfo,
    HeadInfo,
    ModelDocument,
    Normalization,
    SamplingSpec,
    TargetScale,
)

SPEC = SamplingSpec(segments=2, frames_per_segment=2, fps=10.0, size=16, crop=16)


def make_document(spec: SamplingSpec = SPEC) -> ModelDocument:
    return ModelDocument(
        sampling=spec,
        normalization=Normalization(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0)),
        encoder=EncoderInfo(name="mean-colour-test", feature_dim=3, weights="random"),
        head=HeadInfo(name="rnn", config={"num_layers": 1, "hidden": 3}),
        target=TargetScale(low=[-1.0] * 17, high=[1.0] * 17),
        metrics={"test": {"rmse": 0.1, "ev": 0.2}},
    )


def weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 17)).astype(np.float32), rng.normal(size=17).astype(np.float32)


def reference_scores(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the test model computes, in numpy: [B, S*T, H, W, 3] uint8 -> [B, 17]."""
    w, b = weights(seed)
    mean = frames.astype(np.float64).mean(axis=(1, 2, 3)) / 255.0
    return 1.0 / (1.0 + np.exp(-(mean @ w + b)))


def build_model(
    path: Path,
    *,
    spec: SamplingSpec = SPEC,
    seed: int = 0,
    metadata: str | None = "auto",
    batch: int | str = "batch",
    input_name: str = "frames",
    n_out: int = 17,
) -> Path:
    """Write a tiny gifsent-contract ONNX model; metadata=None leaves the document out."""
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
    graph = helper.make_graph(nodes, "gifsent_test", [frames], [scores], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    if metadata == "auto":
        metadata = make_document(spec).to_json()
    if metadata is not None:
        helper.set_model_props(model, {"gifsent": metadata})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def gif_bytes(
    seed: int, *, frames: int = 4, size: tuple[int, int] = (24, 20), delay_ms: int = 100
) -> bytes:
    """A small animated GIF whose colours depend on `seed`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    images = []
    for i in range(frames):
        arr = np.empty((size[1], size[0], 3), np.uint8)
        arr[:] = (base + 37 * i) % 256
        # a block in the corner, so that frames differ in layout as well as colour
        arr[: size[1] // 2, : size[0] // 2] = (255 - base) % 256
        images.append(Image.fromarray(arr, "RGB"))
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=delay_ms, loop=0
    )
    return buf.getvalue()


def write_gifs(folder: Path, count: int, *, start: int = 0, **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        p = folder / f"g{i:05d}.gif"
        p.write_bytes(gif_bytes(i, **kw))
        paths.append(p)
    return paths


__all__ = [
    "EMOTIONS",
    "SPEC",
    "build_model",
    "gif_bytes",
    "make_document",
    "reference_scores",
    "write_gifs",
]
