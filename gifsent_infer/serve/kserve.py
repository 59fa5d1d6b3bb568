"""The Open Inference Protocol (KServe v2) for the model, so Triton/KServe clients and routers
can call the service:

    GET  /v2, /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}, /v2/models/{name}/ready
    POST /v2/models/{name}/infer

The model takes one BYTES input of shape [n]: n media files (GIF, WebP, APNG, MP4...). In a
JSON request each element is the file as base64 text; with the binary tensor extension
(header Inference-Header-Content-Length, input parameter binary_data_size) the elements are
4-byte little-endian lengths and raw bytes after the JSON header. The output `scores` is FP32
[n, 17] in the contract's emotion order. An input that cannot be read fails the request with
422 naming its index and the reader's error kind (a tensor cannot carry an error row).
{name} is "gifsent" or the model file's stem.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gifsent_infer.contract import EMOTIONS, OUTPUT_NAME
from gifsent_infer.reading.inputs import InputItem
from gifsent_infer.serve.state import ApiError, ServiceState, read_body

__all__ = ["INPUT_NAME", "add_kserve_routes", "model_names", "split_bytes_tensor"]

INPUT_NAME = "media"


def model_names(state: ServiceState) -> tuple[str, ...]:
    stem = os.path.splitext(os.path.basename(str(state.options.model or "gifsent")))[0]
    return ("gifsent", stem)


def split_bytes_tensor(raw: bytes) -> list[bytes]:
    """A BYTES tensor in the binary extension's layout (uint32 LE length + bytes, repeated)."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ApiError(400, "binary BYTES tensor ends inside an element length", "BadRequest")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise ApiError(400, "binary BYTES tensor ends inside an element", "BadRequest")
        out.append(raw[pos : pos + n])
        pos += n
    return out


def _parse_request(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ApiError(400, "bad Inference-Header-Content-Length", "BadRequest")
        head, binary = body[: int(header_length)], body[int(header_length) :]
    else:
        head, binary = body, b""
    try:
        doc = json.loads(head)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"invalid JSON: {e}", "BadRequest") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise ApiError(400, 'an inference request needs "inputs": [...]', "BadRequest")
    return doc, binary


def _media_of(doc: dict[str, Any], binary: bytes) -> list[bytes]:
    inputs = [i for i in doc["inputs"] if isinstance(i, dict)]
    if len(inputs) != 1 or inputs[0].get("datatype") != "BYTES":
        raise ApiError(400, f'the model takes one BYTES input ("{INPUT_NAME}")', "BadRequest")
    tensor = inputs[0]
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size > len(binary):
            raise ApiError(400, "binary_data_size is past the body's end", "BadRequest")
        items = split_bytes_tensor(binary[:size])
    else:
        data = tensor.get("data")
        if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
            raise ApiError(400, "BYTES data must be a list of base64 strings", "BadRequest")
        try:
            items = [base64.b64decode(d, validate=True) for d in data]
        except (binascii.Error, ValueError):
            raise ApiError(400, "BYTES data must be base64 text", "BadRequest") from None
    shape = tensor.get("shape")
    if shape not in ([len(items)], [len(items), 1]):
        raise ApiError(400, f"shape {shape} does not match {len(items)} elements", "BadRequest")
    if not items:
        raise ApiError(400, "no inputs to score", "BadRequest")
    return items


def add_kserve_routes(app: FastAPI, state: ServiceState) -> None:
    def check_model(name: str) -> None:
        if name not in model_names(state):
            raise ApiError(404, f"no model {name!r}; this server has 'gifsent'", "NotFound")

    @app.get("/v2", summary="KServe v2 server metadata")
    async def server_metadata() -> dict[str, Any]:
        from gifsent_infer.version import __version__

        return {"name": "gifsent", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", summary="KServe v2 liveness")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", summary="KServe v2 readiness")
    async def ready() -> JSONResponse:
        ok, _ = state.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2/models/{name}/ready", summary="KServe v2 model readiness")
    async def model_ready(name: str) -> JSONResponse:
        check_model(name)
        ok = state.batcher is not None
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2/models/{name}", summary="KServe v2 model metadata")
    async def model_metadata(name: str) -> dict[str, Any]:
        check_model(name)
        scorer = state.live_batcher().scorer
        return {
            "name": name,
            "versions": [scorer.model_id[:12]],
            "platform": f"gifsent/{scorer.backend}",
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, len(EMOTIONS)]}],
            "parameters": {"emotions": list(EMOTIONS)},
        }

    @app.post("/v2/models/{name}/infer", summary="KServe v2 inference")
    async def infer(name: str, request: Request) -> JSONResponse:
        check_model(name)
        scorer = state.live_batcher().scorer
        limit = state.options.max_bytes * 4 // 3 + (1 << 16)  # base64 text of max_bytes
        body = await read_body(request, limit, state.settings.request_timeout)
        doc, binary = _parse_request(body, request.headers.get("inference-header-content-length"))
        items = _media_of(doc, binary)
        if len(items) > state.settings.max_queue:
            raise ApiError(413, f"at most {state.settings.max_queue} inputs a request", "TooLarge")
        results = await state.score(
            [InputItem(f"{INPUT_NAME}[{i}]", data=d) for i, d in enumerate(items)]
        )
        bad = next((r for r in results if not r.ok), None)
        if bad is not None:
            raise ApiError(422, f"{bad.path}: {bad.error}", bad.error_kind or "InputError")
        scores = np.stack([r.array for r in results]).astype(np.float32)
        out: dict[str, Any] = {
            "model_name": name,
            "model_version": scorer.model_id[:12],
            "outputs": [
                {
                    "name": OUTPUT_NAME,
                    "datatype": "FP32",
                    "shape": list(scores.shape),
                    "data": [float(x) for x in scores.ravel()],
                }
            ],
        }
        if "id" in doc:
            out["id"] = doc["id"]
        return JSONResponse(out)  # built here: FastAPI's encoder walks every float
