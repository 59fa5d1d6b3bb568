"""Encoders by name: a factory per name, tiny test variants registered like the real ones.

A factory takes ``(weights, random_init, spec)`` and returns an `Encoder`. It must refuse,
with a message that says how to get the weights, when pretrained weights are unavailable
and ``random_init`` is False: features of a randomly initialised network are never produced
by accident.

Most encoders are declared with `define_encoder` (name, how to build the network, its
default spec, how to load a weights file, where its default weights are) and built by the
one `build_encoder`, which owns the rules for weights, random initialisation and
provenance; `register_encoder` takes a hand-written factory for anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from gifsent_infer.contract import SamplingSpec
from gifsent_infer.errors import USAGE, GifsentError
from gifsent_models.encoders.base import Encoder, WeightsUnavailableError

Factory = Callable[..., Encoder]
_FACTORIES: dict[str, Factory] = {}


class UnknownEncoderError(GifsentError, ValueError):
    """No encoder is registered under the requested name."""

    exit_code = USAGE


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


def build_encoder(
    name: str,
    make: Callable[[str, SamplingSpec], Encoder],
    *,
    default_spec: SamplingSpec,
    load: Callable[[Encoder, Path], str],
    weights: Path | None = None,
    random_init: bool = False,
    spec: SamplingSpec | None = None,
    default_weights: Callable[[], Path] | None = None,
    default_source: str = "",
    default_downloads: bool = False,
    finish: Callable[[Encoder], None] | None = None,
    published: Mapping[str, str] | None = None,
) -> Encoder:
    """Build encoder `name`: resolve its weights, build the network, load them, record provenance.

    make(name, spec): the network with the resolved spec (random weights).
    load(encoder, path): strict load of a weights file in the encoder's format; its sha256.
    default_weights(): the encoder's own weights file when none is given; raises
        WeightsUnavailableError, saying how to get it, when there is none. None: the encoder
        has no pretrained weights (tiny test variants), so it is always random.
    default_source: the provenance label of the default weights (default: the file name).
    default_downloads: finding the default weights may download them; then random_init
        skips them instead of fetching weights that would be thrown away.
    finish(encoder): a last step after loading or random initialisation (drop a classifier).
    published: sha256 -> what that weights file is (e.g. "the published Kinetics-400
        checkpoint of Hara et al."), for encoders whose weights are a file the user brings:
        the description then says what is known — the file's name and sha256, and the
        published checkpoint only when the sha256 is one recorded for it (`weights_claim`).

    The rules, for every encoder: given weights always win (a missing file is an error);
    without them the default weights are used when available, else random_init=True gives
    a randomly initialised network marked as such, else the default's error is raised. The
    weights are found before the network is built, so a miss fails fast.
    """
    spec = check_spec_override(default_spec, spec, name)
    source = ""
    if weights is not None:
        if not weights.is_file():
            raise WeightsUnavailableError(f"{name}: weights file {weights} does not exist")
        source = weights.name
    elif default_weights is not None and not (random_init and default_downloads):
        try:
            weights = default_weights()
            source = default_source or weights.name
        except WeightsUnavailableError:
            if not random_init:
                raise
    encoder = make(name, spec)
    if weights is None:
        if finish is not None:
            finish(encoder)
        encoder.set_weights_provenance(source="random", random_init=True)
        return encoder
    sha = load(encoder, weights)
    if finish is not None:
        finish(encoder)
    encoder.set_weights_provenance(path=weights.resolve(), source=source, sha256=sha)
    if published is not None:
        encoder.description = (
            f"{encoder.description}; {weights_claim(weights.name, sha, published)}"
        )
    return encoder


def weights_claim(file_name: str, sha256: str, published: Mapping[str, str]) -> str:
    """What a weights file is known to be: the recorded label when its sha256 is recorded,
    else only its name and sha256."""
    label = published.get(sha256)
    if label:
        return f"weights: {label} ({file_name}, sha256 {sha256[:12]})"
    return (
        f"weights: the file {file_name} (sha256 {sha256[:12]}), not a checkpoint whose sha256 "
        "gifsent has recorded as published"
    )


_PARTS = (
    "default_spec",
    "load",
    "default_weights",
    "default_source",
    "default_downloads",
    "finish",
    "published",
)


def define_encoder(name: str, make: Callable[[str, SamplingSpec], Encoder], **parts) -> Factory:
    """Register encoder `name`, built by `build_encoder(name, make, **parts)`; returns its factory.

    parts: build_encoder's keyword arguments that describe the encoder (default_spec and load
    required; default_weights, default_source, default_downloads, finish optional); the
    factory adds the caller's weights, random_init and spec.
    """
    unknown = sorted(set(parts) - set(_PARTS))
    missing = sorted({"default_spec", "load"} - set(parts))
    if unknown or missing:
        raise TypeError(f"define_encoder({name!r}): unknown {unknown}, missing {missing}")

    def factory(
        weights: Path | None = None, random_init: bool = False, spec: SamplingSpec | None = None
    ) -> Encoder:
        return build_encoder(
            name, make, weights=weights, random_init=random_init, spec=spec, **parts
        )

    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    return register_encoder(name)(factory)
