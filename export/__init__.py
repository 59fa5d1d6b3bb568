"""gifsent export: fuse preprocessing, encoder and head into one self-describing ONNX graph."""
