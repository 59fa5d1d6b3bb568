"""Importing onnxruntime, with an error that says which extra to install."""

from __future__ import annotations

INSTALL_HINT = (
    "onnxruntime is not installed. Install exactly one variant: "
    "pip install 'gifsent[cpu]' (CPU) or pip install 'gifsent[gpu]' (NVIDIA CUDA); "
    "never both, or the CUDA provider disappears."
)


def import_onnxruntime():
    """Return the onnxruntime module or raise ImportError with the install hint."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return onnxruntime
