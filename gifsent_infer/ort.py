"""Importing onnxruntime, with an error that says which extra to install (kept for old imports; see engine.py)."""

from __future__ import annotations

from gifsent_infer.engine import ORT_INSTALL as INSTALL_HINT
from gifsent_infer.engine import import_onnxruntime

__all__ = ["INSTALL_HINT", "import_onnxruntime"]
