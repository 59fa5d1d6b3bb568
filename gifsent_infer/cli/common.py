"""What the three command-line tools share: the stderr console, `--version`, `fail`, the
progress bar, the exit codes, "did you mean ...?" for mistyped commands, and the lines every
scoring command prints (the model's provenance).

`gifsent-infer` (gifsent_infer.cli), `gifsent-train` (gifsent_train.cli) and `gifsent-export`
(gifsent_export.cli) import this module; the library modules never do (they raise
gifsent_infer.errors.GifsentError subclasses, whose `exit_code` the CLIs exit with).
Exit codes: 0 success, 1 a run or some inputs failed, 2 usage, model, device or
configuration errors (gifsent_infer.errors.FAILED / USAGE).
"""

from __future__ import annotations

import contextlib
import os
import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from gifsent_infer.errors import FAILED, USAGE, exit_code_of
from gifsent_infer.version import __version__

__all__ = [
    "FAILED",
    "USAGE",
    "SuggestingGroup",
    "check_choice",
    "err",
    "exit_code_of",
    "fail",
    "lossless_stdout",
    "print_provenance",
    "progress_bar",
    "rate_note",
    "run_progress",
    "short",
    "silence_stdout",
    "stdout_console",
    "suggest_command",
    "version_option",
]

# Progress, warnings, errors and summaries go here; results go to stdout.
err = Console(stderr=True, highlight=False, soft_wrap=True)


def version_option(prog: str):
    """A `--version` option that prints "<prog> <version>" and exits 0."""

    def show(value: bool) -> None:
        if value:
            typer.echo(f"{prog} {__version__}")
            raise typer.Exit()

    return typer.Option(
        False, "--version", callback=show, is_eager=True, help="Show the version and exit."
    )


def fail(message: str, code: int = USAGE, prefix: str = "gifsent-infer") -> typer.Exit:
    """Print "<prefix>: message" to stderr and return the typer.Exit to raise:
    `raise fail("...") from None`. code: 2 (USAGE) by default, 1 (FAILED) when a run failed;
    for a GifsentError, `fail(str(e), exit_code_of(e))`."""
    err.print(f"[bold red]{prefix}:[/] {escape(message)}")
    return typer.Exit(code)


def check_choice(option: str, value: str, choices) -> None:
    """Raise the usage error "--x must be one of a, b, c, not 'v'" unless value is a choice."""
    if value not in choices:
        raise fail(f"{option} must be one of {', '.join(choices)}, not {value!r}")


def short(sha: str) -> str:
    return sha[:12]


def suggest_command(name: str, commands) -> str | None:
    """The command `name` is probably a typo of ("scroe" -> "score"), or None."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(commands), n=1, cutoff=0.6)
    return close[0] if close else None


class SuggestingGroup(TyperGroup):
    """A command group whose unknown-command error says "did you mean ...?" and lists the
    commands (used by all three CLIs)."""

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            guess = suggest_command(name, self.list_commands(ctx))
            hint = f" Did you mean '{guess}'?" if guess else ""
            ctx.fail(
                f"No such command '{name}'.{hint} Commands: {', '.join(self.list_commands(ctx))}."
            )
        return super().resolve_command(ctx, args)


def lossless_stdout() -> None:
    # A file name that is not UTF-8 goes to stdout as its own bytes (as in score files).
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stdout.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]


def print_provenance(doc, quiet: bool) -> None:
    """What the model was trained on, at the start of every run; the demo warning even with
    --quiet, since it changes what every score means."""
    from gifsent_infer.running.readable import demo_warning, provenance_line

    if not quiet:
        err.print(escape(provenance_line(doc)))
    warning = demo_warning(doc)
    if warning:
        err.print(f"[bold yellow]{escape(warning)}[/]")


def silence_stdout() -> None:
    # Point stdout at /dev/null so that Python's exit-time flush does not raise again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def progress_bar(
    quiet: bool,
    *,
    console: Console | None = None,
    transient: bool = True,
    terminal_only: bool = True,
):
    """The one progress bar style: description, bar, n/total, elapsed, remaining.

    On `console` (default: stderr); hidden with `quiet`, and when stderr is not a terminal
    unless terminal_only=False; transient: erased when done."""
    console = console if console is not None else err
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or (terminal_only and not console.is_terminal),
        transient=transient,
    )


PROGRESS_MODES = ("auto", "bar", "lines", "none")
DEFAULT_PROGRESS_EVERY = 10.0  # seconds between progress lines off a terminal


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LinesProgress:
    """Progress for logs (nohup, CI, containers): one plain line every `every` seconds on
    `console`, "progress: 120/238 (50%), 3.1 GIFs/s, 2 error(s), ETA 0:00:38", and a last one
    when the run ends if a line was printed before it."""

    def __init__(
        self,
        every: float = DEFAULT_PROGRESS_EVERY,
        console: Console | None = None,
        label: str = "progress",
    ):
        import time

        self.label = label
        self.every = max(0.1, every)
        self.console = console if console is not None else err
        self._now = time.monotonic
        self.total = 0
        self.done = 0
        self.errors = 0
        self.printed = 0
        self.start_t = self.last_t = 0.0

    def start(self, total: int) -> None:
        self.total = total
        self.start_t = self.last_t = self._now()

    def advance(self, ok: bool = True) -> None:
        self.done += 1
        self.errors += 0 if ok else 1
        now = self._now()
        if now - self.last_t >= self.every:
            self.last_t = now
            self.emit(now)

    def line(self, now: float) -> str:
        elapsed = max(1e-9, now - self.start_t)
        rate = self.done / elapsed
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = self.total - self.done
        eta = f", ETA {_clock(left / rate)}" if rate > 0 and left > 0 else ""
        return (
            f"{self.label}: {self.done}/{self.total}{pct}, {rate:.1f} GIFs/s, "
            f"{self.errors} error(s), elapsed {_clock(elapsed)}{eta}"
        )

    def emit(self, now: float) -> None:
        self.console.print(escape(self.line(now)), soft_wrap=True)
        self.printed += 1

    def stop(self) -> None:
        if self.printed and self.done:
            self.emit(self._now())


class BarProgress:
    """The rich bar (progress_bar) behind the same start/advance/stop calls."""

    def __init__(self, quiet: bool, terminal_only: bool, label: str = "scoring") -> None:
        self.bar = progress_bar(quiet, terminal_only=terminal_only)
        self.task = None
        self.label = label

    def start(self, total: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=total)

    def advance(self, ok: bool = True) -> None:
        if self.task is not None:
            self.bar.advance(self.task)

    def stop(self) -> None:
        if self.task is not None:
            self.bar.stop()


def run_progress(
    mode: str, quiet: bool, every: float = DEFAULT_PROGRESS_EVERY, label: str = "scoring"
):
    """What `--progress` asks for: "bar" (rich, even off a terminal), "lines" (LinesProgress),
    "none", or "auto": the bar on a terminal, lines otherwise. --quiet means none."""
    check_choice("--progress", mode, PROGRESS_MODES)
    if quiet or mode == "none":
        return BarProgress(quiet=True, terminal_only=True, label=label)
    if mode == "auto":
        mode = "bar" if err.is_terminal else "lines"
    if mode == "lines":
        return LinesProgress(every, label="progress" if label == "scoring" else label)
    return BarProgress(quiet=False, terminal_only=False, label=label)


def rate_note(n_scored: int, seconds: float) -> str:
    """ " (3.1 GIFs/s)" for a summary line, counting the GIFs scored; empty when none was
    (a refused URL in 0.0 s is not 387 GIFs/s) or no time was measured."""
    if n_scored == 0 or seconds <= 0:
        return ""
    return f" ({n_scored / seconds:.1f} GIFs/s)"


def stdout_console() -> Console:
    """A console for tables on stdout. Off a terminal (a pipe, a file) it never wraps: rich
    would fold cells at 80 columns, splitting a long path across lines; on a terminal, the
    terminal's width."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 100_000)
