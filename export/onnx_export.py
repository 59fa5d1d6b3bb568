"""Moved to ``gifsent_models.onnx`` (training uses the same mechanism); import it from there.

Kept so that code written against the old name keeps working while branches merge.
"""

from gifsent_models.onnx import (  # noqa: F401
    BATCH_DIM,
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    EXPORTERS,
    FEATURES_NAME,
    ExportError,
    add_metadata,
    check_proto,
    encoder_example,
    export_encoder_graph,
    export_module,
    export_proto,
    read_metadata,
    save_proto,
    set_metadata,
    simplify_proto,
)
