"""scripts/gpu_check.py on a machine without CUDA: one clear line and a non-zero exit, fast."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def _cuda_provider() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(_cuda_provider(), reason="onnxruntime has CUDA here: the real check applies")
def test_no_cuda_is_one_line_and_exit_2():
    res = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("no CUDA device / install gifsent[gpu]")


def test_cuda_provider_without_a_visible_gpu_says_so(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    monkeypatch.setattr(mod.shutil, "which", lambda name: None)  # no nvidia-smi
    line = mod.preflight()
    assert line.startswith("no CUDA device / install gifsent[gpu]") and "nvidia-smi" in line
