"""One scoring run into a scores file or stream: resume, the row sink, the tally.

`gifsent-infer score` is argument parsing plus one call to `score_to_file`; an app that
wants the same files (partial file flushed row by row, atomic finish, `--resume`) calls it
too. What a row holds and what resume keeps are gifsent_infer.running.rows's; how rows are written,
gifsent_infer.writing.outputs's.

    from gifsent_infer import Scorer, ScoreOptions
    from gifsent_infer.writing.outpath import check_output
    from gifsent_infer.writing.run import score_to_file

    opts = ScoreOptions(model="gifsent-rnn.onnx", top=5, percentiles=True)
    tally = score_to_file(Scorer.from_options(opts), items, check_output("scores.csv"), "csv",
                          options=opts, resume=True)
    print(tally.ok, tally.failed, tally.skipped)

With `options` (gifsent_infer.options.ScoreOptions), the batch size, the decoding workers and
the row extras (top, percentiles, clip: gifsent_infer.running.readable) come from it; without,
from the `batch_size`, `workers`, `columns` and `decorate` keywords.

Errors: ScoreRunError (exit_code 2, or 130 for ScoringInterrupted) says what went wrong,
where the rows done so far are, and whether a rerun with resume continues; BrokenPipeError
(the reader of stdout left) is left to the caller.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gifsent_infer.errors import USAGE, GifsentError
from gifsent_infer.options import ScoreOptions
from gifsent_infer.reading.inputs import InputItem
from gifsent_infer.running.rows import COLUMNS, resume_plan
from gifsent_infer.running.scorer import Scorer, ScoreResult
from gifsent_infer.writing.embeddings import FEATURES_OUTPUT
from gifsent_infer.writing.outpath import FILE, STDOUT, STREAM, OutputTarget
from gifsent_infer.writing.outputs import (
    FileSink,
    Previous,
    RowSink,
    ScoresFileError,
    StreamSink,
    load_previous,
)

__all__ = ["ScoreRunError", "ScoreTally", "ScoringInterrupted", "score_to_file"]

MAX_FAILURES_KEPT = 5  # failures listed in the tally (the rest are counted)


class ScoreRunError(GifsentError, RuntimeError):
    """A scoring run could not start or stopped; the message says where its rows are."""

    exit_code = USAGE


class ScoringInterrupted(ScoreRunError):
    """Ctrl-C (KeyboardInterrupt) during a run; the rows written so far are kept."""

    exit_code = 130  # 128 + SIGINT, as a shell reports it


@dataclass
class ScoreTally:
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # scored before by this model, content unchanged (resume)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, error), the first 5
    seconds: float = 0.0  # from the first input to the finished output


def _open_sink(
    target: OutputTarget,
    fmt: str,
    columns: tuple[str, ...],
    keep: list[dict[str, Any]] | None,
    out_label: str,
    metadata: dict[str, Any] | None = None,
) -> tuple[RowSink, str]:
    """The sink for `target`, and where a stopped run's rows are ("" when nowhere)."""
    if fmt == "parquet" and target.kind != FILE:
        raise ScoreRunError(f"Parquet needs an output file (--out scores.parquet), not {out_label}")
    if target.kind == STDOUT:
        return StreamSink(sys.stdout, fmt, columns), ""
    if target.kind == STREAM:  # written in place, never replaced (/dev/null, a FIFO)
        try:
            stream = open(target.path, "a", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        except OSError as e:
            raise ScoreRunError(f"cannot open --out {out_label}: {e.strerror or e}") from None
        return StreamSink(stream, fmt, columns), ""
    try:
        file_sink = FileSink(target.path, fmt, keep, columns, metadata)
    except OSError as e:
        raise ScoreRunError(f"cannot write --out {out_label}: {e.strerror or e}") from None
    return file_sink, f"; rows so far are in {file_sink.partial}"


def score_to_file(
    scorer: Scorer,
    items: Sequence[InputItem],
    target: OutputTarget,
    fmt: str,
    *,
    options: ScoreOptions | None = None,
    columns: tuple[str, ...] = COLUMNS,
    decorate: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    resume: bool = False,
    batch_size: int = 8,
    workers: int | None = None,
    on_resume: Callable[[Previous, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[ScoreResult], None] | None = None,
    embeddings: str | os.PathLike | None = None,
) -> ScoreTally:
    """Score `items` into `target` (outpath.check_output's answer) in format `fmt`.

    options: batch_size, workers and the row extras (top, percentiles, clip); a model that
        cannot give percentiles raises ReadableError (exit 2) before anything is written.
    columns/decorate/batch_size/workers: the same without `options` (the row's columns, a
        function adding readable.py's extra columns).
    resume: keep the rows of an earlier run of this model (rows.resume_plan) and skip inputs
        whose content is unchanged; needs a FILE target.
    on_resume(previous, n_done): after the earlier rows are read (n_done inputs to skip).
    on_start(n_inputs): once the output is open, before the first input.
    on_result(result): after each input (skipped ones too), e.g. to advance a progress bar.
    embeddings: a folder for each ok input's pooled encoder features (writing.embeddings),
        from the same model call as its scores; the model needs a `features` output
        (MissingOutputError, exit 2, before anything is scored). Not with resume: skipped
        inputs would have no vector.
    """
    if options is not None:
        from gifsent_infer.running.readable import Readable

        readable = Readable.for_options(scorer.document, options)
        # readable.py's top/percentile columns, then extras.py's interval and timeline ones
        columns = (*readable.columns(COLUMNS), *scorer.row_extras.columns())
        decorate = readable.decorate
        batch_size, workers = options.batch_size, options.workers
        if embeddings is None:
            embeddings = options.embeddings
    emb = _open_embeddings(scorer, embeddings, resume)
    keep = None
    done: dict[str, str] = {}
    if resume:
        try:
            prev = load_previous(target.path, fmt)
        except ScoresFileError as e:
            raise ScoreRunError(f"cannot resume: {e}") from None
        keep, done = resume_plan(prev.rows, {item.name for item in items}, scorer.model_id)
        if on_resume is not None:
            on_resume(prev, len(done))
    from gifsent_infer.writing.provenance import score_file_metadata

    sink, kept_in = _open_sink(
        target, fmt, columns, keep, target.given, score_file_metadata(scorer)
    )
    if on_start is not None:
        on_start(len(items))

    tally = ScoreTally()
    start = time.perf_counter()
    try:
        results = scorer.score_many(
            items,
            batch_size=batch_size,
            workers=workers,
            skip=(lambda path, sha: done.get(path) == sha) if done else None,
            outputs=(FEATURES_OUTPUT,) if emb is not None else (),
        )
        for r in results:
            if emb is not None and r.ok and r.extras:
                emb.add(r.path, r.sha256, r.model_id, r.extras[FEATURES_OUTPUT])
            if r.status == "skipped":
                tally.skipped += 1
            else:
                row = r.to_row()
                sink.write(decorate(row) if decorate is not None else row)
                if r.ok:
                    tally.ok += 1
                else:
                    tally.failed += 1
                    if len(tally.failures) < MAX_FAILURES_KEPT:
                        tally.failures.append((r.path, r.error))
            if on_result is not None:
                on_result(r)
    except BrokenPipeError:  # `gifsent-infer ... -o - | head`: the reader left; the caller's call
        raise
    except KeyboardInterrupt:
        sink.abort()
        again = ", rerun with --resume" if kept_in else ""
        raise ScoringInterrupted(f"interrupted{kept_in}{again}") from None
    except Exception as e:  # the model failed on a batch: keep what is done, explain
        sink.abort()
        again = " (fix the cause and rerun with --resume)" if kept_in else ""
        raise ScoreRunError(f"scoring stopped: {type(e).__name__}: {e}{kept_in}{again}") from None
    sink.finish()
    if emb is not None:
        emb.finish()
    tally.seconds = time.perf_counter() - start
    return tally


def _open_embeddings(scorer: Scorer, folder: str | os.PathLike | None, resume: bool):
    """The embeddings writer for `folder` (None: none), checked before anything is scored."""
    if folder is None:
        return None
    if resume:
        raise ScoreRunError(
            "--embeddings needs every input's vector: run without --resume (or write the "
            "embeddings in a separate run)"
        )
    scorer.session.require_outputs((FEATURES_OUTPUT,), why="--embeddings")
    from gifsent_infer.writing.embeddings import EmbeddingsError, EmbeddingsWriter
    from gifsent_infer.writing.provenance import score_file_metadata

    try:
        return EmbeddingsWriter(folder, metadata=score_file_metadata(scorer))
    except (EmbeddingsError, OSError) as e:
        raise ScoreRunError(str(e)) from None
