"""The scoring flags, made from `gifsent_infer.options.ScoreOptions`: every command that scores
(`score`, `ray`, and the coming `serve`) declares each of its scoring options with
`flag("name")`, whose flag name, default and help come from the field (its metadata), and
turns the parsed values back into one ScoreOptions with `options_from(locals())`.

A command's parameter for a scoring option is named like the field (`batch_size`, `top`,
`percentiles`...); tests/infer/test_score_options.py checks that `score` and `ray` offer every
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


def size_text(n: int) -> str:
    """Bytes as the shortest exact size text parse_size reads back: 1073741824 -> "1G"."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def flag(name: str, *short: str, help: str | None = None, **kwargs: Any) -> Any:
    """The typer option of the ScoreOptions field `name`: its flag (plus `short` aliases), its
    default (the memory budget as size text, e.g. "1G") and help (the field's, unless
    `help` gives the command's own)."""
    default = getattr(DEFAULTS, name)
    if name == "memory_budget":
        default = size_text(default)
    text = help or _FIELDS[name].metadata["help"]
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
