"""What is scored and how, declared once: the options every way into gifsent takes.

The local CLI (`gifsent-infer score`), the library (`Scorer.from_options`), a scoring run
into a file (`score_to_file`), Ray (`score_with_ray`) and the HTTP service (`create_app`)
all take one frozen `ScoreOptions`. A new scoring option is one field here (its default and
the reason in a comment), the place that uses it, and its CLI flag; the tests check that
every command offers every field with the same default.

    from gifsent_infer.options import ScoreOptions
    opts = ScoreOptions(model="gifsent-rnn.onnx", top=5, clip=True)
    fast = opts.replace(precision="bf16")

This module is the runtime's base: it imports nothing from the rest of the package, so
reading, running, writing, scale-out and the service can all depend on it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from gifsent_infer.errors import USAGE, GifsentError

__all__ = ["OptionsError", "ScoreOptions"]

MiB = 1 << 20


class OptionsError(GifsentError, ValueError):
    """A scoring option has a value it cannot take; the message names the option."""

    exit_code = USAGE


def _flag(name: str, help: str) -> dict[str, str]:
    # field metadata: the option's CLI flag and help, shared by every command that offers it
    return {"flag": name, "help": help}


@dataclass(frozen=True)
class ScoreOptions:
    # --- what runs the model -----------------------------------------------------------------
    # None: $GIFSENT_MODEL, then the models folder (gifsent_infer.running.session.resolve_model).
    model: str | None = field(
        default=None,
        metadata=_flag(
            "--model",
            "Exported .onnx model, or a name or id from `gifsent-infer models` (default: "
            "$GIFSENT_MODEL, then gifsent-export's location, then ./demo-home/models).",
        ),
    )
    # "auto": CUDA -> onnxruntime; CPU -> measured once per model, machine and library
    # versions, cached (gifsent_infer.running.autotune over engine.BACKEND_TABLE).
    backend: str = field(
        default="auto",
        metadata=_flag(
            "--backend",
            (
                "auto (CUDA: onnxruntime; CPU: the faster of openvino and onnxruntime for this "
                "model at its precision, measured once and cached per model, machine and "
                "library versions), onnxruntime or openvino."
            ),
        ),
    )
    # "cuda" never falls back to the CPU silently.
    device: str = field(
        default="auto",
        metadata=_flag("--device", "auto, cpu or cuda (cuda never falls back silently)."),
    )
    # "auto": bf16 only where OpenVINO runs on a CPU with native bf16 and the model's recorded
    # bf16 check kept mean Spearman >= 0.99 vs fp32 (running/precision.py); else fp32.
    # "fp32" pins bit-reproducible scores; "bf16" pins bf16.
    precision: str = field(
        default="auto",
        metadata=_flag(
            "--precision",
            (
                "auto (default: bf16 when OpenVINO runs on a CPU with native bf16 and the "
                "model's recorded bf16 check holds, mean Spearman >= 0.99 vs fp32; else fp32), "
                "fp32 (bit-reproducible scores), or bf16 (OpenVINO on native-bf16 CPUs only)."
            ),
        ),
    )
    # None: one intra-op thread per core.
    threads: int | None = field(
        default=None,
        metadata=_flag("--threads", "Inference intra-op threads (default: one per core)."),
    )

    # --- how much at once --------------------------------------------------------------------
    # 8 GIFs a model call: past that, a 2-core CPU gains nothing and latency grows.
    batch_size: int = field(default=8, metadata=_flag("--batch-size", "GIFs per model call."))
    # Decoding threads; None: one per core (at most 8), 0: decode in the calling thread.
    workers: int | None = field(
        default=None,
        metadata=_flag(
            "--workers",
            "Threads reading and decoding GIFs (default: one per core, max 8; 0: none).",
        ),
    )
    # Bytes that decoding may hold at once across all workers: 1 GiB leaves room for the model
    # and runtime on an 8 GB machine; a larger input waits, then decodes alone.
    memory_budget: int = field(
        default=1 << 30,
        metadata=_flag(
            "--memory-budget",
            (
                "Memory that decoding may use at once, whatever --workers is (e.g. 512M, 2G); a "
                "larger input waits, then decodes alone."
            ),
        ),
    )

    # --- limits on inputs --------------------------------------------------------------------
    # Largest file or download: GIFGIF averages 0.9 MiB a GIF, so 64 MiB is generous.
    max_bytes: int = field(
        default=64 * MiB,
        metadata=_flag("--max-bytes", "Largest input file or download, in bytes (default 64 MiB)."),
    )
    # Seconds for one whole download (connect, headers, redirects, body), not per read.
    timeout: float = field(
        default=30.0,
        metadata=_flag(
            "--timeout",
            "Seconds allowed to download one URL: connect, headers, redirects and body in all.",
        ),
    )
    # Off: a service scoring its users' URLs must not be turned on its own network.
    allow_private_urls: bool = field(
        default=False,
        metadata=_flag(
            "--allow-private-urls",
            (
                "Also fetch URLs on loopback, private and link-local addresses (refused by "
                "default, so that scoring users' URLs cannot reach this machine's network)."
            ),
        ),
    )

    # --- what each row carries beyond the 17 scores ------------------------------------------
    # The K highest emotions as a `top` column; 0 leaves it out.
    top: int = field(
        default=3,
        metadata=_flag(
            "--top",
            (
                "A `top` column with the K highest emotions ('happiness:0.91 amusement:0.85' in "
                "CSV, a list in JSON); 0 leaves it out."
            ),
        ),
    )
    # <emotion>_pct: each score's percentile among the model's training GIFs.
    percentiles: bool = field(
        default=False,
        metadata=_flag(
            "--percentiles",
            (
                "Add <emotion>_pct columns: the percentile (0-100) of each score among the "
                "model's training GIFs."
            ),
        ),
    )
    # New GIFs can score outside the training GIFs' [0, 1]; clipping is the user's choice.
    clip: bool = field(
        default=False,
        metadata=_flag(
            "--clip", "Clip scores to [0, 1] (new GIFs can score outside the training GIFs' range)."
        ),
    )
    # A folder for each ok input's pooled encoder features (.npy shards + a Parquet index,
    # gifsent_infer.writing.embeddings), from the same model call as its scores; None: none.
    # An output extra like top: similarity search wants the vectors, not only the 17 scores.
    embeddings: str | None = field(
        default=None,
        metadata=_flag(
            "--embeddings",
            (
                "Also write each GIF's pooled encoder features (the vector the head reads) to "
                "this folder: .npy shards + index.parquet, for `gifsent-infer search --like "
                "GIF --embeddings DIR`."
            ),
        ),
    )
    # When in the GIF: the model's per-segment scores with each segment's start time, for
    # search and moderation that want the moment, not only the average. Off: a row per GIF
    # stays 17 numbers, and models exported before the timeline still work.
    timeline: bool = field(
        default=False,
        metadata=_flag(
            "--timeline",
            (
                "Add a `timeline` column: each segment's 17 scores and start time in seconds "
                "(compact JSON in CSV), to see when in the GIF an emotion happens. Needs a model "
                "exported with segment scores."
            ),
        ),
    )
    # A finer timeline than the model's S segments (a multiple of S; MaxPool and linear heads);
    # the scores keep the model's sampling. None: the model's S. Costs a second sampling pass.
    segments: int | None = field(
        default=None,
        metadata=_flag(
            "--segments",
            (
                "With --timeline: sample the timeline at N segments, a multiple of the model's "
                "S, for a finer one (MaxPool and linear heads); the scores keep the model's "
                "sampling."
            ),
        ),
    )
    # How sure: <emotion>_lo/_hi holding the true score with this probability (split-conformal
    # on the model's dev split). None: no intervals; the model must be calibrated for the level.
    intervals: float | None = field(
        default=None,
        metadata=_flag(
            "--intervals",
            (
                "Add <emotion>_lo/<emotion>_hi columns holding the true score with this "
                "probability (e.g. 0.9; calibrated on the model's dev split), and "
                "<emotion>_std for a model fusing several heads."
            ),
        ),
    )

    def __post_init__(self) -> None:
        for name in ("model", "embeddings"):  # a Path is welcome; store it as text
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        self._check()

    def _check(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                flag = self.flag(name)
                raise OptionsError(f"{flag}: {what} (got {getattr(self, name)!r})")

        need(self.batch_size >= 1, "batch_size", "must be at least 1")
        need(self.workers is None or self.workers >= 0, "workers", "must be 0 or more")
        need(self.threads is None or self.threads >= 1, "threads", "must be at least 1")
        need(self.memory_budget >= 1, "memory_budget", "must be at least 1 byte")
        need(self.max_bytes >= 1, "max_bytes", "must be at least 1 byte")
        need(self.timeout > 0, "timeout", "must be more than 0 seconds")
        need(0 <= self.top <= 17, "top", "must be between 0 and 17")
        need(self.segments is None or self.segments >= 1, "segments", "must be at least 1")
        need(
            self.intervals is None or 0 < self.intervals < 1,
            "intervals",
            "must be a coverage between 0 and 1, e.g. 0.9",
        )

    def replace(self, **changes: Any) -> ScoreOptions:
        """A copy with some options changed (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def flag(cls, name: str) -> str:
        """The CLI flag of the option called `name` (e.g. "batch_size" -> "--batch-size")."""
        return _FIELDS[name].metadata["flag"]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(_FIELDS)

    def as_dict(self) -> dict[str, Any]:
        """The options as plain JSON-able values (for provenance and logs)."""
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(ScoreOptions)}
