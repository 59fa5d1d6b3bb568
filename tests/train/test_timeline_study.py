"""Issue 22's timeline number: which emotions a demo moment carries, and how the training report
finds the segment where a GIF's timeline of them peaks (tiny heads, known segment outputs)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gifsent_infer.contract import EMOTIONS, SamplingSpec

SPEC = SamplingSpec(segments=4, frames_per_segment=1, fps=12.5, size=32, crop=32)


def test_a_frowning_moment_carries_negative_emotions_not_the_strongest_ones():
    from gifsent_train.demo_data import LATENTS, moment_emotions

    z = np.zeros((2, len(LATENTS) + 4))
    z[0, LATENTS.index("valence")] = -2.0  # a frown (and a blue background) at the moment
    z[1, LATENTS.index("valence")] = 2.0
    z[:, LATENTS.index("arousal")] = 3.0  # shows throughout: no part of the moment
    frown, smile = moment_emotions(z)
    assert len(frown) == 3 and len(smile) == 3
    assert "happiness" in smile and "happiness" not in frown
    assert set(frown) <= {"anger", "disgust", "fear", "sadness", "contempt", "shame", "guilt"}
    assert "excitement" not in frown + smile  # arousal's emotion: the moment does not carry it


def test_moment_colours_fade_with_the_expression():
    from gifsent_train.demo_data import LATENTS, MOMENT_REST, _palette

    z = np.zeros(len(LATENTS))
    z[LATENTS.index("valence")], z[LATENTS.index("disgust")] = 2.5, 2.5
    full, rest, neutral = (np.array(_palette(z, k)[:6]) for k in (1.0, MOMENT_REST, 0.0))
    assert np.abs(full - neutral).sum() > 3 * np.abs(rest - neutral).sum()  # bg and face colour


def test_truth_file_records_the_moment_emotions(tmp_path):
    from gifsent_train.demo_data import make_demo_data, read_moment_emotions, read_moments

    demo = make_demo_data(
        tmp_path / "d", n_gifs=24, seed=1, moment_share=0.5, comparisons_per_gif=3,
        size_range=(24, 28),
    )  # fmt: skip
    moments, carried = read_moments(demo.truth), read_moment_emotions(demo.truth)
    assert moments and set(carried) <= set(moments)
    assert all(1 <= len(v) <= 3 and set(v) <= set(EMOTIONS) for v in carried.values())
    (tmp_path / "old.csv").write_text("id,amusement\nx,1\n")
    assert read_moment_emotions(tmp_path / "old.csv") == {}  # version-2 truth files


def test_moment_peak_sums_each_emotions_deviation_in_its_own_units():
    from gifsent_train.study import moment_peak

    sig = np.zeros((4, 17))
    sig[:, 0] = [0.0, 10.0, 0.0, 0.0]  # a large scale: one segment stands out by 10
    sig[:, 1] = [0.0, 0.0, 0.2, 0.0]  # a small one, same shape
    sig[:, 2] = [0.0, 0.0, 0.1, 0.0]
    assert moment_peak(sig, [0]) == 1
    assert moment_peak(sig, [0, 1, 2]) == 2  # two emotions agree on segment 2; scale is no vote
    sig[:, 3] = 5.0  # a flat timeline adds nothing anywhere
    assert moment_peak(sig, [1, 3]) == 2


def _linear_head(d):
    from gifsent_models.heads import create_head

    w = np.zeros((17, d))
    w[EMOTIONS.index("sadness"), 0] = 1.0  # sadness reads feature 0
    w[EMOTIONS.index("happiness"), 1] = 1.0  # happiness reads feature 1
    return create_head("linear", d).set_affine(w, np.zeros(17)).eval()


def test_timeline_study_hits_when_the_moments_emotions_peak_inside():
    from gifsent_train.study import timeline_study

    d, n = 4, 6
    x = np.zeros((n, 4, d), np.float32)
    moments, carried = {}, {}
    for i in range(n):
        seg = i % 4
        x[i, seg, 0] = 1.0  # sadness rises in segment `seg`, where the moment is
        x[i, (seg + 2) % 4, 1] = 3.0  # happiness (not carried) elsewhere, larger
        moments[f"g{i}"] = (seg * 1.0, seg * 1.0 + 0.8, 4.0)  # [seg, seg + 0.8) s of 4 s
        carried[f"g{i}"] = ("sadness",)
    data = SimpleNamespace(ids={"test": [f"g{i}" for i in range(n)]}, x={"test": x})
    truth = {f"g{i}": np.eye(17)[EMOTIONS.index("happiness")] for i in range(n)}
    out = timeline_study(_linear_head(d), data, moments, SPEC, truth, carried)
    assert out["gifs"] == n and out["chance"] == pytest.approx(0.25)
    assert out["peak_in_moment"] == 1.0 and out["ratio"] == pytest.approx(4.0)
    # without moment_emotions, the truly strongest emotion (happiness) peaks outside
    old = timeline_study(_linear_head(d), data, moments, SPEC, truth, top=1)
    assert old["peak_in_moment"] == 0.0 and old["emotions"] == "top 1 by truth"


def test_the_lstms_timeline_signal_is_what_each_segment_adds():
    from gifsent_models.heads import create_head, head_outputs
    from gifsent_train.study import timeline_signal

    torch.manual_seed(0)
    head = create_head("rnn", 5, {"timeline": "state"}).eval()  # the running estimate
    x = torch.randn(3, 4, 5)
    with torch.no_grad():
        seg = head_outputs(head, x, ("segment_scores",))["segment_scores"].numpy()
    inc = timeline_signal(head, seg)
    start = head.fc.bias.detach().numpy()
    np.testing.assert_allclose(start + np.cumsum(inc, axis=1), seg, atol=1e-5)
    assert timeline_signal(_linear_head(5), seg) is seg  # other heads: the timeline itself
    assert timeline_signal(create_head("rnn", 5).eval(), seg) is seg  # an LSTM's readout too
    # K seed refits fused (gifsent-export --ensemble): their mean timeline, which starts from
    # the mean of their output biases
    from gifsent_models.heads import EnsembleHead

    ens = EnsembleHead([head, create_head("rnn", 5, {"timeline": "state"}).eval()]).eval()
    with torch.no_grad():
        seg2 = head_outputs(ens, x, ("segment_scores",))["segment_scores"].numpy()
    start2 = np.mean([h.fc.bias.detach().numpy() for h in ens.heads], axis=0)
    np.testing.assert_allclose(
        start2 + np.cumsum(timeline_signal(ens, seg2), axis=1), seg2, atol=1e-5
    )


def test_the_report_also_scores_the_timeline_at_finer_segments(tmp_path):
    """MaxPool and linear get a "fine" entry: the test moment GIFs re-encoded at FINE_SEGMENTS
    and scored by the same head (what --segments gives a user); the LSTM keeps its own S."""
    from gifsent_models.heads import create_head
    from gifsent_models.registry import create_encoder
    from gifsent_train.demo_data import make_demo_data, read_moment_emotions, read_moments
    from gifsent_train.stages import FINE_SEGMENTS, _fine_timeline, fine_features

    demo = make_demo_data(
        tmp_path / "d", n_gifs=6, seed=2, moment_share=1.0, comparisons_per_gif=2,
        size_range=(24, 28),
    )  # fmt: skip
    moments = read_moments(demo.truth)
    index = {p.stem: p for p in demo.gifs.glob("*.gif")}
    ids = sorted(g for g in moments if g in index)
    enc = create_encoder("efficientnet-lite0-tiny", random_init=True)
    x, spec = fine_features(enc, [index[g] for g in ids], FINE_SEGMENTS)
    assert x.shape[:2] == (len(ids), FINE_SEGMENTS) and spec.segments == FINE_SEGMENTS
    d = x.shape[2]
    data = SimpleNamespace(ids={"test": ids}, x={"test": x[:, :4]})
    torch.manual_seed(0)
    fitted = {h: [create_head(h, d).eval()] for h in ("maxpool", "rnn")}
    out = {"timeline": {"maxpool": {"gifs": len(ids)}, "rnn": {"gifs": len(ids)}}}
    _fine_timeline(out, data, fitted, (moments, None, read_moment_emotions(demo.truth)), enc, index)
    fine = out["timeline"]["maxpool"]["fine"]
    assert fine["segments"] == FINE_SEGMENTS and fine["gifs"] >= 1
    assert 0.0 < fine["chance"] < 0.5 and "fine" not in out["timeline"]["rnn"]


def test_report_prints_the_models_and_the_finer_timeline():
    from gifsent_train.report import timeline_markdown

    v = {"gifs": 31, "segments": 4, "peak_in_moment": 0.258, "chance": 0.202, "ratio": 1.28,
         "ratio_se": 0.39, "per_emotion_ratio": 1.42, "emotions": "moment_emotions"}  # fmt: skip
    fine = {**v, "segments": 16, "ratio": 2.4}
    md = timeline_markdown({"timeline": {"maxpool": {**v, "fine": fine}, "rnn": v}})
    assert "| maxpool | 31 | 4 | 25.8% | 20.2% | 1.28x ± 0.39 | 1.42x |" in md
    assert "| maxpool | 31 | 16 |" in md and "2.40x" in md and md.count("| rnn |") == 1
    assert "moment_emotions" in md
