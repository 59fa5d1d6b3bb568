"""Encoders by name: a factory per name, tiny test variants registered like the real ones.

A factory takes ``(weights, random_init, spec)`` and returns an `Encoder`. It must refuse,
with a message that says how to get the weights, when pretrained weights are unavailable
and ``random_init`` is False: features of a randomly initialised network are never produced
by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gifsent_infer.contract import SamplingSpec
from gifsent_models.encoders.base import Encoder

Factory = Callable[..., Encoder]
_FACTORIES: dict[str, Factory] = {}


class UnknownEncoderError(ValueError):
    """No encoder is registered under the requested name."""


def register_encoder(name: str) -> Callable[[Factory], Factory]:
    """Decorator: ``factory(weights: Path | None, random_init: bool, spec: SamplingSpec | None)``."""

    def decorate(factory: Factory) -> Factory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"encoder {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return decorate


def _load_builtin() -> None:
    # Importing the modules registers their encoders.
    from gifsent_models.encoders import (  # noqa: F401
        efficientnet_lite,
        resnext3d,
        torchvision_video,
    )


def list_encoders() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)


def create_encoder(
    name: str,
    *,
    weights: str | Path | None = None,
    random_init: bool = False,
    spec: SamplingSpec | None = None,
) -> Encoder:
    """Build encoder `name`.

    weights: a local weights file in the encoder's published format; None means the
        encoder's default source (a file it knows, torchvision's cache), if it has one.
    random_init: allow random weights when no pretrained weights are available or wanted
        (tests, tiny variants). With weights given, the weights win.
    spec: override the default sampling spec. The number of segments, fps, resize and
        matte may change; frames_per_segment and crop are the network's and may not.
    """
    _load_builtin()
    if name not in _FACTORIES:
        raise UnknownEncoderError(
            f"unknown encoder {name!r}; available: {', '.join(sorted(_FACTORIES))}"
        )
    encoder = _FACTORIES[name](
        weights=Path(weights).expanduser() if weights is not None else None,
        random_init=random_init,
        spec=spec,
    )
    encoder.eval()
    return encoder


def check_spec_override(
    default: SamplingSpec, spec: SamplingSpec | None, name: str
) -> SamplingSpec:
    """Factories call this: return the spec to use, refusing changes the network cannot take."""
    if spec is None:
        return default
    if spec.frames_per_segment != default.frames_per_segment or spec.crop != default.crop:
        raise ValueError(
            f"{name}: frames_per_segment and crop are fixed by the network "
            f"(T={default.frames_per_segment}, crop={default.crop}); got "
            f"T={spec.frames_per_segment}, crop={spec.crop}"
        )
    return spec
