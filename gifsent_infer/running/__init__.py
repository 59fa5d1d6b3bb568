"""Running the model: the engine (onnxruntime or OpenVINO), the model session, the batch
pipeline, the Scorer, the result row and its readable decorations (top, percentiles, clip).

Imports reading and the base modules; never writing, views, scale-out or the service.
"""
