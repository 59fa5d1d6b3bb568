"""gifsent runtime: score the emotions of animated GIFs with an exported ONNX model.

Importing this package pulls in neither torch, typer, rich nor onnxruntime;
onnxruntime is imported when a model is first loaded.

    from gifsent_infer import Scorer
    scorer = Scorer("gifsent-rnn.onnx", device="cpu")
    result = scorer.score("cat.gif")
    print(result.scores["happiness"] if result.ok else result.error)

    from gifsent_infer import ScoreOptions
    scorer = Scorer.from_options(ScoreOptions(model="gifsent-rnn.onnx", device="cpu"))
"""

from gifsent_infer.contract import EMOTIONS, ContractError, ModelDocument, SamplingSpec
from gifsent_infer.options import ScoreOptions
from gifsent_infer.version import __version__

__all__ = [
    "EMOTIONS",
    "ContractError",
    "ModelDocument",
    "SamplingSpec",
    "ScoreOptions",
    "ScoreResult",
    "Scorer",
    "__version__",
]


def __getattr__(name: str):
    # Lazy, so that `import gifsent_infer` stays cheap (the scorer pulls in the reader).
    if name in ("Scorer", "ScoreResult"):
        from gifsent_infer.running import scorer

        return getattr(scorer, name)
    raise AttributeError(f"module 'gifsent_infer' has no attribute {name!r}")
