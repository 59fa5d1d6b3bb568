"""Shared test fixtures: an isolated GIFSENT_HOME per test and the optional ../shared/gifs corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_corpus import SHARED_GIFS, require_shared

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def session_gifsent_home(tmp_path_factory):
    """A GIFSENT_HOME for the whole run, set before any module- or session-scoped fixture
    starts a process (a Ray cluster, a server): their workers inherit it, so their caches
    (autotune, OpenVINO's compiled models) land in a temporary folder, never in ~."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GIFSENT_HOME", str(tmp_path_factory.mktemp("gifsent-session-home")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def gifsent_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty GIFSENT_HOME, so nothing leaks between tests or into ~."""
    home = tmp_path_factory.mktemp("gifsent-home")
    monkeypatch.setenv("GIFSENT_HOME", str(home))
    monkeypatch.delenv("GIFSENT_MODEL", raising=False)
    return home


def _shared(sub: str) -> Path:
    return require_shared(SHARED_GIFS / sub)  # skips when absent; fails under CI=true


@pytest.fixture
def edge_gifs() -> Path:
    """../shared/gifs/edge: Pillow's GIF test images; skips when absent (fails if CI=true)."""
    return _shared("edge")


@pytest.fixture
def real_gifs() -> Path:
    """../shared/gifs/real: real reaction GIFs; skips when absent (fails if CI=true)."""
    return _shared("real")


@pytest.fixture(params=["onnxruntime", "openvino"])
def backend(request) -> str:
    """Each inference backend in turn; skips one that is not installed (fails in CI, which installs both)."""
    import importlib
    import os

    try:
        importlib.import_module(request.param)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{request.param} is not installed, but CI installs every backend")
        pytest.skip(f"{request.param} is not installed")
    return request.param
