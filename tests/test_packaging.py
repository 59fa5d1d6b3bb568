"""Packaging: the three console scripts exist, answer --help and --version, and map to prefixed imports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gifsent_infer

SCRIPTS = ("gifsent-train", "gifsent-export", "gifsent-infer")


def _script(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"console script {name} is not installed next to {sys.executable}")
    return found


@pytest.mark.parametrize("name", SCRIPTS)
def test_console_script_answers_version_and_help(name):
    out = subprocess.run([_script(name), "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{name} {gifsent_infer.__version__}"
    out = subprocess.run([_script(name), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_folders_map_to_prefixed_import_names():
    import gifsent_export
    import gifsent_models
    import gifsent_train

    repo = Path(__file__).resolve().parents[1]
    assert Path(gifsent_models.__file__).parent == repo / "models"
    assert Path(gifsent_train.__file__).parent == repo / "train"
    assert Path(gifsent_export.__file__).parent == repo / "export"
    assert Path(gifsent_infer.__file__).parent == repo / "gifsent_infer"
