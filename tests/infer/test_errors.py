"""One exception base class (gifsent_infer.errors.GifsentError) carrying the CLI exit code,
under every error class, which keeps its old built-in base."""

from __future__ import annotations

import importlib
import pickle

import pytest

from gifsent_infer.errors import GifsentError, exit_code_of

# (module, class, the built-in base it always had, exit code)
CLASSES = [
    ("gifsent_infer.running.engine", "ModelError", RuntimeError, 2),
    ("gifsent_infer.running.engine", "DeviceError", RuntimeError, 2),
    ("gifsent_infer.running.session", "ModelError", RuntimeError, 2),  # re-exported there
    ("gifsent_infer.reading.inputs", "InputError", ValueError, 1),
    ("gifsent_infer.reading.inputs", "NoInputsError", ValueError, 2),
    ("gifsent_infer.writing.outpath", "OutputPathError", ValueError, 2),
    ("gifsent_infer.writing.outputs", "ScoresFileError", ValueError, 2),
    ("gifsent_infer.views.search", "SearchError", ValueError, 2),
    ("gifsent_infer.running.readable", "ReadableError", ValueError, 2),
    ("gifsent_infer.views.report", "ReportError", ValueError, 2),
    ("gifsent_infer.contract", "ContractError", ValueError, 1),  # export exits 1 for it
    ("gifsent_infer.reading.gifio", "GifError", ValueError, 1),
    ("gifsent_infer.reading.media", "MediaError", ValueError, 1),
    ("gifsent_infer.reading.selftest", "PillowDecoderError", ImportError, 2),
    ("gifsent_infer.scaleout.distributed", "ClusterError", RuntimeError, 2),
    ("gifsent_infer.scaleout.distributed", "RayRunError", RuntimeError, 1),
    ("gifsent_train.votes", "VotesFormatError", ValueError, 1),
    ("gifsent_train.fetch", "FetchError", RuntimeError, 1),
    ("gifsent_export.parity", "ParityError", RuntimeError, 1),
    ("gifsent_models.onnx", "ExportError", RuntimeError, 1),
    ("gifsent_models.checkpoint", "CheckpointError", ValueError, 1),
]


@pytest.mark.parametrize("module,name,base,code", CLASSES, ids=lambda v: str(v))
def test_every_error_is_a_gifsent_error_and_keeps_its_base(module, name, base, code):
    cls = getattr(importlib.import_module(module), name)
    e = cls("what went wrong")
    assert isinstance(e, GifsentError) and isinstance(e, base)
    assert str(e) == "what went wrong"
    assert e.exit_code == code == exit_code_of(e)


def test_exit_code_override_survives_pickling_and_plain_errors_get_the_default():
    from gifsent_infer.running.engine import ModelError

    e = ModelError("no model", exit_code=3)
    again = pickle.loads(pickle.dumps(e))  # Ray ships exceptions between processes
    assert (type(again), str(again), again.exit_code) == (ModelError, "no model", 3)
    assert ModelError("x").exit_code == 2  # the override is the instance's, not the class's
    assert exit_code_of(ValueError("x")) == 1 and exit_code_of(OSError("x"), 2) == 2
