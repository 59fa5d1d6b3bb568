"""The default path (--backend auto --precision auto) against onnxruntime fp32 and OpenVINO
fp32 on one model, model alone (random frames, batch 8), interleaved rounds in one process.

    .venv/bin/python benchmarks/bench_default_path.py [MODEL.onnx]   # default: the make-demo model
"""

import os
import statistics
import sys
import time

import numpy as np

from gifsent_infer.running.scorer import Scorer

m = sys.argv[1] if len(sys.argv) > 1 else "demo-home/models/gifsent-rnn.onnx"
cfgs = {
    "ort fp32": dict(backend="onnxruntime", precision="fp32"),
    "ov fp32": dict(backend="openvino", precision="fp32"),
    "default (auto/auto)": dict(backend="auto", precision="auto"),
}
sc = {k: Scorer(m, device="cpu", **v) for k, v in cfgs.items()}
s0 = next(iter(sc.values()))
shape = s0.session.input_shape
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (8, *shape), dtype=np.uint8)
print("load average at the start", os.getloadavg())
for k, s in sc.items():
    s.session.run(x)
    print(k, "->", s.backend, s.session.precision, getattr(s.session, "choice", ""))
t = {k: [] for k in sc}
for _round in range(7):
    for k, s in sc.items():
        a = time.perf_counter()
        s.session.run(x)
        t[k].append(time.perf_counter() - a)
base = statistics.median(t["ort fp32"])
for k in sc:
    med = statistics.median(t[k])
    print(f"{k}: {8 / med:.1f} GIFs/s, {base / med:.2f}x ort fp32")
print("load average at the end", os.getloadavg())
