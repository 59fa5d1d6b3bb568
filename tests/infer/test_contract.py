"""The model contract: JSON round trip and validation that refuses what it does not understand."""

from __future__ import annotations

import json

import pytest

from gifsent_infer import paths
from gifsent_infer.contract import (
    EMOTIONS,
    ContractError,
    EncoderInfo,
    HeadInfo,
    ModelDocument,
    Normalization,
    SamplingSpec,
    TargetScale,
)


def make_doc(**overrides) -> ModelDocument:
    kwargs = dict(
        sampling=SamplingSpec(segments=4, frames_per_segment=16, fps=12.5, size=128, crop=112),
        normalization=Normalization(mean=(114.7748, 107.7354, 99.4750), std=(1, 1, 1)),
        encoder=EncoderInfo(name="resnext101-kinetics", feature_dim=2048),
        head=HeadInfo(name="rnn", config={"num_layers": 2, "hidden": 64, "dropout": 0.1705}),
        target=TargetScale(low=[-2.0] * 17, high=[3.0] * 17),
        metrics={"test": {"rmse": 0.0761, "ev": 0.408}},
    )
    kwargs.update(overrides)
    return ModelDocument(**kwargs)


def test_emotions_are_gifgifs_seventeen_in_order():
    assert len(EMOTIONS) == 17
    assert EMOTIONS[0] == "amusement" and EMOTIONS[-1] == "surprise"
    assert list(EMOTIONS) == sorted(EMOTIONS)  # GIFGIF lists them alphabetically


def test_document_round_trips_through_json():
    doc = make_doc()
    again = ModelDocument.from_json(doc.to_json())
    assert again == doc
    assert again.sampling.num_frames == 64
    assert again.library_version


def test_unknown_schema_version_is_refused_with_a_clear_message():
    data = json.loads(make_doc().to_json())
    data["schema_version"] = 99
    with pytest.raises(ContractError, match="schema version 99"):
        ModelDocument.from_dict(data)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["sampling"].update(crop=200), "crop"),
        (lambda d: d["sampling"].update(segments=0), "segments"),
        (lambda d: d["sampling"].update(colour="red"), "unknown field"),
        (lambda d: d.update(emotions=list(reversed(EMOTIONS))), "GIFGIF order"),
        (lambda d: d["head"].update(name="lstm"), "head.name"),
        (lambda d: d.update(precision="fp8"), "precision"),
        (lambda d: d["target"].update(low=[0.0] * 3), "17 low"),
        (lambda d: d["normalization"].update(std=[1, 0, 1]), "std"),
        (lambda d: d.pop("encoder"), "missing"),
    ],
)
def test_inconsistent_documents_are_refused(mutate, message):
    data = json.loads(make_doc().to_json())
    mutate(data)
    with pytest.raises(ContractError, match=message):
        ModelDocument.from_dict(data)


def test_target_scale_maps_scores_back_to_strengths():
    scale = TargetScale(low=[-2.0] * 17, high=[2.0] * 17)
    assert scale.to_strength([0.5] * 17).tolist() == [0.0] * 17
    assert scale.to_strength([1.0] * 17).tolist() == [2.0] * 17


def test_home_layout_follows_gifsent_home(gifsent_home):
    assert paths.home() == gifsent_home
    assert paths.default_model_path("rnn") == gifsent_home / "models" / "gifsent-rnn.onnx"
    assert paths.find_default_model() is None
    target = paths.default_model_path("maxpool")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert paths.find_default_model() == target


def test_segment_meaning_follows_the_maxpool_timeline_kind():
    from gifsent_infer.contract import output_meanings, segment_meaning

    old = output_meanings("maxpool", 1)["segment_scores"]  # a model without the field
    assert "what the max pools over" in old
    assert output_meanings("maxpool", 1, "shared")["segment_scores"] == old
    mil = output_meanings("maxpool", 3, "mil")["segment_scores"]
    assert "mean over 3 maxpool heads of a timeline readout" in mil
    assert "peaks where the emotion happens" in mil
    assert segment_meaning("linear", "mil") == segment_meaning("linear")  # no such kind
    assert segment_meaning("rnn", "state") == segment_meaning("rnn")  # an LSTM's old timeline
    assert "beside the LSTM" in segment_meaning("rnn", "mil")
