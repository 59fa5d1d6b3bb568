"""The scoring flags, made from `gifsent_infer.options.ScoreOptions`: every command that scores
(`score`, `ray`, and the coming `serve`) declares each of its scoring options with
`flag("name")`, whose flag name and default come from the field, and turns the parsed
values back into one ScoreOptions with `options_from(locals())`.

A command's parameter for a scoring option is named like the field (`batch_size`, `top`,
`percentiles`...); tests/infer/test_score_flags.py checks that `score` and `ray` offer every
field, under its flag, with its default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import typer

from gifsent_infer.cli.common import check_choice, fail
from gifsent_infer.options import OptionsError, ScoreOptions

__all__ = ["DEFAULTS", "check_engine_choices", "flag", "options_from", "size_text"]

DEFAULTS = ScoreOptions()
_FIELDS = {f.name: f for f in dataclasses.fields(ScoreOptions)}

# Longer help than the field's one-liner, where the flag needs it; the commands share it.
HELP: dict[str, str] = {
    "model": "Exported .onnx model (default: $GIFSENT_MODEL, then gifsent-export's location).",
    "backend": "auto (CUDA: onnxruntime; CPU: the faster of openvino and onnxruntime for this "
    "model at its precision, measured once and cached per model, machine and library "
    "versions), onnxruntime or openvino.",
    "device": "auto, cpu or cuda (cuda never falls back silently).",
    "precision": "auto (default: bf16 when OpenVINO runs on a CPU with native bf16 and the "
    "model's recorded bf16 check holds, mean Spearman >= 0.99 vs fp32; else fp32), fp32 "
    "(bit-reproducible scores), or bf16 (OpenVINO on native-bf16 CPUs only).",
    "threads": "Inference intra-op threads (default: one per core).",
    "batch_size": "GIFs per model call.",
    "workers": "Threads reading and decoding GIFs (default: one per core, max 8; 0: none).",
    "memory_budget": "Memory that decoding may use at once, whatever --workers is (e.g. 512M, "
    "2G); a larger input waits, then decodes alone.",
    "max_bytes": "Largest input file or download, in bytes (default 64 MiB).",
    "timeout": "Seconds allowed to download one URL: connect, headers, redirects and body in all.",
    "allow_private_urls": "Also fetch URLs on loopback, private and link-local addresses "
    "(refused by default, so that scoring users' URLs cannot reach this machine's network).",
    "top": "A `top` column with the K highest emotions ('happiness:0.91 amusement:0.85' in "
    "CSV, a list in JSON); 0 leaves it out.",
    "percentiles": "Add <emotion>_pct columns: the percentile (0-100) of each score among the "
    "model's training GIFs.",
    "clip": "Clip scores to [0, 1] (new GIFs can score outside the training GIFs' range).",
}


def size_text(n: int) -> str:
    """Bytes as the shortest exact size text parse_size reads back: 1073741824 -> "1G"."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def flag(name: str, *short: str, help: str | None = None, **kwargs: Any) -> Any:
    """The typer option of the ScoreOptions field `name`: its flag (plus `short` aliases), its
    default (the memory budget as size text, e.g. "1G") and help (HELP, else the field's)."""
    default = getattr(DEFAULTS, name)
    if name == "memory_budget":
        default = size_text(default)
    text = help or HELP.get(name) or _FIELDS[name].metadata["help"]
    return typer.Option(default, ScoreOptions.flag(name), *short, help=text, **kwargs)


def options_from(values: Mapping[str, Any]) -> ScoreOptions:
    """The ScoreOptions of a command's parsed flags (`locals()` of the command: its
    parameters named like the fields); a bad value is a usage error naming the flag."""
    picked = {n: values[n] for n in ScoreOptions.names() if n in values}
    if isinstance(picked.get("memory_budget"), str):
        from gifsent_infer.reading.budget import parse_size

        try:
            picked["memory_budget"] = parse_size(picked["memory_budget"])
        except ValueError as e:
            raise fail(f"--memory-budget: {e}") from None
    try:
        return ScoreOptions(**picked)
    except OptionsError as e:
        raise fail(str(e)) from None


def check_engine_choices(opts: ScoreOptions) -> None:
    """Usage errors for a device, backend or precision the engine does not know."""
    from gifsent_infer.running.precision import PRECISION_CHOICES
    from gifsent_infer.running.session import BACKENDS, DEVICES

    check_choice("--device", opts.device, DEVICES)
    check_choice("--backend", opts.backend, BACKENDS)
    check_choice("--precision", opts.precision, PRECISION_CHOICES)
