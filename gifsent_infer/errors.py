"""The one base class of gifsent's exceptions, and the exit code each kind means to a CLI.

Every error class of the four packages derives from `GifsentError` as well as from the
built-in class it always had (`class ModelError(GifsentError, RuntimeError)`), so
`except ValueError` and friends keep working and a caller can also catch them all at once.
`exit_code` is what the command-line tools exit with when the error ends a run:

    2  usage, model, device, cluster or file-format problems: nothing was scored
    1  the run itself failed, or some inputs did (the default)

An instance may override its class's code: `ExportError("...", exit_code=2)`.
"""

from __future__ import annotations

__all__ = ["FAILED", "USAGE", "GifsentError", "exit_code_of"]

FAILED = 1  # a run or some of its inputs failed
USAGE = 2  # a usage, model, device or configuration error: nothing was done


class GifsentError(Exception):
    """Base class of gifsent's errors; `exit_code` is the CLIs' exit status for it."""

    exit_code: int = FAILED

    def __init__(self, *args: object, exit_code: int | None = None) -> None:
        super().__init__(*args)
        if exit_code is not None:
            self.exit_code = exit_code


def exit_code_of(error: BaseException, default: int = FAILED) -> int:
    """The exit status a CLI uses for `error`: its `exit_code` for a GifsentError, else `default`."""
    return error.exit_code if isinstance(error, GifsentError) else default
