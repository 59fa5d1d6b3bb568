"""Dynamic batching across requests: one Batcher per loaded model.

Each admitted input is read and decoded in a bounded thread pool (Scorer.prepare, under the
Scorer's memory budget), then waits in a ready list for the model thread. The model loop
takes up to `max_batch` ready inputs per call. It waits for more only while other admitted
inputs are still decoding, and at most `wait_s` after the first one became ready: a lone
request on an idle server goes straight to the model. On an idle batcher (nothing decoding,
nothing ready, the model thread free) an input sent in the request itself is decoded and
scored in one hop to the model thread, so a lone request costs about what a direct
Scorer.score call does (URLs never take that path: a slow download must not hold the
model). Scores are the model's rows for the same frames the CLI decodes, so they are the
CLI's scores.

Admission is by inputs, not requests: `admit(n)` refuses once `max_queue` inputs are in
flight (QueueFull -> 503), which bounds decode backlog and memory whatever the load.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from gifsent_infer.reading.inputs import InputItem
from gifsent_infer.running.batch import default_workers
from gifsent_infer.running.scorer import Prepared, Scorer, ScoreResult, Source
from gifsent_infer.serve.metrics import Metrics

__all__ = ["Batcher", "QueueFull"]


class QueueFull(Exception):
    """More inputs than max_queue would be in flight."""


@dataclass
class _Ready:
    frames: np.ndarray
    prepared: Prepared
    future: asyncio.Future
    since: float


class Batcher:
    def __init__(
        self,
        scorer: Scorer,
        metrics: Metrics,
        *,
        max_batch: int,
        wait_s: float,
        max_queue: int,
        workers: int | None = None,
    ) -> None:
        self.scorer = scorer
        self.metrics = metrics
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_queue = max_queue
        workers = workers or default_workers()
        self._decode = ThreadPoolExecutor(workers, thread_name_prefix="gifsent-serve-decode")
        self._model = ThreadPoolExecutor(1, thread_name_prefix="gifsent-serve-model")
        self._ready: deque[_Ready] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.in_flight = 0  # admitted inputs not yet answered
        self.decoding = 0  # inputs in the decode pool (or waiting for it)
        self.model_calls = 0
        self._model_busy = 0  # calls given to the model thread and not yet back

    # --- admission -------------------------------------------------------------------------
    @property
    def full(self) -> bool:
        return self.in_flight >= self.max_queue

    def admit(self, n: int) -> None:
        """Reserve room for n inputs or raise QueueFull. An idle batcher admits any request
        (one request larger than the queue still gets scored, alone)."""
        if self.in_flight and self.in_flight + n > self.max_queue:
            raise QueueFull(f"{self.in_flight} inputs in flight, the queue holds {self.max_queue}")
        self.in_flight += n
        self.metrics.queue_depth.set(self.in_flight)

    def release(self, n: int) -> None:
        self.in_flight -= n
        self.metrics.queue_depth.set(self.in_flight)

    # --- scoring ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._model_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._decode.shutdown(wait=False, cancel_futures=True)
        self._model.shutdown(wait=True)

    async def score(self, sources: Sequence[Source]) -> list[ScoreResult]:
        """Score already admitted inputs, results in input order (error rows included)."""
        if len(sources) == 1:  # most requests: no task to gather
            return [await self._one(sources[0])]
        return list(await asyncio.gather(*(self._one(s) for s in sources)))

    def _idle_for(self, source: Source) -> bool:
        in_memory = isinstance(source, (bytes, bytearray)) or (
            isinstance(source, InputItem) and source.data is not None
        )
        return in_memory and not self.decoding and not self._ready and not self._model_busy

    def _score_alone(self, source: Source) -> tuple[ScoreResult, bool]:
        """In the model thread: decode one input and run it as a batch of one."""
        frames, prepared = self.scorer.prepare(source)
        if frames is None:
            return self.scorer.complete(prepared, None), False
        row = self.scorer.run_batch(frames[None])[0]
        return self.scorer.complete(prepared, row), True

    async def _one(self, source: Source) -> ScoreResult:
        loop = asyncio.get_running_loop()
        if self._idle_for(source):
            self._model_busy += 1
            try:
                result, ran = await loop.run_in_executor(self._model, self._score_alone, source)
            finally:
                self._model_busy -= 1
                self._wake.set()
            if ran:
                self._count_call(1)
            return result
        self.decoding += 1
        try:
            frames, prepared = await loop.run_in_executor(self._decode, self.scorer.prepare, source)
        except BaseException:
            self.decoding -= 1
            self._wake.set()
            raise
        if frames is None:
            self.decoding -= 1
            self._wake.set()
            return self.scorer.complete(prepared, None)
        future = loop.create_future()
        # in one step with the decrement: the model loop never sees "nothing decoding"
        # before this input is ready
        self._ready.append(_Ready(frames, prepared, future, time.monotonic()))
        self.decoding -= 1
        self._wake.set()
        return await future

    def _count_call(self, size: int) -> None:
        self.model_calls += 1
        self.metrics.model_calls.inc()
        self.metrics.batch_size.observe(size)

    async def _gather_batch(self) -> list[_Ready]:
        """Up to max_batch ready inputs, waiting for ones still decoding at most wait_s."""
        loop = asyncio.get_running_loop()
        deadline = self._ready[0].since + self.wait_s
        while len(self._ready) < self.max_batch and self.decoding > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # woken by the next ready input or the deadline; a timer, not asyncio.wait_for,
            # which would make a task per wait
            self._wake.clear()
            timer = loop.call_later(left, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
        batch: list[_Ready] = []
        while self._ready and len(batch) < self.max_batch:
            item = self._ready.popleft()
            if not item.future.done():  # its request timed out or left: skip it
                batch.append(item)
        return batch

    def _run_ready(self, batch: list[_Ready]) -> list[ScoreResult]:
        """In the model thread: stack the batch's frames, run them, complete each row (the
        event loop never holds the GIL for a copy of a batch's frames)."""
        rows = self.scorer.run_batch(np.stack([item.frames for item in batch]))
        return [
            self.scorer.complete(item.prepared, row) for item, row in zip(batch, rows, strict=True)
        ]

    async def _model_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._ready:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = await self._gather_batch()
            if not batch:
                continue
            self._model_busy += 1
            try:
                results = await loop.run_in_executor(self._model, self._run_ready, batch)
            except Exception as e:  # the model failed: these requests get a 500, others go on
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(e)
                continue
            finally:
                self._model_busy -= 1
            self._count_call(len(batch))
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
