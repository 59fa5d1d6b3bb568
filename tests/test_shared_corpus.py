"""Tests that need ../shared/gifs skip without it on a developer's machine, and fail under CI=true."""

from __future__ import annotations

import pytest
import shared_corpus
from shared_corpus import missing_shared, require_shared


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_absent_corpus_fails_in_ci(tmp_path, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true needs it"):
        require_shared(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(pytest.fail.Exception, match="absent or empty"):
        require_shared(tmp_path / "empty")
    with pytest.raises(pytest.fail.Exception, match="no GIFs"):
        missing_shared("no GIFs in x")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_absent_corpus_skips_elsewhere(tmp_path, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="optional corpus"):
        require_shared(tmp_path / "nope")


def test_present_corpus_is_returned(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    assert require_shared(tmp_path) == tmp_path
    assert require_shared(tmp_path / "a.gif") == tmp_path / "a.gif"


def test_fixtures_use_the_helper(monkeypatch, tmp_path):
    """The edge_gifs/real_gifs fixtures go through require_shared (so they fail in CI)."""
    import conftest

    monkeypatch.setattr(conftest, "SHARED_GIFS", tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        conftest._shared("edge")
    assert shared_corpus.SHARED_GIFS.name == "gifs"
