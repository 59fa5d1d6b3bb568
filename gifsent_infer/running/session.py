"""One exported gifsent model on an inference engine: find it, check its contract, pick a backend and device, run it.

The graph is self-describing (see contract.py): its ``gifsent`` metadata document says how
to sample GIFs for it, and this module refuses a graph without a document it understands.
Sessions are created by gifsent_infer.running.engine only (onnxruntime or OpenVINO, imported inside
functions), so importing this module costs nothing and a missing backend surfaces as an
ImportError whose message is the install line.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gifsent_infer.contract import (
    INPUT_NAME,
    NUM_EMOTIONS,
    OUTPUT_NAME,
    ModelDocument,
)
from gifsent_infer.files import file_sha256  # public here too: apps import it from session
from gifsent_infer.running.engine import (
    BACKENDS,
    CPU,
    CUDA,
    CUDA_FIX,
    DEVICES,
    RUN_PRECISIONS,
    DeviceError,
    Engine,
)

# the model file (finding it, its document) is modelfile.py's; re-exported here, where apps
# have always imported it from
from gifsent_infer.running.modelfile import (
    HOW_TO_GET_A_MODEL,
    ModelError,
    document_from,
    read_document,
    read_metadata,
    resolve_model,
)

__all__ = [
    "BACKENDS",
    "CPU",
    "CUDA",
    "CUDA_FIX",
    "DEVICES",
    "HOW_TO_GET_A_MODEL",
    "RUN_PRECISIONS",
    "DeviceError",
    "ModelError",
    "ModelSession",
    "file_sha256",
    "read_document",
    "read_metadata",
    "resolve_model",
]

# --- the model on an engine ------------------------------------------------------------------


class MissingOutputError(ModelError):
    """The model has no output that was asked for (e.g. a timeline from an older model)."""


class ModelSession:
    """An exported gifsent model on an inference engine (see engine.py), with its contract checked.

    `backend` is "auto" (CUDA -> onnxruntime; CPU -> openvino when installed, else
    onnxruntime), "onnxruntime" or "openvino". `device` is "cpu", "cuda" (an error if CUDA
    cannot run it, never a silent CPU fallback) or "auto" (CUDA when it really works, else
    CPU). `precision` is the run precision: "auto" (default: bf16 where OpenVINO runs it on a
    CPU with native bf16 and the model's recorded check holds, else fp32; running/precision.py),
    "fp32" or "bf16" (OpenVINO, CPUs with native bf16). `threads` sets the engine's intra-op threads (None: one per core). `run` is
    safe to call from several threads at once.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "auto",
        threads: int | None = None,
        *,
        backend: str = "auto",
        precision: str = "auto",
    ) -> None:
        from gifsent_infer.running.autotune import open_for

        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} does not exist")
        self.engine: Engine
        # the backend (measured on the CPU, cached) and the precision (from the model's
        # recorded check), each with its reason: running/autotune.py, running/precision.py
        self.engine, self.choice = open_for(
            self.path,
            read_document(self.path),
            backend=backend,
            device=device,
            threads=threads,
            precision=precision,
        )
        self.provider: str = self.engine.provider
        self.device_note = self.choice.backend_reason  # why auto chose what it chose
        self.document: ModelDocument = document_from(self.engine.metadata(), self.path)
        self.spec = self.document.sampling
        self._check_io()
        self.warnings: list[str] = []
        if self.document.precision == "int8" and self.engine.backend == "onnxruntime":
            msg = (
                f"{self.path.name} is an int8 model on onnxruntime's {self.engine.device.upper()} "
                "provider, where int8 runs slower than the fp32 model (BENCHMARKS.md); "
                "use --backend openvino (pip install 'gifsent[openvino]') or the fp32 model"
            )
            if self.engine.device == "cpu":
                self.warnings.append(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
        checked = self.document.metrics.get("precision_check", {}).get("backends")
        if self.document.precision != "fp32" and checked and self.engine.backend not in checked:
            msg = (
                f"{self.path.name} ({self.document.precision}) was checked against fp32 on "
                f"{', '.join(sorted(checked))} only, not on {self.engine.backend}: its ranking "
                f"there is unmeasured (use --backend {sorted(checked)[0]})"
            )
            self.warnings.append(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        self._model_id: str | None = None
        self._id_lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.engine.backend

    @property
    def device(self) -> str:
        return self.engine.device

    @property
    def precision(self) -> str:
        """What runs: the graph's precision, and the engine's for the float parts (e.g. "int8+fp32")."""
        graph, run = self.document.precision, self.engine.precision
        return run if graph in ("fp32", run) else f"{graph}+{run}"

    def describe(self) -> dict:
        """Backend, device, precision, provider, threads, engine version: for logs and `info`."""
        return {
            **self.engine.info(),
            "precision": self.precision,
            "note": self.device_note,
            "choice": self.choice.to_dict(),
        }

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self.engine.inputs}
        outputs = set(self.output_names)
        frames = inputs.get(INPUT_NAME)
        if frames is None or OUTPUT_NAME not in outputs:
            raise ModelError(
                f"{self.path} does not follow the gifsent contract: it needs input "
                f"'{INPUT_NAME}' and output '{OUTPUT_NAME}', it has inputs {sorted(inputs)} "
                f"and outputs {sorted(outputs)}"
            )
        if frames.dtype != "uint8" or len(frames.shape) != 5:
            raise ModelError(
                f"{self.path}: input '{INPUT_NAME}' must be uint8 [batch, frames, height, width, 3], "
                f"it is {frames.dtype} {list(frames.shape)}"
            )
        want = (self.spec.num_frames, self.spec.crop, self.spec.crop, 3)
        for got, exp in zip(frames.shape[1:], want, strict=True):
            if isinstance(got, int) and got != exp:
                raise ModelError(
                    f"{self.path}: input '{INPUT_NAME}' has shape {frames.shape}, but its "
                    f"sampling spec says [batch, {', '.join(map(str, want))}]"
                )
        batch = frames.shape[0]
        # A graph exported with a fixed batch size is fed in chunks of exactly that size.
        self.fixed_batch: int | None = batch if isinstance(batch, int) and batch > 0 else None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(S*T, crop, crop, 3): one GIF's frames as the graph wants them."""
        return (self.spec.num_frames, self.spec.crop, self.spec.crop, 3)

    @property
    def model_id(self) -> str:
        """The model file's sha256: the `model_id` column of every score row."""
        with self._id_lock:
            if self._model_id is None:
                from gifsent_infer.running.ovcache import model_sha256

                # memoised per (path, size, mtime): the compiled-model cache and backend auto
                # hashed this file already (a big model costs seconds to hash)
                self._model_id = model_sha256(self.path)
            return self._model_id

    @property
    def output_names(self) -> tuple[str, ...]:
        """The graph's outputs: always "scores"; newer models add more by name (the contract's
        `outputs`), e.g. "segment_scores" [B, S, 17] or "features" [B, D]."""
        return tuple(n for o in self.engine.outputs for n in o.names)

    def require_outputs(self, names: Sequence[str], why: str = "") -> None:
        """MissingOutputError (exit 2) naming what is missing, unless the graph has `names`."""
        missing = [n for n in names if n not in self.output_names]
        if missing:
            raise MissingOutputError(
                f"{self.path.name} has no {', '.join(repr(n) for n in missing)} output"
                + (f" (needed for {why})" if why else "")
                + f"; it has {list(self.output_names)}. It was exported before gifsent could "
                "write it: export the model again with this version of gifsent-export"
            )

    def expect_batch(self, size: int) -> None:
        """Batches of `size` GIFs will be the common case (the caller's batch size): the engine
        may run them through a graph compiled for that static batch (OpenVINO; engine.py)."""
        if self.fixed_batch is None:
            self.engine.expect_batch(size)

    def run(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [B, S*T, crop, crop, 3] -> float32 scores [B, 17] in EMOTIONS order."""
        return self.run_outputs(frames, (OUTPUT_NAME,))[OUTPUT_NAME]

    def run_outputs(self, frames: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """uint8 [B, S*T, crop, crop, 3] -> {name: float32 [B, ...]} for each output asked
        (from one model call: the encoder runs once whatever is asked)."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        if frames.ndim != 5 or tuple(frames.shape[1:]) != self.input_shape:
            raise ValueError(
                f"frames must have shape [batch, {', '.join(map(str, self.input_shape))}], "
                f"got {list(frames.shape)}"
            )
        self.require_outputs(names)
        n = frames.shape[0]
        if n == 0:
            return {name: self._empty(name) for name in names}
        frames = np.ascontiguousarray(frames)
        if self.fixed_batch is None:
            return self._run(frames, names)
        b = self.fixed_batch
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, n, b):
            chunk = frames[start : start + b]
            k = len(chunk)
            if k < b:  # pad the last chunk to the graph's batch size
                pad = np.zeros((b - k, *chunk.shape[1:]), np.uint8)
                chunk = np.concatenate([chunk, pad])
            parts.append({name: out[:k] for name, out in self._run(chunk, names).items()})
        return {name: np.concatenate([p[name] for p in parts]) for name in names}

    def _empty(self, name: str) -> np.ndarray:
        port = next(o for o in self.engine.outputs if name in o.names)
        tail = [d if isinstance(d, int) and d > 0 else 0 for d in port.shape[1:]]
        if name == OUTPUT_NAME:
            tail = [NUM_EMOTIONS]
        return np.zeros((0, *tail), np.float32)

    def _run(self, frames: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        values = self.engine.run_all({INPUT_NAME: frames}, list(names))
        out = dict(zip(names, values, strict=True))
        scores = out.get(OUTPUT_NAME)
        if scores is not None and scores.shape != (frames.shape[0], NUM_EMOTIONS):
            raise ModelError(
                f"{self.path}: output '{OUTPUT_NAME}' has shape {list(scores.shape)}, "
                f"expected [{frames.shape[0]}, {NUM_EMOTIONS}]"
            )
        return out
