"""Batched scoring: inputs are read and decoded in a thread pool while the model runs, in bounded memory.

The calling thread keeps a window of at most `window` submitted inputs, takes them back in
submission order, groups the ones that need the model into batches of exactly `batch_size`
(the last one may be smaller) and runs the model on each batch. onnxruntime and Pillow's
decoders release the GIL, so the pool keeps decoding the next inputs while a batch runs.
Results come out in input order. At most `window + batch_size` decoded inputs exist at once,
however many inputs there are.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")

# prepare(item) -> (frames, context): frames uint8 [S*T, H, W, 3] when the item needs the
# model, None when it does not (an error, a skipped input); complete(context, scores) -> result,
# with scores float32 [17] or None.
Prepare = Callable[[T], tuple[np.ndarray | None, Any]]
Complete = Callable[[Any, np.ndarray | None], R]
Infer = Callable[[np.ndarray], np.ndarray]


def default_workers() -> int:
    """Decoder threads: one per core, at least 1, at most 8 (beyond that the model is the bottleneck)."""
    return max(1, min(8, os.cpu_count() or 1))


class _Slot:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = _EMPTY


_EMPTY = object()


def run_pipeline(
    items: Iterable[T],
    prepare: Prepare,
    infer: Infer,
    complete: Complete,
    *,
    batch_size: int = 8,
    workers: int | None = None,
    window: int | None = None,
) -> Iterator[R]:
    """Yield complete(context, scores) for every item, in input order.

    `workers=0` prepares items in the calling thread (no pool). `window` bounds the inputs
    submitted but not yet taken back (default: batch_size + 2 * workers).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    window = window or batch_size + 2 * max(workers, 1)

    order: deque[_Slot] = deque()  # results not yet yielded, in input order
    batch: list[tuple[_Slot, Any, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        stacked = np.stack([frames for _, _, frames in batch])  # [B, S*T, H, W, 3]
        scores = infer(stacked)
        for (slot, ctx, _), row in zip(batch, scores, strict=True):
            slot.value = complete(ctx, row)
        batch.clear()

    def take(frames: np.ndarray | None, ctx: Any) -> None:
        slot = _Slot()
        order.append(slot)
        if frames is None:
            slot.value = complete(ctx, None)
        else:
            batch.append((slot, ctx, frames))
            if len(batch) >= batch_size:
                flush()

    def ready() -> Iterator[R]:
        while order and order[0].value is not _EMPTY:
            yield order.popleft().value

    it = iter(items)
    if workers == 0:
        for item in it:
            take(*prepare(item))
            yield from ready()
        flush()
        yield from ready()
        return

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gifsent-decode")
    pending: deque[Future] = deque()
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window:
                try:
                    pending.append(pool.submit(prepare, next(it)))
                except StopIteration:
                    exhausted = True
            if not pending:
                break
            take(*pending.popleft().result())
            yield from ready()
        flush()
        yield from ready()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
