"""The gifsent checkpoint: state dicts plus the configs that rebuild encoder and head, never a pickled module.

Layout (``torch.save`` of plain containers and tensors, read back with
``torch.load(weights_only=True)``)::

    {"format": "gifsent-checkpoint", "version": 1,
     "encoder": {"name", "weights", "weights_sha256", "random_init", "source", "spec",
                 "state_dict"?},
     "head": {"name", "config", "state_dict"},
     "document": ModelDocument.to_dict()}

A pretrained encoder is stored by reference (its weights file and that file's sha256, checked
on load) rather than as 47M copied parameters; random-init and tiny encoders, or any encoder
when asked, are stored in full so that the checkpoint is self-contained.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gifsent_infer.contract import ContractError, ModelDocument, SamplingSpec
from gifsent_infer.errors import GifsentError
from gifsent_infer.files import atomic_path, file_sha256
from gifsent_models.encoders.base import (
    Encoder,
    WeightsFormatError,
    WeightsUnavailableError,
)
from gifsent_models.heads import config_dict, create_head, head_config, stored_head_config
from gifsent_models.registry import create_encoder
from gifsent_models.scorer import GifScorer

FORMAT = "gifsent-checkpoint"
VERSION = 1


class CheckpointError(GifsentError, ValueError):
    """A checkpoint that cannot be written or rebuilt; the message says why."""


@dataclass
class LoadedCheckpoint:
    scorer: GifScorer  # eval mode
    encoder: Encoder
    head: nn.Module
    head_name: str
    head_config: Any  # MaxPoolConfig | RNNConfig
    document: ModelDocument
    sha256: str  # of the checkpoint file
    path: Path


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def _doc_config(doc: ModelDocument, head_name: str, stored: bool) -> dict:
    """The document's head config with the fields its writer left out filled in the way the
    checkpoint's own config is (a stored one: as its gifsent behaved)."""
    try:
        resolve = stored_head_config if stored else head_config
        return config_dict(resolve(head_name, dict(doc.head.config)))
    except ValueError:
        return dict(doc.head.config)


def _check_document(
    doc: ModelDocument, encoder: Encoder, head_name: str, cfg: dict, *, stored: bool = False
) -> None:
    problems = []
    if doc.encoder.name != encoder.name:
        problems.append(f"document.encoder.name {doc.encoder.name!r} != encoder {encoder.name!r}")
    if doc.encoder.feature_dim != encoder.feature_dim:
        problems.append(
            f"document.encoder.feature_dim {doc.encoder.feature_dim} != {encoder.feature_dim}"
        )
    if doc.sampling != encoder.spec:
        problems.append(f"document.sampling {doc.sampling} != encoder.spec {encoder.spec}")
    if doc.normalization != encoder.normalization:
        problems.append(
            f"document.normalization {doc.normalization} != encoder's {encoder.normalization}"
        )
    if doc.head.name != head_name:
        problems.append(f"document.head.name {doc.head.name!r} != head {head_name!r}")
    if dict(doc.head.config) and _doc_config(doc, head_name, stored) != cfg:
        problems.append(f"document.head.config {dict(doc.head.config)} != head config {cfg}")
    if problems:
        raise CheckpointError(
            "checkpoint document disagrees with the model: " + "; ".join(problems)
        )


def save_checkpoint(
    path: str | Path,
    *,
    encoder: Encoder,
    head_name: str,
    head_config: Any,
    head: nn.Module,
    document: ModelDocument,
    include_encoder_state: bool | None = None,
) -> str:
    """Write the checkpoint atomically and return its sha256.

    include_encoder_state: None stores the encoder's weights only when they cannot be
    found again in the file they were loaded from (random init, tiny variants, weights
    changed since loading, e.g. fine-tuned); True always. False refuses for such encoders,
    since the checkpoint could not be rebuilt exactly.
    """
    path = Path(path)
    cfg = config_dict(_resolve_config(head_name, head_config))
    _check_document(document, encoder, head_name, cfg)
    by_reference = bool(encoder.weights_path) and not encoder.random_init
    changed = by_reference and (
        encoder.loaded_fingerprint is None
        or not torch.equal(encoder.weights_fingerprint(), encoder.loaded_fingerprint)
    )
    if include_encoder_state is None:
        include_encoder_state = not by_reference or changed
    if not include_encoder_state and (not by_reference or changed):
        why = "changed since they were loaded" if by_reference else "come from no file"
        raise CheckpointError(
            f"encoder {encoder.name!r}: its weights ({encoder.weights_source!r}) {why}, so the "
            "checkpoint cannot refer to a file; save it with include_encoder_state=True"
        )
    enc: dict[str, Any] = {
        "name": encoder.name,
        "weights": encoder.weights_path,
        "weights_sha256": encoder.weights_sha256,
        "random_init": bool(encoder.random_init),
        "source": encoder.weights_source,
        "spec": encoder.spec.to_dict(),
    }
    if include_encoder_state:
        enc["state_dict"] = _cpu_state(encoder)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "encoder": enc,
        "head": {"name": head_name, "config": cfg, "state_dict": _cpu_state(head)},
        "document": document.to_dict(),
    }
    with atomic_path(path) as tmp:  # the sha256 is of exactly the bytes that land at `path`
        with open(tmp, "wb") as f:
            torch.save(payload, f)
        digest = file_sha256(tmp)
    return digest


def _resolve_config(head_name: str, head_config_data: Any, *, stored: bool = False):
    try:
        if stored:
            return stored_head_config(head_name, head_config_data)
        return head_config(head_name, head_config_data)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def _require(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise CheckpointError(f"{path}: {msg}")


def _encoder_by_reference(
    path: Path, enc: dict[str, Any], spec: SamplingSpec, encoder_weights: str | Path | None
) -> Encoder:
    """Rebuild a pretrained encoder from its weights file, checking the file's sha256.

    Order: `encoder_weights` if given; else the path stored at save time; else, when that
    file has gone (another machine, a moved venv or torch cache), the encoder's own default
    source, accepted only if it is byte-identical to what was trained with.
    """
    want = enc["weights_sha256"]
    stored = Path(enc["weights"])
    hint = (
        f"pass --encoder-weights FILE (encoder_weights=FILE in Python) pointing at "
        f"{stored.name} (sha256 {want})"
    )
    if encoder_weights is None and not stored.is_file():
        try:
            encoder = create_encoder(enc["name"], spec=spec)
        except (WeightsUnavailableError, WeightsFormatError) as e:
            raise CheckpointError(
                f"{path}: the encoder's weights file {stored} is missing and the default "
                f"source failed ({e}); {hint}"
            ) from None
        if want and encoder.weights_sha256 != want:
            raise CheckpointError(
                f"{path}: the encoder's weights file {stored} is missing and the default "
                f"{enc['name']} weights ({encoder.weights_path}) differ from the trained ones; {hint}"
            )
        return encoder
    weights = Path(encoder_weights) if encoder_weights is not None else stored
    if not weights.is_file():
        raise CheckpointError(f"{path}: encoder weights file {weights} does not exist; {hint}")
    actual = file_sha256(weights)
    if want and actual != want:
        raise CheckpointError(
            f"{path}: encoder weights {weights} have sha256 {actual}, but the checkpoint "
            f"was trained with {want}"
        )
    return create_encoder(enc["name"], weights=weights, spec=spec)


def load_checkpoint(
    path: str | Path, *, encoder_weights: str | Path | None = None
) -> LoadedCheckpoint:
    """Rebuild the scorer exactly as saved (eval mode).

    encoder_weights: where the encoder's weights file is now, for checkpoints that store it by
    reference and were moved from the machine that wrote them; its sha256 must match. Without
    it, a missing file falls back to the encoder's default source if that is byte-identical.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    try:
        import io

        ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable gifsent checkpoint ({e})") from e
    _require(
        isinstance(ckpt, dict) and ckpt.get("format") == FORMAT, path, "not a gifsent checkpoint"
    )
    _require(
        ckpt.get("version") == VERSION,
        path,
        f"checkpoint version {ckpt.get('version')!r}; this gifsent reads version {VERSION}",
    )
    try:
        document = ModelDocument.from_dict(ckpt["document"])
    except (ContractError, KeyError) as e:
        raise CheckpointError(f"{path}: bad contract document: {e}") from None

    enc = ckpt["encoder"]
    spec = SamplingSpec.from_dict(enc["spec"])
    if "state_dict" in enc:
        encoder = create_encoder(enc["name"], random_init=True, spec=spec)
        try:
            encoder.load_state_dict(enc["state_dict"], strict=True)
        except RuntimeError as e:
            raise CheckpointError(
                f"{path}: encoder state does not fit {enc['name']}: {e}"
            ) from None
        encoder.set_weights_provenance(
            path=enc["weights"],
            source=enc["source"],
            sha256=enc["weights_sha256"],
            random_init=enc["random_init"],
        )
        # The state came from this checkpoint, not from that file: saving it again keeps it.
        encoder.loaded_fingerprint = None
    else:
        encoder = _encoder_by_reference(path, enc, spec, encoder_weights)

    head_name = ckpt["head"]["name"]
    # a config written before a field existed loads as that gifsent built it
    cfg = _resolve_config(head_name, ckpt["head"]["config"], stored=True)
    head = create_head(head_name, encoder.feature_dim, cfg)
    try:
        head.load_state_dict(ckpt["head"]["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: head state does not fit {head_name} {cfg}: {e}") from None
    _check_document(document, encoder, head_name, config_dict(cfg), stored=True)
    scorer = GifScorer(encoder, head).eval()
    return LoadedCheckpoint(
        scorer=scorer,
        encoder=encoder,
        head=head,
        head_name=head_name,
        head_config=cfg,
        document=document,
        sha256=sha,
        path=path,
    )
