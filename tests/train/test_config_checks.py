"""Clear errors for bad training configs, model folders and Pillow upgrades (issue 12)."""

from __future__ import annotations

import pytest


def test_train_config_values_are_type_checked(tmp_path, capsys):
    from gifsent_train.cli import main
    from gifsent_train.pipeline import TrainConfig, resolve_config

    with pytest.raises(ValueError, match=r"trials must be int, not str 'abc'"):
        TrainConfig.from_dict({"trials": "abc"})
    with pytest.raises(ValueError, match="random_init must be bool"):
        TrainConfig.from_dict({"random_init": "yes"})
    with pytest.raises(ValueError, match="heads must be tuple"):
        TrainConfig.from_dict({"heads": "rnn"})
    cfg = TrainConfig.from_dict({"heads": ["rnn"], "fps": 2, "split_fractions": [0.8, 0.1, 0.1]})
    assert cfg.heads == ("rnn",) and cfg.fps == 2
    assert resolve_config("tiny").trials == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('trials = "abc"\n')
    with pytest.raises(SystemExit) as e:
        main(["--config", str(bad)])
    assert e.value.code == 2 and "trials must be int" in capsys.readouterr().err


def test_a_failed_training_command_leaves_no_empty_run_folder(tmp_path, gifsent_home, capsys):
    from gifsent_train.cli import main

    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as e:
        main(["--preset", "tiny", "--data", str(tmp_path / "nowhere"), "--run-dir", str(runs)])
    assert e.value.code == 2
    assert not runs.exists() or list(runs.iterdir()) == []


def test_model_folder_is_not_called_missing(tmp_path):
    from gifsent_infer.running.session import ModelError, resolve_model

    (tmp_path / "gifsent-rnn.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"is a folder, not an \.onnx file; it holds gifsent-rnn"):
        resolve_model(tmp_path)


def test_a_broken_pillow_decoder_fails_loudly_with_the_fix(monkeypatch, tmp_path):
    import numpy as np

    from gifsent_infer.reading import gifio, selftest

    selftest.check_gif_decoder.cache_clear()
    selftest.check_gif_decoder()  # the installed Pillow passes
    real = gifio.decode_gif

    def wrong(*a, **kw):
        got = real(*a, **kw)
        return type(got)(np.zeros_like(got.frames), *list(vars(got).values())[1:])

    def broken(*a, **kw):
        raise AttributeError("module 'PIL.Image' has no attribute '_getdecoder'")

    for fake, why in ((wrong, "wrong pixels"), (broken, "AttributeError")):
        monkeypatch.setattr(gifio, "decode_gif", fake)
        selftest.check_gif_decoder.cache_clear()
        with pytest.raises(selftest.PillowDecoderError, match=rf"pillow>=10,<14.*{why}"):
            selftest.check_gif_decoder()
    monkeypatch.setattr(gifio, "decode_gif", real)
    selftest.check_gif_decoder.cache_clear()


def test_train_help_shows_the_defaults():
    from typer.testing import CliRunner

    from gifsent_train.cli import app

    result = CliRunner().invoke(app, ["run", "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "default: 20 unless --preset" in result.output  # --trials
