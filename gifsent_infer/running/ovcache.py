"""OpenVINO's compiled-model cache (its CACHE_DIR), kept in gifsent's cache folder.

Compiling a big graph for the CPU takes seconds (ResNeXt-101: most of a one-GIF run's wall
time); OpenVINO can save the compiled blob and load it next time. The folder is keyed by the
model file's sha256, the OpenVINO version and the compile options (precision hint, threads,
performance hint), so a changed model, library or option compiles afresh into its own folder
and never reads another's blob:

    $GIFSENT_HOME/cache/openvino/<model sha256[:16]>-<key[:16]>/
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gifsent_infer import paths
from gifsent_infer.files import file_sha256


def model_sha256(path: str | os.PathLike) -> str:
    """The model file's sha256, hashed once per (path, size, mtime) in this process: the
    compiled-model cache and backend auto both key on it."""
    st = os.stat(path)
    return _sha(os.fspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def compiled_cache_dir(model_sha256: str, openvino_version: str, options: dict[str, Any]) -> Path:
    key = json.dumps(
        {"model": model_sha256, "openvino": openvino_version, "options": options},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    return paths.cache_dir() / "openvino" / f"{model_sha256[:16]}-{digest[:16]}"
