"""`gifsent-infer`: score GIFs into a CSV/JSONL/JSON file, show a model's contract, search scores.

    gifsent-infer ./gifs --out scores.csv          # `score` is the default command
    gifsent-infer score a.gif https://x/y.gif -o - # rows to stdout
    gifsent-infer info [MODEL]                     # the model's contract
    gifsent-infer models                           # the models found here (--model NAME)
    gifsent-infer search scores.csv --emotion happiness --top 20
    gifsent-infer search scores.csv --like happiness=0.9,surprise=0.6

A thin layer over the library (gifsent_infer.running.scorer, .outputs, .search): it prints and
exits, the library raises. Results go to stdout or the output file; progress, warnings and
the summary go to stderr. Exit codes: 0 all inputs scored, 1 some inputs failed, 2 usage,
model or device errors. Only this package (gifsent_infer/cli/) imports typer and rich:
`app.py` holds the command group, `common.py` what all three CLIs share, and each command
has its own module (score.py, info.py, models.py, search.py, report.py, ray.py).
"""

from __future__ import annotations

import importlib

from gifsent_infer.cli.app import SUBCOMMANDS, app, main
from gifsent_infer.cli.common import SuggestingGroup, suggest_command

# Each command module registers itself on `app` when imported; importing them in
# SUBCOMMANDS order keeps `--help`'s list in that order.
for _name in SUBCOMMANDS:
    importlib.import_module(f"gifsent_infer.cli.{_name}")

__all__ = ["SUBCOMMANDS", "SuggestingGroup", "app", "main", "suggest_command"]
