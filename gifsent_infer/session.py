"""One exported gifsent model loaded into onnxruntime: find it, check its contract, pick a device, run it.

The graph is self-describing (see contract.py): its ``gifsent`` metadata document says how
to sample GIFs for it, and this module refuses a graph without a document it understands.
onnxruntime is imported inside functions (through ``gifsent_infer.ort``), so importing this
module costs nothing and a missing onnxruntime surfaces as an ImportError with the install hint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from gifsent_infer import paths
from gifsent_infer.contract import (
    INPUT_NAME,
    METADATA_KEY,
    NUM_EMOTIONS,
    OUTPUT_NAME,
    ContractError,
    ModelDocument,
)
from gifsent_infer.ort import import_onnxruntime

DEVICES = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

HOW_TO_GET_A_MODEL = (
    "Get a model in one of these ways:\n"
    "  - train one and export it: `gifsent-train ...`, then `gifsent-export --model rnn` "
    "(writes {default});\n"
    "  - or run `make demo` in the gifsent repository (a small demo model, end to end);\n"
    "then pass it with --model FILE, set $GIFSENT_MODEL, or leave it where gifsent-export wrote it."
)

CUDA_FIX = (
    "Fix: install the GPU build of onnxruntime and only that one "
    "(`pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'gifsent[gpu]'`), "
    "with the CUDA 12 and cuDNN 9 libraries it needs (e.g. `pip install 'onnxruntime-gpu[cuda,cudnn]'` "
    "or a CUDA toolkit on LD_LIBRARY_PATH) and an NVIDIA driver that sees the GPU (`nvidia-smi`). "
    "Or score on the CPU with --device cpu."
)


class ModelError(RuntimeError):
    """The model cannot be used: missing, unreadable, not ONNX, or without a gifsent document."""


class DeviceError(RuntimeError):
    """The requested device cannot run the model; the message gives the reason and the fix."""


def resolve_model(model: str | os.PathLike | None = None) -> Path:
    """The model file to use: `model`, else $GIFSENT_MODEL, else where gifsent-export writes.

    Raises ModelError, whose message says how to get a model, when none is found.
    """
    if model is not None:
        path = Path(model).expanduser()
        if path.is_dir():  # not "does not exist": say what is there
            found = sorted(p.name for p in path.glob("*.onnx"))[:5]
            hint = f"; it holds {', '.join(found)}" if found else "; it holds no .onnx file"
            raise ModelError(f"--model {path} is a folder, not an .onnx file{hint}")
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist (from --model)")
        return path
    env = os.environ.get(paths.MODEL_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist (from ${paths.MODEL_ENV})")
        return path
    found = paths.find_default_model()
    if found is not None and found.is_file():
        return found
    default = paths.default_model_path("rnn")
    raise ModelError(
        f"no model given and none found: --model was not given, ${paths.MODEL_ENV} is not set, "
        f"and {default} does not exist.\n" + HOW_TO_GET_A_MODEL.format(default=default)
    )


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- reading the metadata without onnxruntime or onnx -------------------------------------
# An .onnx file is one protobuf ModelProto. Its metadata_props (field 14) are
# StringStringEntryProto messages (key = field 1, value = field 2). Scanning the top-level
# fields and seeking over the rest (the graph, field 7, holds the weights) reads the document
# of a 200 MB model in microseconds and needs no onnx package.

_METADATA_FIELD = 14


def _varint(f) -> int | None:
    shift = result = 0
    while True:
        b = f.read(1)
        if not b:
            if shift == 0:
                return None  # clean end of message
            raise ModelError("truncated protobuf varint")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ModelError("malformed protobuf varint")


def _entry(buf: bytes) -> tuple[str, str]:
    import io

    f = io.BytesIO(buf)
    key = value = ""
    while (tag := _varint(f)) is not None:
        field, wire = tag >> 3, tag & 7
        if wire != 2:
            raise ModelError("malformed metadata entry")
        n = _varint(f) or 0
        data = f.read(n)
        if field == 1:
            key = data.decode("utf-8", "replace")
        elif field == 2:
            value = data.decode("utf-8", "replace")
    return key, value


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ONNX file's metadata_props as a dict, read by scanning the protobuf."""
    props: dict[str, str] = {}
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        while (tag := _varint(f)) is not None:
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _varint(f)
            elif wire == 1:
                f.seek(8, os.SEEK_CUR)
            elif wire == 5:
                f.seek(4, os.SEEK_CUR)
            elif wire == 2:
                n = _varint(f) or 0
                if f.tell() + n > size:
                    raise ModelError(f"{path} is truncated or not an ONNX model")
                if field == _METADATA_FIELD:
                    key, value = _entry(f.read(n))
                    props[key] = value
                else:
                    f.seek(n, os.SEEK_CUR)
            else:
                raise ModelError(f"{path} is not an ONNX model (bad protobuf wire type {wire})")
    return props


def _document_from(props: dict[str, str], path) -> ModelDocument:
    text = props.get(METADATA_KEY)
    if text is None:
        raise ModelError(
            f"{path} has no '{METADATA_KEY}' metadata document, so it is not a gifsent model "
            "(or was exported without add_metadata); re-export it with gifsent-export"
        )
    try:
        return ModelDocument.from_json(text)
    except ContractError as e:
        raise ModelError(f"{path}: the gifsent metadata document is not usable: {e}") from None


def read_document(path: str | os.PathLike) -> ModelDocument:
    """The gifsent ModelDocument of an exported model, without loading the graph.

    Raises ModelError when the file is missing, is not ONNX, or has no usable document.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    return _document_from(read_metadata(path), path)


# --- devices ---------------------------------------------------------------------------------


def _session_options(ort, threads: int | None, quiet: bool):
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    if quiet:  # probing CUDA for --device auto: its failure is expected, not worth a log line
        so.log_severity_level = 3
    return so


def _preload_cuda(ort) -> None:
    # onnxruntime-gpu >= 1.21 can load CUDA/cuDNN from the nvidia-* pip packages.
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        # a failed preload shows up as a CPU-only session, which _create reports
        with contextlib.suppress(Exception):
            preload()


class ModelSession:
    """An exported gifsent model in an onnxruntime InferenceSession.

    `device` is "cpu", "cuda" (an error if CUDA cannot run it, never a silent CPU fallback) or
    "auto" (CUDA when it really works, else CPU). `threads` sets onnxruntime's intra-op
    threads (None: onnxruntime's default, one per core). `run` is safe to call from several
    threads at once (InferenceSession.run is).
    """

    def __init__(
        self, path: str | os.PathLike, device: str = "auto", threads: int | None = None
    ) -> None:
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} does not exist")
        ort = import_onnxruntime()
        self.device_note = ""  # why auto chose what it chose
        self._session = self._create(ort, device, threads)
        self.provider: str = self._session.get_providers()[0]
        meta = self._session.get_modelmeta().custom_metadata_map
        self.document: ModelDocument = _document_from(dict(meta), self.path)
        self.spec = self.document.sampling
        self._check_io()
        self._model_id: str | None = None
        self._id_lock = threading.Lock()

    def _create(self, ort, device: str, threads: int | None):
        available = ort.get_available_providers()
        model = str(self.path)

        def make(providers, quiet=False):
            try:
                return ort.InferenceSession(
                    model, sess_options=_session_options(ort, threads, quiet), providers=providers
                )
            except Exception as e:  # onnxruntime raises its own exception types
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ModelError(f"onnxruntime cannot load {self.path}: {msg}") from None

        if device == "cpu":
            return make([CPU])
        if CUDA not in available:
            reason = (
                f"this onnxruntime ({ort.__version__}) has no CUDA provider "
                f"(available: {', '.join(available)}); the CPU-only package is installed"
            )
            if device == "cuda":
                raise DeviceError(f"--device cuda is not usable: {reason}.\n{CUDA_FIX}")
            self.device_note = f"auto: CPU, because {reason}"
            return make([CPU])
        _preload_cuda(ort)
        session = make([CUDA, CPU], quiet=device == "auto")
        if session.get_providers()[0] == CUDA:
            self.device_note = "auto: CUDA works" if device == "auto" else ""
            return session
        reason = (
            "onnxruntime-gpu is installed but its CUDA provider failed to initialise "
            "(CUDA or cuDNN libraries not found, or no usable GPU/driver; onnxruntime's log "
            "above names the missing library)"
        )
        if device == "cuda":
            raise DeviceError(f"--device cuda is not usable: {reason}.\n{CUDA_FIX}")
        self.device_note = f"auto: CPU, because {reason}"
        return session  # onnxruntime already fell back to the CPU provider

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        frames = inputs.get(INPUT_NAME)
        if frames is None or OUTPUT_NAME not in outputs:
            raise ModelError(
                f"{self.path} does not follow the gifsent contract: it needs input "
                f"'{INPUT_NAME}' and output '{OUTPUT_NAME}', it has inputs {sorted(inputs)} "
                f"and outputs {sorted(outputs)}"
            )
        if frames.type != "tensor(uint8)" or len(frames.shape) != 5:
            raise ModelError(
                f"{self.path}: input '{INPUT_NAME}' must be uint8 [batch, frames, height, width, 3], "
                f"it is {frames.type} {frames.shape}"
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
                self._model_id = file_sha256(self.path)
            return self._model_id

    def run(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [B, S*T, crop, crop, 3] -> float32 scores [B, 17] in EMOTIONS order."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        if frames.ndim != 5 or tuple(frames.shape[1:]) != self.input_shape:
            raise ValueError(
                f"frames must have shape [batch, {', '.join(map(str, self.input_shape))}], "
                f"got {list(frames.shape)}"
            )
        n = frames.shape[0]
        if n == 0:
            return np.zeros((0, NUM_EMOTIONS), np.float32)
        frames = np.ascontiguousarray(frames)
        if self.fixed_batch is None:
            return self._run(frames)
        b = self.fixed_batch
        out = []
        for start in range(0, n, b):
            chunk = frames[start : start + b]
            k = len(chunk)
            if k < b:  # pad the last chunk to the graph's batch size
                pad = np.zeros((b - k, *chunk.shape[1:]), np.uint8)
                chunk = np.concatenate([chunk, pad])
            out.append(self._run(chunk)[:k])
        return np.concatenate(out)

    def _run(self, frames: np.ndarray) -> np.ndarray:
        (scores,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: frames})
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != (frames.shape[0], NUM_EMOTIONS):
            raise ModelError(
                f"{self.path}: output '{OUTPUT_NAME}' has shape {list(scores.shape)}, "
                f"expected [{frames.shape[0]}, {NUM_EMOTIONS}]"
            )
        return scores
