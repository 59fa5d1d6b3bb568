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
    head = create_head("rnn", 5).eval()
    x = torch.randn(3, 4, 5)
    with torch.no_grad():
        seg = head_outputs(head, x, ("segment_scores",))["segment_scores"].numpy()
    inc = timeline_signal(head, seg)
    start = head.fc.bias.detach().numpy()
    np.testing.assert_allclose(start + np.cumsum(inc, axis=1), seg, atol=1e-5)
    assert timeline_signal(_linear_head(5), seg) is seg  # other heads: the timeline itself
