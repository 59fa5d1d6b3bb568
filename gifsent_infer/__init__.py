"""gifsent runtime: score the emotions of animated GIFs with an exported ONNX model.

Importing this package pulls in neither torch, typer, rich nor onnxruntime;
onnxruntime is imported when a model is first loaded.
"""

__version__ = "0.1.0"

from gifsent_infer.contract import EMOTIONS, ContractError, ModelDocument, SamplingSpec

__all__ = ["EMOTIONS", "ContractError", "ModelDocument", "SamplingSpec", "__version__"]
