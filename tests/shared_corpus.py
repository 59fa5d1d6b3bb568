"""The optional ../shared/gifs corpus: tests that need it skip on a developer's machine without
it, but FAIL when the environment says CI=true, so a CI without the corpus cannot stay green.
Set GIFSENT_SHARED_GIFS to use a corpus somewhere other than ../shared/gifs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared/gifs next to the checkout; GIFSENT_SHARED_GIFS points elsewhere (e.g. from a git
# worktree that lives one level deeper than the main checkout).
SHARED_GIFS = Path(os.environ.get("GIFSENT_SHARED_GIFS") or REPO.parent / "shared" / "gifs")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_shared(reason: str) -> None:
    """Skip the calling test because part of the corpus is missing; fail instead under CI=true."""
    if in_ci():
        pytest.fail(
            f"{reason}; CI=true needs it: put the corpus at {SHARED_GIFS} or set GIFSENT_SHARED_GIFS",
            pytrace=False,
        )
    pytest.skip(f"{reason} (optional corpus)")


def require_shared(path: Path) -> Path:
    """`path` (a folder or file of the shared corpus) when it exists and is not empty."""
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        return path
    missing_shared(f"{path} is absent or empty")
    raise AssertionError("unreachable")  # pytest.skip/fail raise
