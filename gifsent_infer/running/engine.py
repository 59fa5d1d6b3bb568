"""The one place an exported graph is run: sessions are created, options set and batches run here.

Everything that runs an ONNX graph — the Scorer and the CLI (through session.ModelSession),
export's parity and precision checks, the training feature stage and the Ray actors — opens
an :class:`Engine` with :func:`open_engine`. The backends behind it are rows of one table,
``BACKEND_TABLE`` (name, module to import and its install line, devices, precisions, how
to open a graph), and ``auto_backend`` is the one "auto" rule that reads it; two rows today,
loading the same ``.onnx`` file:

- ``onnxruntime``: CPU or CUDA. ``device="cuda"`` never falls back to the CPU silently: it is a
  DeviceError with the reason and the fix. ``device="auto"`` uses CUDA when it really works.
- ``openvino``: CPU (the `openvino` Python API; its onnxruntime plugin lists no device on AMD
  CPUs). OpenVINO silently computes in bf16 on CPUs that have it unless told otherwise, so the
  inference precision is always set explicitly: f32 unless ``precision="bf16"`` is asked for,
  which needs a CPU whose OpenVINO plugin reports native BF16.

``backend="auto"`` (auto_backend): CUDA -> onnxruntime; CPU -> the first installed backend of
the table that computes in the precision asked (openvino, else onnxruntime).
Both backends take uint8 ``frames`` [B, ...] with a dynamic batch axis and return float32 outputs;
OpenVINO runs a batch of a size announced with ``Engine.expect_batch`` (the Scorer's batch
size) through a twin compiled with that static batch, which its CPU plugin runs faster.
Neither library is imported at module import time: importing this module costs nothing, and a
missing library surfaces as an ImportError whose message is the install line.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.running.modelfile import ModelError, read_metadata, read_metadata_bytes

DEVICES = ("auto", "cpu", "cuda")
# The precision the engine computes in. fp32 graphs run at f32 by default on every backend;
# bf16 is an opt-in on OpenVINO CPUs with native bf16. (An int8 graph's quantized layers run in
# int8 whatever this says; it governs the float parts.)
RUN_PRECISIONS = ("fp32", "bf16")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

ORT_INSTALL = (
    "onnxruntime is not installed. Install exactly one variant: "
    "pip install 'gifsent[cpu]' (CPU) or pip install 'gifsent[gpu]' (NVIDIA CUDA); "
    "never both, or the CUDA provider disappears."
)
OPENVINO_INSTALL = (
    "the openvino backend is not installed: pip install 'gifsent[openvino]' "
    "(or pip install 'openvino>=2025.0'); or choose --backend onnxruntime"
)
NO_BACKEND = (
    "no inference backend is installed: pip install 'gifsent[cpu,openvino]' for CPUs "
    "(or 'gifsent[gpu]' for NVIDIA CUDA)"
)

CUDA_FIX = (
    "Fix: install the GPU build of onnxruntime and only that one "
    "(`pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'gifsent[gpu]'`), "
    "with the CUDA 12 and cuDNN 9 libraries it needs (e.g. `pip install 'onnxruntime-gpu[cuda,cudnn]'` "
    "or a CUDA toolkit on LD_LIBRARY_PATH) and an NVIDIA driver that sees the GPU (`nvidia-smi`). "
    "Or score on the CPU with --device cpu."
)

# What the openvino extra buys on a CPU, measured by benchmarks/bench_engines.py (BENCHMARKS.md):
# fused EfficientNet-Lite0 / ResNeXt-101 + LSTM graphs on a 2-core AVX-512 EPYC, vs onnxruntime.
OPENVINO_SPEEDUP_NOTE = (
    "the openvino extra ran the same fp32 graphs 1.4-1.8x faster on an AVX-512 CPU, and "
    "bf16 2-4x (benchmarks/bench_engines.py): pip install 'gifsent[openvino]'"
)


class DeviceError(GifsentError, RuntimeError):
    """The requested device, backend or precision cannot run the model; the message says why and the fix."""

    exit_code = USAGE


def import_backend(name: str):
    """The module behind backend `name` (BACKEND_TABLE), or ImportError with its install line."""
    import importlib

    info = BACKEND_TABLE[name]
    try:
        return importlib.import_module(info.module)
    except ImportError as e:
        raise ImportError(info.install) from e


def import_onnxruntime():
    """Return the onnxruntime module or raise ImportError with the install line."""
    return import_backend("onnxruntime")


def import_openvino():
    """Return the openvino module or raise ImportError with the install line."""
    return import_backend("openvino")


def installed_backends() -> list[str]:
    """The backends that can be imported here, in preference order for a CPU (the table's)."""
    out = []
    for name in BACKEND_TABLE:
        try:
            import_backend(name)
        except ImportError:
            continue
        out.append(name)
    return out


_CORE: Any = None
_CORE_LOCK = threading.Lock()


def openvino_core():
    """One shared openvino.Core (creating it loads the plugins; reuse is cheaper and safe)."""
    global _CORE
    ov = import_openvino()
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = ov.Core()
        return _CORE


def cpu_bf16_reason() -> str | None:
    """None when OpenVINO's CPU plugin has native bf16; else why bf16 cannot be used here."""
    try:
        caps = list(openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except ImportError:
        return OPENVINO_INSTALL
    except Exception as e:  # the plugin could not answer
        return f"OpenVINO's CPU plugin did not report its capabilities ({e})"
    if "BF16" not in caps:
        return (
            f"this CPU has no native bf16 (OpenVINO's CPU capabilities: {', '.join(caps)}); "
            "bf16 would be emulated and slower than fp32 — run with --precision fp32"
        )
    return None


@dataclass(frozen=True)
class Port:
    """A graph input or output: name, element type ("uint8", "float32", ...), shape.

    Static dimensions are ints; dynamic ones are None or a symbolic name (str). `aliases`:
    every name the engine knows the port by (OpenVINO merges an Identity output with its
    input, so a graph output can carry two tensor names); `name` is one of them.
    """

    name: str
    dtype: str
    shape: tuple
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return self.aliases or (self.name,)


def _ort_dtype(t: str) -> str:
    # onnxruntime spells types "tensor(uint8)"; numpy-style names are shared by both backends
    t = t[len("tensor(") : -1] if t.startswith("tensor(") else t
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(t, t)


def _source_bytes(model) -> tuple[Path | None, bytes | None]:
    """A path, serialized bytes or an onnx.ModelProto -> (path, None) or (None, bytes)."""
    if hasattr(model, "SerializeToString"):
        return None, model.SerializeToString()
    if isinstance(model, (bytes, bytearray, memoryview)):
        return None, bytes(model)
    return Path(model), None


class Engine:
    """A loaded graph on one backend. Create with :func:`open_engine`.

    backend: "onnxruntime" or "openvino"; device: "cpu" or "cuda"; precision: the run
    precision ("fp32" or "bf16"); provider: what actually runs it ("CPUExecutionProvider",
    "CUDAExecutionProvider", "OpenVINO CPU"); note: why auto chose what it chose (may be "").
    `run` is safe to call from several threads at once.
    """

    backend: str
    device: str
    precision: str
    provider: str
    threads: int | None
    note: str = ""
    inputs: list[Port]
    outputs: list[Port]

    def run(self, frames: np.ndarray, output: str | None = None) -> np.ndarray:
        """One batch: feed `frames` to the (only) input; return the named or first output, float32."""
        return self.run_all({self.inputs[0].name: frames}, [output] if output else None)[0]

    def run_all(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list:
        raise NotImplementedError

    def expect_batch(self, size: int) -> None:
        """Say that batches of `size` inputs will come often (a Scorer's batch size). An engine
        that runs a fixed-shape graph faster (OpenVINO) compiles one for that size the first
        time a batch of it runs; other sizes keep the dynamic graph. Nothing on onnxruntime."""

    def run_batched(
        self, frames: np.ndarray, *, batch_size: int = 4, output: str | None = None
    ) -> np.ndarray:
        """`run` over N inputs in batches of `batch_size` (the last may be smaller)."""
        if len(frames) >= 2 * batch_size:
            self.expect_batch(batch_size)
        outs = [
            self.run(np.ascontiguousarray(frames[i : i + batch_size]), output)
            for i in range(0, len(frames), batch_size)
        ]
        return np.concatenate(outs, axis=0)

    def metadata(self) -> dict[str, str]:
        """The graph's ONNX metadata_props."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line: backend, device, precision, provider, threads (and why, for auto)."""
        threads = f", {self.threads} thread(s)" if self.threads else ""
        note = f" ({self.note})" if self.note else ""
        return (
            f"backend {self.backend}, device {self.device}, precision {self.precision}, "
            f"provider {self.provider}{threads}{note}"
        )

    def info(self) -> dict[str, Any]:
        """JSON-ready description (recorded by `gifsent-infer info` and benchmarks)."""
        return {
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "provider": self.provider,
            "threads": self.threads,
            "version": self.version,
        }

    version: str = ""


# --- onnxruntime ------------------------------------------------------------------------------


def _preload_cuda(ort) -> None:
    # onnxruntime-gpu >= 1.21 can load CUDA/cuDNN from the nvidia-* pip packages.
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        # a failed preload shows up as a CPU-only session, which _ort_create reports
        with contextlib.suppress(Exception):
            preload()


class OrtEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, session, ort, device: str, threads: int | None, note: str) -> None:
        self._session = session
        self.provider = session.get_providers()[0]
        self.device = "cuda" if self.provider == CUDA else "cpu"
        self.precision = "fp32"
        self.threads = threads
        self.note = note
        self.version = ort.__version__
        self.inputs = [
            Port(i.name, _ort_dtype(i.type), tuple(i.shape)) for i in session.get_inputs()
        ]
        self.outputs = [
            Port(o.name, _ort_dtype(o.type), tuple(o.shape)) for o in session.get_outputs()
        ]

    def run_all(self, feeds, outputs=None):
        feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        res = self._session.run(outputs, feeds)  # InferenceSession.run is thread-safe
        return [np.asarray(r, dtype=np.float32) if r.dtype != np.float32 else r for r in res]

    def metadata(self) -> dict[str, str]:
        return dict(self._session.get_modelmeta().custom_metadata_map)


def _ort_create(model, device: str, threads: int | None, quiet: bool, spin: bool, name: str):
    ort = import_onnxruntime()
    path, data = _source_bytes(model)
    source = str(path) if path is not None else data

    def make(providers, quiet_log=False):
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        if quiet or quiet_log:  # errors only (e.g. probing CUDA for auto; unused initializers)
            so.log_severity_level = 3
        if not spin:
            # no busy-waiting between ops: a decoder thread may need the core meanwhile
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(source, sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"onnxruntime cannot load {name}: {msg}") from None

    available = ort.get_available_providers()
    if device == "cpu":
        return OrtEngine(make([CPU]), ort, device, threads, "")
    if CUDA not in available:
        reason = (
            f"this onnxruntime ({ort.__version__}) has no CUDA provider "
            f"(available: {', '.join(available)}); the CPU-only package is installed"
        )
        if device == "cuda":
            raise DeviceError(f"--device cuda is not usable: {reason}.\n{CUDA_FIX}")
        return OrtEngine(make([CPU]), ort, "cpu", threads, f"auto: CPU, because {reason}")
    _preload_cuda(ort)
    session = make([CUDA, CPU], quiet_log=device == "auto")
    if session.get_providers()[0] == CUDA:
        return OrtEngine(
            session, ort, "cuda", threads, "auto: CUDA works" if device == "auto" else ""
        )
    reason = (
        "onnxruntime-gpu is installed but its CUDA provider failed to initialise "
        "(CUDA or cuDNN libraries not found, or no usable GPU/driver; onnxruntime's log "
        "above names the missing library)"
    )
    if device == "cuda":
        raise DeviceError(f"--device cuda is not usable: {reason}.\n{CUDA_FIX}")
    # onnxruntime already fell back to the CPU provider
    return OrtEngine(session, ort, "cpu", threads, f"auto: CPU, because {reason}")


def _ort_has_cuda() -> bool:
    try:
        return CUDA in import_onnxruntime().get_available_providers()
    except ImportError:
        return False


# --- OpenVINO -----------------------------------------------------------------------------------


class OpenVinoEngine(Engine):
    """An OpenVINO compiled model with a dynamic batch axis, and beside it one compiled with a
    static batch for each size announced by `expect_batch`.

    OpenVINO's CPU plugin runs a static-shaped graph markedly faster than the same graph with a
    dynamic batch (the make-demo EfficientNet-Lite0 model in bf16: ~1.35x; BENCHMARKS.md), so a
    batch of an announced size runs through its static twin, compiled lazily when the first
    batch of that size comes (a one-GIF run or a last partial batch never waits for a compile).
    Every other size runs the dynamic model; the outputs are the same either way.
    """

    backend = "openvino"

    def __init__(
        self,
        compiled,
        ov,
        precision: str,
        threads: int | None,
        note: str,
        meta,
        static: Callable[[int], Any] | None = None,
    ) -> None:
        self._compiled = compiled
        self.device = "cpu"
        self.provider = "OpenVINO CPU"
        self.precision = precision
        self.threads = threads
        self.note = note
        self.version = ov.__version__
        self._meta = meta
        self._local = threading.local()  # an infer request is not thread-safe: one per thread

        def port(p, i) -> Port:
            names = p.get_names()
            name = p.get_any_name() if names else f"#{i}"
            shape = tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape())
            return Port(name, p.get_element_type().to_dtype().name, shape, tuple(sorted(names)))

        self.inputs = [port(p, i) for i, p in enumerate(compiled.inputs)]
        self.outputs = [port(p, i) for i, p in enumerate(compiled.outputs)]
        self._out_index = {n: i for i, o in enumerate(self.outputs) for n in o.names}
        # static(batch) -> a compiled model with that static batch, or None (cannot be had)
        dynamic = any(p.shape and p.shape[0] is None for p in self.inputs)
        self._make_static = static if dynamic else None
        self._expected: set[int] = set()
        self._static: dict[int, Any] = {}  # batch -> compiled model (None: it failed)
        self._static_lock = threading.Lock()

    def expect_batch(self, size: int) -> None:
        # batch 1 stays dynamic: measured no faster static, and a one-GIF run never compiles twice
        if self._make_static is not None and size > 1:
            self._expected.add(int(size))

    @property
    def static_batches(self) -> tuple[int, ...]:
        """The batch sizes that have a static-shaped compiled model now."""
        return tuple(sorted(b for b, c in self._static.items() if c is not None))

    def _compiled_for(self, batch: int):
        """The compiled model for a batch of `batch` inputs: its static twin when that size
        was announced (compiled now if this is its first batch), else the dynamic one."""
        if batch not in self._expected:
            return self._compiled
        static = self._static.get(batch, False)
        if static is False:
            with self._static_lock:
                static = self._static.get(batch, False)
                if static is False:
                    static = self._static[batch] = self._make_static(batch)
        return static if static is not None else self._compiled

    def _request(self, compiled):
        reqs = getattr(self._local, "requests", None)
        if reqs is None:
            reqs = self._local.requests = {}
        req = reqs.get(id(compiled))
        if req is None:
            req = reqs[id(compiled)] = compiled.create_infer_request()
        return req

    def run_all(self, feeds, outputs=None):
        inputs = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        batch = len(next(iter(inputs.values()))) if inputs else 0
        req = self._request(self._compiled_for(batch))
        req.infer(inputs)
        names = outputs or [o.name for o in self.outputs]
        res = []
        for n in names:
            if n not in self._out_index:
                raise ValueError(f"the graph has no output {n!r}; it has {list(self._out_index)}")
            # copy: the request reuses its output buffers on the next call
            t = req.get_output_tensor(self._out_index[n]).data
            res.append(np.array(t, dtype=np.float32, copy=True))
        return res

    def metadata(self) -> dict[str, str]:
        return dict(self._meta)


def _ov_create(model, threads: int | None, precision: str, name: str):
    ov = import_openvino()
    core = openvino_core()
    if precision == "bf16":
        reason = cpu_bf16_reason()
        if reason:
            raise DeviceError(f"--precision bf16 is not usable: {reason}")
    path, data = _source_bytes(model)
    if path is not None and not path.is_file():
        raise ModelError(f"model file {path} does not exist")

    config = {
        # explicit, always: OpenVINO defaults to bf16 on CPUs that have it
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        # one request uses all threads (we run one batch at a time per caller)
        "PERFORMANCE_HINT": "LATENCY",
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if path is not None:  # a model file: its compiled form is cached (running/ovcache.py)
        # weightless blobs (weights re-read from the model file): OpenVINO 2026.4's default
        # cache mode brings stacked LSTM heads back from the blob with wrong outputs (make
        # demo's model: scores off by 0.05-0.12; tests/infer/test_static_batch.py)
        config["CACHE_MODE"] = "OPTIMIZE_SIZE"
        config["CACHE_DIR"] = compiled_cache_dir(path, ov.__version__, config)
    compiled = _ov_compile_cached(core, path, config) if path is not None else None
    if compiled is None:
        ov_model = _ov_read(core, path, data, name)  # ModelError: "cannot load"
        try:
            compiled = core.compile_model(ov_model, "CPU", config)
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"openvino cannot compile {name} for the CPU: {msg}") from None
    # the protobuf scanner (no onnx package)
    meta = read_metadata(path) if path is not None else read_metadata_bytes(data)

    def static(batch: int):
        return _ov_compile_static(core, ov, path, name, config, batch)

    # a model file only (a graph handed over as bytes is export's short-lived check)
    return OpenVinoEngine(
        compiled, ov, precision, threads, "", meta, static if path is not None else None
    )


def _ov_compile_static(core, ov, path: Path, name: str, config: dict, batch: int):
    """The graph compiled with every dynamic batch axis of its inputs fixed at `batch`; None
    when OpenVINO cannot reshape or compile it (the dynamic model then runs that size too).

    Not through the compiled-model cache: a static graph compiles fast (ResNeXt-101 ~0.6 s,
    Lite0 ~0.3 s) and loading its weightless blob measured no faster (BENCHMARKS.md)."""
    try:
        model = _ov_read(core, path, None, name)
        shapes = {}
        for port in model.inputs:
            shape = port.get_partial_shape()
            if shape.rank.is_static and len(shape) > 0 and shape[0].is_dynamic:
                shapes[port] = ov.PartialShape([batch, *list(shape)[1:]])
        if not shapes:
            return None
        model.reshape(shapes)
        plain = {k: v for k, v in config.items() if k not in ("CACHE_DIR", "CACHE_MODE")}
        return core.compile_model(model, "CPU", plain)
    except Exception:  # a graph OpenVINO cannot fix the shape of: the dynamic model runs it
        return None


def raw_ort_session(model: str | os.PathLike, providers: list):
    """A bare onnxruntime InferenceSession with explicit providers (and their options), for
    tools that need what an Engine hides: I/O binding, the TensorRT provider
    (scripts/gpu_bench.py). Errors only in the log."""
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(model), sess_options=so, providers=providers)


def _ov_read(core, path, data, name: str):
    try:
        if path is not None:
            return core.read_model(str(path))
        return core.read_model(io.BytesIO(data))
    except Exception as e:  # OpenVINO raises RuntimeError/its own types for bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"openvino cannot load {name}: {msg}") from None


def _ov_compile_cached(core, path: Path, config: dict):
    """Compile straight from the file: with a warm CACHE_DIR, OpenVINO then loads the compiled
    blob without reading or converting the ONNX graph. None when that fails (the caller then
    reads and compiles in two steps, for an error message that says which step failed)."""
    try:
        return core.compile_model(str(path), "CPU", config)
    except Exception:
        return None


def compiled_cache_dir(path: Path, openvino_version: str, config: dict) -> str:
    from gifsent_infer.running.ovcache import compiled_cache_dir as folder
    from gifsent_infer.running.ovcache import model_sha256

    return str(folder(model_sha256(path), openvino_version, config))


# --- the backend table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """One inference backend: what it is called, how it is imported, where and how it runs.

    A new backend (TensorRT, CoreML...) is one entry here: its Engine subclass, its `open`
    function, and its devices and precisions; the CLIs, the Scorer, export's parity checks,
    training's feature stage and Ray all read this table.
    """

    name: str
    label: str  # its name in messages
    module: str  # the Python module it needs, imported only when it is used
    install: str  # the ImportError's message when that module is missing
    devices: tuple[str, ...]  # "cpu", "cuda"
    precisions: tuple[str, ...]  # run precisions (RUN_PRECISIONS)
    # open(model, device, threads, precision, quiet, spin, name) -> Engine
    open: Callable[..., Engine]
    # auto's note when it picks this backend for the CPU
    cpu_note: str = ""


def _open_ort(model, device, threads, precision, quiet, spin, name) -> Engine:
    return _ort_create(model, device, threads, quiet, spin, name)


def _open_ov(model, device, threads, precision, quiet, spin, name) -> Engine:
    return _ov_create(model, threads, precision, name)


# In preference order for a CPU: OpenVINO ran the same fp32 graphs 1.4-1.8x faster than
# onnxruntime on this project's CPU (BENCHMARKS.md), so auto takes it first when installed.
BACKEND_TABLE: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "openvino",
            "OpenVINO",
            "openvino",
            OPENVINO_INSTALL,
            devices=("cpu",),
            precisions=("fp32", "bf16"),
            open=_open_ov,
            cpu_note="auto: CPU with openvino (installed)",
        ),
        Backend(
            "onnxruntime",
            "onnxruntime",
            "onnxruntime",
            ORT_INSTALL,
            devices=("cpu", "cuda"),
            precisions=("fp32",),
            open=_open_ort,
            cpu_note="auto: CPU with onnxruntime; " + OPENVINO_SPEEDUP_NOTE,
        ),
    )
}
BACKENDS = ("auto", *sorted(BACKEND_TABLE))  # what --backend takes


def auto_backend(device: str, precision: str = "fp32") -> str:
    """The one auto rule: the backend that runs `precision` on `device` ("cpu" or "cuda").

    cuda: the first backend of the table that runs CUDA; cpu: the first installed one, in the
    table's order (its CPU preference), that computes in `precision`. Raises DeviceError
    when none can, ImportError (the install line) when none is installed.
    """
    able = [b for b in BACKEND_TABLE.values() if device in b.devices and precision in b.precisions]
    if device == "cuda":
        if not able:
            raise DeviceError(
                f"--precision {precision} is a CPU option (OpenVINO); drop it for CUDA"
            )
        return able[0].name
    have = installed_backends()
    for b in able:
        if b.name in have:
            return b.name
    on_cpu = [b for b in BACKEND_TABLE.values() if "cpu" in b.devices]
    if len(able) == len(on_cpu):  # every backend computes in it: none is installed
        raise ImportError(NO_BACKEND)
    needs = " or ".join(b.label for b in able)
    raise DeviceError(f"--precision {precision} needs {needs}: {able[0].install}")


def auto_choice() -> str:
    """What backend="auto", device="auto" picks here, without loading a model (for `info`)."""
    have = installed_backends()
    if not have:
        return "nothing (no backend installed)"
    cpu = auto_backend("cpu")
    if _ort_has_cuda():
        return f"{auto_backend('cuda')} on CUDA when it initialises, else {cpu} on the CPU"
    return f"{cpu} on the CPU"


def open_engine(
    model: str | os.PathLike | bytes | Any,
    *,
    backend: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    quiet: bool = False,
    spin: bool = True,
) -> Engine:
    """Load `model` (a path, serialized bytes or an onnx.ModelProto) on a backend and device.

    backend: "auto" (CUDA -> onnxruntime; CPU -> openvino when installed, else onnxruntime),
    "onnxruntime" or "openvino". device: "auto", "cpu" or "cuda" (never a silent CPU
    fallback). precision: "fp32" (the default everywhere) or "bf16" (OpenVINO on a CPU with
    native bf16 only). threads: intra-op threads (None: the library's default, one per core).
    quiet: onnxruntime logs errors only. spin: let onnxruntime's idle workers busy-wait.

    Raises ImportError (message: the install line) for a backend that is not installed,
    DeviceError when the device/precision cannot be had, ModelError when the graph cannot load.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if precision not in RUN_PRECISIONS:
        raise ValueError(f"precision must be one of {RUN_PRECISIONS}, got {precision!r}")
    path, _ = _source_bytes(model)
    name = str(path) if path is not None else "the graph"
    if path is not None and not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    args = (model, threads, precision, quiet, spin, name)
    if backend != "auto":
        _check_backend(BACKEND_TABLE[backend], device, precision)
        return BACKEND_TABLE[backend].open(model, device, *args[1:])
    if device == "cuda" or (device == "auto" and _ort_has_cuda()):
        eng = _open_on_cuda(device, precision, args)
        if eng is not None:
            return eng
    chosen = auto_backend("cpu", precision)
    eng = BACKEND_TABLE[chosen].open(model, "cpu", *args[1:])
    eng.note = BACKEND_TABLE[chosen].cpu_note
    return eng


def _check_backend(b: Backend, device: str, precision: str) -> None:
    """DeviceError when backend `b` cannot run `device` or `precision` (say why and the fix)."""
    if device == "cuda" and "cuda" not in b.devices:
        on_cuda = " or ".join(x.name for x in BACKEND_TABLE.values() if "cuda" in x.devices)
        raise DeviceError(
            f"--device cuda is not usable with --backend {b.name} ({b.label} runs on the CPU "
            f"here); use --backend {on_cuda} with the gifsent[gpu] extra, or --device cpu"
        )
    if precision not in b.precisions:
        able = [x.name for x in BACKEND_TABLE.values() if precision in x.precisions]
        raise DeviceError(
            f"--precision {precision} is only available with --backend {' or '.join(able)} "
            f"({b.name}'s CPU provider has no {precision} kernels for these graphs); drop "
            f"--precision or use {' or '.join(able)}"
        )


def _open_on_cuda(device: str, precision: str, args: tuple) -> Engine | None:
    """auto on CUDA: the CUDA backend, or (CUDA failed under "auto") the CPU's auto backend with
    the reason in its note; None for a precision CUDA does not run under "auto"."""
    if precision not in BACKEND_TABLE[auto_backend("cuda")].precisions:
        if device == "cuda":
            auto_backend("cuda", precision)  # the DeviceError saying so
        return None
    cuda = BACKEND_TABLE[auto_backend("cuda")]
    eng = cuda.open(args[0], device, *args[1:])
    if eng.device == "cuda":
        return eng
    cpu = auto_backend("cpu", precision)
    if cpu == eng.backend:
        return eng
    note = eng.note  # CUDA failed: prefer the CPU's own first choice
    eng = BACKEND_TABLE[cpu].open(args[0], "cpu", *args[1:])
    eng.note = note.replace("auto: CPU", f"auto: CPU with {cpu}", 1)
    return eng
