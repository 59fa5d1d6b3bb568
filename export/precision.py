"""Reduced-precision variants of the encoder graph (fp16 for CUDA, int8 QDQ for CPUs) and the merge with a float head.

Both variants transform only the encoder graph (uint8 `frames` -> float32 `features`) and
then splice it onto the float32 head graph (`features` -> `scores`), so the head, tiny and
sensitive (an LSTM), always stays in float32 and the graph's I/O types never change.
fp16 uses onnxruntime's float16 pass (`onnxruntime.transformers.float16`, the same code as
onnxconverter-common) with `keep_io_types`, so the uint8 input and float32 output stay.
int8 uses onnxruntime's static quantization (QDQ, per-channel weights), calibrated on frames
from training GIFs; the preprocessing (cast, normalisation, layout) is left in float.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gifsent_infer.contract import INPUT_NAME

if TYPE_CHECKING:  # pragma: no cover
    import onnx

from gifsent_models.onnx import FEATURES_NAME, ExportError

_WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU")


def to_fp16(encoder: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and activations inside, uint8 input and float32 `features` output kept."""
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as e:
        raise ExportError(
            "fp16 conversion needs onnxruntime (its transformers.float16 module): "
            "pip install 'gifsent[cpu]' or 'gifsent[gpu]'"
        ) from e
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        # Resize's scales/roi and other shape-like inputs must stay float32: block Resize.
        return convert_float_to_float16(
            encoder, keep_io_types=True, op_block_list=["Resize", "Range", "RandomUniformLike"]
        )


def preprocessing_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes between the graph input and the first weight-bearing op.

    Those are the cast/normalise/transpose steps of preprocessing; quantizing them would
    only add error (their input is already exact uint8) and no speed.
    """
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen: set[str] = set()
    out: list[str] = []
    frontier = [i.name for i in model.graph.input]
    while frontier:
        edge = frontier.pop()
        for node in consumers.get(edge, []):
            if node.op_type in _WEIGHT_OPS or node.name in seen:
                continue
            seen.add(node.name)
            out.append(node.name)
            frontier.extend(node.output)
    return [n for n in out if n]


def tail_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes after the last weight-bearing op (pooling and reshaping into `features`).

    Left in float: their output is what the float head reads, and quantizing it buys no speed.
    It also keeps OpenVINO's low-precision passes from fusing a dequantization into the global
    pooling that feeds the head: with that fusion OpenVINO 2026.4's CPU plugin computed the
    MaxPool head's ReduceMax wrongly (scores off by up to 3.5 on a tiny ResNeXt, while the same
    graph on onnxruntime, or the head alone on OpenVINO, was right).
    """
    nodes = list(model.graph.node)  # ONNX graphs are topologically sorted
    last = max((i for i, n in enumerate(nodes) if n.op_type in _WEIGHT_OPS), default=-1)
    return [n.name for n in nodes[last + 1 :] if n.name]


class FramesReader:
    """onnxruntime CalibrationDataReader over uint8 frames [N, S*T, crop, crop, 3]."""

    def __init__(
        self, frames: np.ndarray, *, input_name: str = INPUT_NAME, batch_size: int = 1
    ) -> None:
        self.frames = frames
        self.input_name = input_name
        self.batch_size = batch_size
        self._it: Iterator[dict] | None = None

        self._range = (0, len(self))

    def __len__(self) -> int:  # in batches (onnxruntime's strided calibration asks)
        return -(-len(self.frames) // self.batch_size)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve only batches [start_index, end_index) until the next call (strided calibration)."""
        self._range = (start_index, end_index)
        self._it = None

    def _batches(self) -> Iterator[dict]:
        start, end = self._range
        for b in range(start, min(end, len(self))):
            i = b * self.batch_size
            yield {self.input_name: np.ascontiguousarray(self.frames[i : i + self.batch_size])}

    def get_next(self) -> dict | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


# int8 recipes, tried in this order by "auto" (the export keeps the first that passes the
# ranking gate on every installed backend): calibration method, and which layers stay float.
#   minmax      MinMax ranges, every conv/matmul in int8 (fastest)
#   percentile  ranges clipped at the 99.999th percentile of |activation| (outliers no longer
#               stretch the int8 grid of the whole tensor)
#   sensitive   percentile, and the precision-sensitive layers kept float: the first conv (raw
#               pixels), the last conv (the features the head reads) and depthwise convs (one
#               filter per channel: nothing averages their rounding error out)
#   mixed       percentile, then the layers kept float are chosen by measurement: each
#               quantized layer's effect on the ranking is measured (that layer alone back in
#               float, scored on held-out GIFs), and the most sensitive are kept float until
#               the gate holds; the export records which (precision_checks.int8.mixed)
# Every recipe calibrates strided (one batch of intermediate tensors in memory at a time,
# folded into running ranges or histograms), so calibration memory does not grow with the
# number of calibration GIFs.
INT8_RECIPES = ("minmax", "percentile", "sensitive", "mixed")
# Not tried by "auto" (an optional dependency, the reference `mixed` is compared with):
#   nncf        NNCF's quantize_with_accuracy_control on the ONNX graph, the project's mean
#               per-emotion Spearman vs fp32 as its metric (max drop = 1 - gate); its accuracy
#               restorer reverts the quantizers that hurt most until the drop holds
#               (pip install 'gifsent[nncf]')
EXTRA_RECIPES = ("nncf",)
NNCF_MAX_REVERTS = 16  # NNCF's max_num_iterations: at most this many layers reverted to float
NNCF_RANKING_GIFS = 12  # held-out GIFs NNCF ranks the quantizers on (as the mixed probe)


def int8_recipes(choice: str = "auto") -> tuple[str, ...]:
    """The recipes an export tries: all of them in order for "auto", else just `choice`."""
    if choice == "auto":
        return INT8_RECIPES
    if choice not in INT8_RECIPES + EXTRA_RECIPES:
        raise ValueError(
            f"int8 recipe must be auto or one of {INT8_RECIPES + EXTRA_RECIPES}, got {choice!r}"
        )
    return (choice,)


def sensitive_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the first and last Conv and of every depthwise Conv (weight shape [C, 1, ...])."""
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name]
    out = []
    for i, node in enumerate(convs):
        w = inits.get(node.input[1]) if len(node.input) > 1 else None
        depthwise = w is not None and len(w) >= 2 and w[1] == 1 and w[0] > 1
        if i == 0 or i == len(convs) - 1 or depthwise:
            out.append(node.name)
    return out


def quantize_encoder(
    encoder: onnx.ModelProto,
    calibration_frames: np.ndarray,
    *,
    per_channel: bool = True,
    batch_size: int = 1,
    recipe: str = "minmax",
    judge: MixedJudge | None = None,
    report: dict | None = None,
) -> onnx.ModelProto:
    """Static QDQ int8 quantization of an encoder graph, calibrated on `calibration_frames`.

    recipe: one of INT8_RECIPES (see there). "mixed" needs `judge` (how a candidate encoder
    ranks); `report`, when given, receives what the recipe decided ("kept_float": the layers
    left in float, most sensitive first, with their measured effect).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if len(calibration_frames) == 0:
        raise ExportError("int8 quantization needs calibration GIFs; none could be read")

    class Reader(FramesReader, CalibrationDataReader):
        pass

    reader = Reader(calibration_frames, batch_size=batch_size)
    if recipe not in INT8_RECIPES + EXTRA_RECIPES:
        raise ValueError(f"int8 recipe must be one of {INT8_RECIPES}, got {recipe!r}")
    exclude = preprocessing_nodes(encoder) + tail_nodes(encoder)
    if recipe == "nncf":
        if judge is None:
            raise ValueError("the nncf int8 recipe needs a judge (its validation metric)")
        return quantize_nncf(encoder, calibration_frames, judge, exclude, report)
    method = CalibrationMethod.MinMax if recipe == "minmax" else CalibrationMethod.Percentile
    with tempfile.TemporaryDirectory(prefix="gifsent-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(encoder, str(src))
        prepared = src
        try:  # ORT's recommended pre-processing (shape inference); optional
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = Path(tmp) / "pre.onnx"
            with _quiet():
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            prepared = pre
        except Exception:  # pre-processing is an optimisation only
            prepared = src
        if recipe == "sensitive":
            # names after pre-processing (shape inference keeps node names)
            exclude = exclude + sensitive_nodes(onnx.load(str(prepared)))
        # CalibStridedMinMax=1 (onnxruntime applies it to every calibrator, despite its name):
        # fold each batch into the running ranges / histograms, so calibration holds one
        # batch's intermediate tensors, not every batch's (18 GiB for ResNeXt-101 at 16 GIFs).
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True, "CalibStridedMinMax": 1}
        if recipe != "minmax":
            extra["CalibPercentile"] = 99.999
        if recipe == "mixed":
            # keep the ReLUs the QDQ pass would fold into a quantization's clamp: a layer put
            # back in float must read the activation after its ReLU, not before
            extra["QDQKeepRemovableActivations"] = True
        with _quiet():
            quantize_static(
                str(prepared),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                nodes_to_exclude=exclude,
                extra_options=extra,
            )
        quantized = onnx.load(str(dst))
        if recipe == "mixed":
            if judge is None:
                raise ValueError("the mixed int8 recipe needs a judge (how candidates rank)")
            total = len(weight_layers(quantized))
            quantized, kept = keep_sensitive_float(quantized, onnx.load(str(prepared)), judge)
            if report is not None:
                report["kept_float"] = kept
                report["weight_layers"] = total
                report["int8_weight_layers"] = len(weight_layers(quantized))
        return quantized


class MixedJudge(Protocol):
    """How the mixed recipe measures a candidate encoder against fp32."""

    gate: float

    def probe(self, encoder: onnx.ModelProto) -> float:
        """Cheap: one backend, a few held-out GIFs; how close the scores stay to fp32 (higher is
        closer, a continuous measure such as R², so that one layer's effect shows on few GIFs)."""

    def judge(self, encoder: onnx.ModelProto) -> float:
        """The gate's measurement: every gate backend, every held-out GIF (the lowest mean)."""

    def held_out(self) -> np.ndarray:
        """The held-out GIFs' frames (the nncf recipe's validation set)."""

    def validate(self, encoder: onnx.ModelProto, indices: list[int]) -> float:
        """Mean per-emotion Spearman vs fp32 on the held-out GIFs `indices`, onnxruntime."""


# The mixed recipe's search budget: the weight-bearing layers are probed in MIXED_GROUPS groups
# (consecutive blocks), then the most sensitive unit is split in halves and both halves are
# probed, until MIXED_PROBES probes are spent; the gate is then judged on at most
# 2·log2(units) + 2 candidates (the 1, 2, 4, ... most sensitive units float, then bisection).
MIXED_GROUPS = 12
MIXED_PROBES = 28
_PROBE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def quantize_nncf(
    encoder: onnx.ModelProto,
    calibration_frames: np.ndarray,
    judge: MixedJudge,
    exclude: list[str],
    report: dict | None = None,
) -> onnx.ModelProto:
    """NNCF's accuracy-controlled post-training quantization of the encoder (ONNX backend):
    calibrated on `calibration_frames` one GIF at a time, validated by `judge.validate` (mean
    per-emotion Spearman vs fp32 on the held-out GIFs given), reverting quantizers to float
    until the drop from fp32 (1.0) is at most 1 - gate, at most NNCF_MAX_REVERTS of them."""
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters
    except ImportError as e:
        raise ExportError("the nncf int8 recipe needs NNCF: pip install 'gifsent[nncf]'") from e
    frames = calibration_frames
    calib = nncf.Dataset(range(len(frames)), lambda i: {INPUT_NAME: frames[i : i + 1]})
    held = judge.held_out()
    validation = nncf.Dataset(range(len(held)), lambda i: {INPUT_NAME: held[i : i + 1]})

    def metric(model, items) -> float:
        return judge.validate(model, list(items))

    weights = [n.name for n in encoder.graph.node if n.op_type in _PROBE_OPS and n.name]
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)  # its INFO lines (progress bars, timings) are not ours
    with _quiet(), contextlib.ExitStack() as undo:
        undo.callback(nncf_log.setLevel, level)
        quantized = nncf.quantize_with_accuracy_control(
            encoder,
            calib,
            validation,
            metric,
            max_drop=1.0 - judge.gate,
            drop_type=nncf.DropType.ABSOLUTE,
            preset=nncf.QuantizationPreset.MIXED,
            target_device=nncf.TargetDevice.CPU,
            subset_size=len(frames),
            ignored_scope=nncf.IgnoredScope(names=exclude, validate=False),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=NNCF_MAX_REVERTS,
                ranking_subset_size=min(NNCF_RANKING_GIFS, len(held)),
                num_ranking_workers=1,
            ),
        )
    if report is not None:
        int8 = set(weight_layers(quantized))
        report["kept_float"] = [{"layer": n} for n in weights if n not in int8]
        report["weight_layers"] = len(weights)
        report["int8_weight_layers"] = len(int8)
    return quantized


def quantized_layers(quantized: onnx.ModelProto) -> list[str]:
    """Nodes that read a dequantized input: the weight-bearing layers int8 runs, and the ops
    between them (residual Adds, pooling) whose inputs pass through int8."""
    dq_out = {o for n in quantized.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [
        n.name
        for n in quantized.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and n.name
        and any(i in dq_out for i in n.input)
    ]


def weight_layers(quantized: onnx.ModelProto) -> list[str]:
    """The quantized weight-bearing layers (Conv, MatMul, Gemm reading a dequantized input), in
    graph order: where int8 buys its speed, and what the mixed recipe may put back in float."""
    ops = {n.name: n.op_type for n in quantized.graph.node}
    return [n for n in quantized_layers(quantized) if ops[n] in _PROBE_OPS]


def layer_groups(names: list[str], count: int | None = None) -> list[list[str]]:
    """`names` (graph order) in at most `count` (default MIXED_GROUPS) groups of consecutive
    layers, cut at block boundaries where the names show them ("/layer3/layer3.5/conv1/Conv":
    the shallowest path prefix that tells at least `count` blocks apart), else in equal runs."""
    count = MIXED_GROUPS if count is None else count
    if not names:
        return []
    parts = [n.strip("/").split("/") for n in names]
    blocks: list[list[str]] = [[n] for n in names]
    for depth in range(1, max(len(p) for p in parts)):
        keyed: dict[str, list[str]] = {}
        for n, p in zip(names, parts, strict=True):
            keyed.setdefault("/".join(p[:depth]), []).append(n)
        if len(keyed) >= min(count, len(names)):
            blocks = list(keyed.values())
            break
    if len(blocks) <= count:
        return blocks
    bounds = np.linspace(0, len(blocks), count + 1).round().astype(int)
    return [list(itertools.chain(*blocks[a:b])) for a, b in itertools.pairwise(bounds) if b > a]


def with_float_layers(
    quantized: onnx.ModelProto, original: onnx.ModelProto, names: set[str]
) -> onnx.ModelProto:
    """`quantized` with the layers in `names` computing in float again: each input that comes
    through a DequantizeLinear reads, instead, the activation before its QuantizeLinear, or
    the original float weight/bias (from `original`, the graph that was quantized); Q/DQ
    nodes nothing reads any more are pruned."""
    import onnx

    out = onnx.ModelProto.FromString(quantized.SerializeToString())
    graph = out.graph
    producer = {o: n for n in graph.node for o in n.output}
    src_nodes = {n.name: n for n in original.graph.node if n.name in names}
    float_inits = {t.name: t for t in original.graph.initializer}
    have = {t.name for t in graph.initializer}
    for node in graph.node:
        src = src_nodes.get(node.name)
        if src is None:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]  # the activation before quantization
                continue
            orig = src.input[i] if i < len(src.input) else ""
            if orig not in float_inits:
                continue  # no float original to restore: leave this input quantized
            restored = onnx.TensorProto()
            restored.CopyFrom(float_inits[orig])
            restored.name = f"{orig}__float"
            if restored.name not in have:
                graph.initializer.append(restored)
                have.add(restored.name)
            node.input[i] = restored.name
    _prune(graph)
    return out


def _prune(graph) -> None:
    """Drop nodes nothing reads (repeatedly) and initializers no node reads."""
    keep_outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | keep_outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)


def keep_sensitive_float(
    quantized: onnx.ModelProto, original: onnx.ModelProto, judge: MixedJudge
) -> tuple[onnx.ModelProto, list[dict]]:
    """The accuracy-aware mix, on a bounded budget. If the int8 graph already holds the gate,
    nothing is kept float. Otherwise the weight-bearing layers are probed in groups (each group
    alone back in float, its gain in the probe's measure over all-int8), the most sensitive
    unit is split and its halves probed, until MIXED_PROBES; then the 1, 2, 4, ... most
    sensitive units are put in float until the gate holds, and the fewest that hold are found
    by bisection. Returns the graph and the layers kept float (with their unit's measured gain);
    when even every unit in float fails, that graph is returned and the gate refuses it."""
    if judge.judge(quantized) >= judge.gate:
        return quantized, []
    memo: dict[frozenset[str], float] = {}

    def float_graph(names) -> onnx.ModelProto:
        return with_float_layers(quantized, original, set(names))

    def probe(names: list[str]) -> float:
        key = frozenset(names)
        if key not in memo:
            memo[key] = judge.probe(float_graph(names)) - base
        return memo[key]

    base = judge.probe(quantized)
    units = [(g, probe(g)) for g in layer_groups(weight_layers(quantized))]
    while len(memo) + 2 <= MIXED_PROBES:
        splittable = [u for u in units if len(u[0]) > 1]
        if not splittable:
            break
        worst = max(splittable, key=lambda u: u[1])
        half = len(worst[0]) // 2
        units.remove(worst)
        units += [(part, probe(part)) for part in (worst[0][:half], worst[0][half:])]
    units.sort(key=lambda u: u[1], reverse=True)

    def floated(k: int) -> list[str]:
        return [n for names, _ in units[:k] for n in names]

    def holds(k: int) -> bool:
        return judge.judge(float_graph(floated(k))) >= judge.gate

    lo, k = 0, 1  # lo: the most units known to fail (0: the int8 graph)
    while not holds(k):
        if k >= len(units):  # every unit float and still failing: the gate will say so
            break
        lo, k = k, min(2 * k, len(units))
    else:
        while k - lo > 1:  # the fewest units that hold
            mid = (lo + k) // 2
            lo, k = (lo, mid) if holds(mid) else (mid, k)
    gain = {n: g for names, g in units for n in names}
    kept = floated(k)
    record = [{"layer": n, "probe_gain": round(gain[n], 6)} for n in kept]
    return float_graph(kept), record


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantization tools log and print freely; keep stdout clean."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _align_opsets(a: onnx.ModelProto, b: onnx.ModelProto) -> None:
    """onnx.compose needs equal IR versions and compatible opsets; raise both to the max."""
    ir = max(a.ir_version, b.ir_version)
    a.ir_version = b.ir_version = ir
    versions: dict[str, int] = {}
    for m in (a, b):
        for imp in m.opset_import:
            versions[imp.domain] = max(versions.get(imp.domain, 0), imp.version)
    for m in (a, b):
        del m.opset_import[:]
        for domain, version in sorted(versions.items()):
            entry = m.opset_import.add()
            entry.domain = domain
            entry.version = version


def merge_encoder_head(encoder: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """One graph: encoder (`frames` -> `features`) then head (`features` -> outputs)."""
    import onnx
    from onnx import compose

    encoder, head = (
        onnx.ModelProto.FromString(encoder.SerializeToString()),
        onnx.ModelProto.FromString(head.SerializeToString()),
    )
    # Prefix internal names so the two graphs' node/edge names cannot collide; keep graph I/O.
    encoder = compose.add_prefix(encoder, "encoder/", rename_inputs=False, rename_outputs=False)
    head = compose.add_prefix(head, "head/", rename_inputs=False, rename_outputs=False)
    _align_opsets(encoder, head)
    merged = compose.merge_models(encoder, head, io_map=[(FEATURES_NAME, FEATURES_NAME)])
    del merged.metadata_props[:]
    return merged
