"""The model file: where it is (`resolve_model`), its ONNX metadata read without onnx or a
backend (`read_metadata`), and the gifsent document in it (`read_document`).

The engine (engine.py) reads an OpenVINO graph's metadata here and the session (session.py)
checks the document from here, so neither imports the other for it.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from gifsent_infer import paths
from gifsent_infer.contract import METADATA_KEY, ContractError, ModelDocument
from gifsent_infer.errors import USAGE, GifsentError

__all__ = [
    "HOW_TO_GET_A_MODEL",
    "ModelError",
    "document_from",
    "known_model_files",
    "model_by_name",
    "no_model_message",
    "read_document",
    "read_metadata",
    "read_metadata_bytes",
    "resolve_model",
]


class ModelError(GifsentError, RuntimeError):
    """The model cannot be used: missing, unreadable, not ONNX, or without a gifsent document."""

    exit_code = USAGE


HOW_TO_GET_A_MODEL = (
    "Get a model in one of these ways:\n"
    "  - train one and export it: `gifsent-train ...`, then `gifsent-export --model rnn` "
    "(writes {default});\n"
    "  - or run `make demo` in the gifsent repository (a small demo model, end to end);\n"
    "then pass it with --model FILE, set $GIFSENT_MODEL, or leave it where gifsent-export wrote it."
)


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
            named = model_by_name(str(model))
            if named is not None:
                return named
            raise ModelError(
                f"model file {path} does not exist (from --model), and no model in "
                f"`gifsent-infer models` has that name or id"
            )
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
    raise ModelError(no_model_message())


def known_model_files() -> list[Path]:
    """What `gifsent-infer models` lists: $GIFSENT_MODEL (if it exists), then every .onnx in
    the default lookup's folders, each once."""
    files: list[Path] = []
    env = os.environ.get(paths.MODEL_ENV)
    if env and Path(env).expanduser().is_file():
        files.append(Path(env).expanduser())
    for p in paths.models_nearby():
        if all(p.resolve() != f.resolve() for f in files):
            files.append(p)
    return files


def model_by_name(name: str) -> Path | None:
    """A model of `known_model_files` named by its file stem ("gifsent-rnn"), file name, or
    its id (the file's sha256, or a prefix of 6 or more hex digits); None when none is.
    Several models matching one id prefix is a ModelError listing them."""
    from gifsent_infer.files import file_sha256

    if os.sep in name or "/" in name:
        return None
    files = known_model_files()
    for p in files:
        if name in (p.stem, p.name):
            return p
    key = name.lower()
    if len(key) < 6 or any(c not in "0123456789abcdef" for c in key):
        return None
    hits = [p for p in files if file_sha256(p).startswith(key)]
    if len(hits) > 1:
        raise ModelError(f"model id {name} matches several models: {', '.join(map(str, hits))}")
    return hits[0] if hits else None


def no_model_message() -> str:
    """Where the default lookup looked, what .onnx files lie nearby, and how to get a model."""
    looked = "\n".join(f"  - {p}" for p in paths.default_model_candidates())
    nearby = paths.models_nearby()
    near = (
        "\nFound nearby (pass one with --model FILE):\n"
        + "\n".join(f"  - {p}" for p in nearby[:10])
        if nearby
        else ""
    )
    default = paths.default_model_path("rnn")
    return (
        f"no model given and none found: --model was not given, ${paths.MODEL_ENV} is not set, "
        f"and none of these exists:\n{looked}{near}\n" + HOW_TO_GET_A_MODEL.format(default=default)
    )


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
    with open(path, "rb") as f:
        return _scan(f, os.path.getsize(path), path)


def read_metadata_bytes(data: bytes) -> dict[str, str]:
    """read_metadata of a model held in memory (serialized ModelProto bytes)."""
    return _scan(io.BytesIO(data), len(data), "the graph")


def _scan(f: BinaryIO, size: int, path: str | os.PathLike) -> dict[str, str]:
    props: dict[str, str] = {}
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


def document_from(props: dict[str, str], path) -> ModelDocument:
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
    return document_from(read_metadata(path), path)
