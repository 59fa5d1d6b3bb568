"""The dynamic batcher in-process: a lone input never waits for the batch window, inputs
decoded together share one model call, admission bounds inputs in flight, and the rows are
score_many's."""

from __future__ import annotations

import asyncio

import pytest
from infer_support import build_model
from support import gif_bytes

pytest.importorskip("prometheus_client")

from gifsent_infer.running.scorer import Scorer
from gifsent_infer.serve.batcher import Batcher, QueueFull
from gifsent_infer.serve.metrics import Metrics

FOREVER = 1e6  # a batch window no test could sit out


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return Scorer(build_model(tmp_path_factory.mktemp("b") / "m.onnx"), backend="onnxruntime")


async def _with(scorer, fn, **kw):
    b = Batcher(scorer, Metrics(), **{"max_batch": 8, "wait_s": FOREVER, "max_queue": 16, **kw})
    b.start()
    try:
        return await asyncio.wait_for(fn(b), 300), b
    finally:
        await b.close()


def test_a_lone_request_never_waits_for_the_window(scorer):
    async def one(b):
        b.admit(1)
        return await b.score([gif_bytes(1)])

    [r], b = asyncio.run(_with(scorer, one))
    assert r.ok and b.model_calls == 1  # answered although the window is "forever"


def test_inputs_decoding_together_share_a_model_call(scorer):
    gifs = [gif_bytes(i) for i in range(6)]

    async def many(b):
        b.admit(len(gifs))
        # six one-input requests at once: all are decoding when the first is ready
        return await asyncio.gather(*(b.score([g]) for g in gifs))

    results, b = asyncio.run(_with(scorer, many, max_batch=8))
    want = list(scorer.score_many(gifs))
    assert [r[0].scores for r in results] == [w.scores for w in want]  # score_many's rows
    assert [r[0].sha256 for r in results] == [w.sha256 for w in want]
    assert b.model_calls < len(gifs)


def test_max_batch_caps_a_call_and_errors_skip_the_model(scorer):
    gifs = [gif_bytes(i) for i in range(5)] + [b"GIF89a broken"]

    async def run(b):
        b.admit(len(gifs))
        return await b.score(gifs)

    results, b = asyncio.run(_with(scorer, run, max_batch=2))
    assert [r.ok for r in results] == [True] * 5 + [False]
    assert results[-1].error_kind == "GifError" and results[-1].error
    assert b.model_calls >= 3  # 5 GIFs, at most 2 a call


def test_admission_bounds_inputs_in_flight(scorer):
    b = Batcher(scorer, Metrics(), max_batch=8, wait_s=0.0, max_queue=4)
    b.admit(100)  # an idle batcher takes any one request, alone
    with pytest.raises(QueueFull):
        b.admit(1)
    b.release(100)
    b.admit(3)
    b.admit(1)
    assert b.full
    with pytest.raises(QueueFull):
        b.admit(1)
    b.release(4)
    assert not b.full
