"""gifsent export: fuse preprocessing, encoder and head into one self-describing ONNX graph.

Modules (torch and onnx are imported inside functions, so `import gifsent_export` is light):
  api          export_checkpoint(checkpoint, out, precision=, part=, ...) -> ExportResult
  parity       engine runs (every installed backend), fp32 parity bound, Spearman ranking checks
               (the torch module -> checked graph mechanism is gifsent_models.onnx)
  precision    fp16 and int8 (QDQ) encoder variants, merge with the float head
  frames       GIFs for the checks: given GIFs, generated GIFs (a run's own: gifsent_train.run)
  cli          the `gifsent-export` command
"""
