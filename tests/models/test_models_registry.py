"""models.registry.build_encoder: the one set of rules for weights, random init and provenance."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gifsent_models.encoders.base import WeightsUnavailableError  # noqa: E402
from gifsent_models.encoders.resnext3d import TINY, TINY_SPEC, ResNeXt3DEncoder  # noqa: E402
from gifsent_models.registry import build_encoder  # noqa: E402


class Parts:
    """make/load/default/finish that record what build_encoder asked of them."""

    def __init__(self, default=None):
        self.calls: list[str] = []
        self.default = default

    def make(self, name, spec):
        self.calls.append(f"make {spec.segments}")
        return ResNeXt3DEncoder(TINY, name=name, spec=spec)

    def load(self, encoder, path):
        self.calls.append(f"load {path.name}")
        return path.name[0] * 64  # stands in for the file's sha256

    def default_weights(self):
        self.calls.append("default")
        if self.default is None:
            raise WeightsUnavailableError("get the weights from X")
        return self.default

    def finish(self, encoder):
        self.calls.append("finish")

    def build(self, **kw):
        kw.setdefault("default_weights", self.default_weights)
        return build_encoder(
            "enc", self.make, default_spec=TINY_SPEC, load=self.load, finish=self.finish, **kw
        )


def test_given_weights_win_and_are_recorded(tmp_path):
    w = tmp_path / "given.pt"
    w.write_bytes(b"w")
    parts = Parts(default=tmp_path / "default.pt")
    enc = parts.build(weights=w, random_init=True)
    assert parts.calls == ["make 2", "load given.pt", "finish"]  # the default is not looked up
    assert (enc.weights_path, enc.weights_source) == (str(w.resolve()), "given.pt")
    assert enc.weights_sha256 == "g" * 64 and not enc.random_init
    assert enc.info().weights == "given.pt"

    with pytest.raises(WeightsUnavailableError, match=r"missing\.pt does not exist"):
        Parts().build(weights=tmp_path / "missing.pt")


def test_default_weights_beat_random_init_unless_they_download(tmp_path):
    d = tmp_path / "default.pt"
    d.write_bytes(b"d")
    parts = Parts(default=d)
    enc = parts.build(random_init=True, default_source="hub id")
    assert parts.calls == ["default", "make 2", "load default.pt", "finish"]
    assert enc.weights_source == "hub id" and enc.weights_sha256 == "d" * 64

    parts = Parts(default=d)
    enc = parts.build(random_init=True, default_downloads=True)
    assert parts.calls == ["make 2", "finish"]  # nothing fetched that would be thrown away
    assert enc.random_init and enc.weights_source == "random" and enc.weights_path == ""


def test_no_weights_refuses_unless_random_init_is_allowed():
    parts = Parts(default=None)
    with pytest.raises(WeightsUnavailableError, match="get the weights from X"):
        parts.build()
    assert parts.calls == ["default"]  # failed before building the network

    enc = Parts(default=None).build(random_init=True)
    assert enc.random_init and enc.weights_sha256 == ""
    tiny = Parts().build(default_weights=None)  # no pretrained weights exist: always random
    assert tiny.random_init


def test_spec_override_is_checked():
    spec = TINY_SPEC.__class__(**{**TINY_SPEC.to_dict(), "segments": 5})
    parts = Parts()
    assert parts.build(default_weights=None, spec=spec).spec.segments == 5
    bad = TINY_SPEC.__class__(**{**TINY_SPEC.to_dict(), "crop": 24})
    with pytest.raises(ValueError, match="fixed by the network"):
        parts.build(default_weights=None, spec=bad)
