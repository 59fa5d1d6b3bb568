"""The `gifsent-infer` command group: `score` by default, "did you mean" for typos, --version.
The commands register themselves on `app` (gifsent_infer/cli/<command>.py)."""

from __future__ import annotations

import os

import typer

from gifsent_infer.cli.common import SuggestingGroup, suggest_command, version_option

SUBCOMMANDS = ("score", "info", "models", "search", "report", "ray", "serve")
_GROUP_OPTIONS = ("--help", "-h", "--version")


class _ScoreByDefault(SuggestingGroup):
    """A group whose default command is `score`: `gifsent-infer ./gifs -o x.csv` means
    `gifsent-infer score ./gifs -o x.csv`. Anything that is not a subcommand name or a
    group option goes to `score` (a file literally named `info` needs `score info`), except
    a word that looks like a mistyped command and is not an existing file or folder
    (`gifsent-infer scroe a.gif` is a usage error saying "did you mean 'score'?")."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in _GROUP_OPTIONS:
            first = args[0]
            guess = None if first.startswith("-") else suggest_command(first, self.commands)
            if guess and not os.path.lexists(first):
                ctx.fail(
                    f"No such command '{first}'. Did you mean '{guess}'? "
                    f"(To score a file named {first!r}, it must exist; "
                    f"`gifsent-infer score ./{first}` is explicit.)"
                )
            args = ["score", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ScoreByDefault,
    help="Score the emotions of animated GIFs with an exported gifsent model (no torch needed).\n\n"
    "`gifsent-infer PATH... --out scores.csv` runs `score`; see `gifsent-infer score --help`.",
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


@app.callback()
def main_callback(
    version: bool = version_option("gifsent-infer"),
) -> None:
    """Score the emotions of animated GIFs."""


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="gifsent-infer")
