"""gifsent export: fuse preprocessing, encoder and head into one self-describing ONNX graph.

Modules (torch and onnx are imported inside functions, so `import gifsent_export` is light):
  api          export_checkpoint(checkpoint, out, precision=, part=, ...) -> ExportResult
  onnx_export  export_proto / export_module / export_encoder_graph / set_metadata / add_metadata
  parity       onnxruntime runs, fp32 parity bound, Spearman ranking checks
  precision    fp16 and int8 (QDQ) encoder variants, merge with the float head
  frames       GIFs for the checks: a run's test/train GIFs, given GIFs, generated GIFs
  cli          the `gifsent-export` command
"""
