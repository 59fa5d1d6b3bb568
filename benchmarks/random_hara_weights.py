"""Write a ResNeXt weights file in the published Hara et al. format with random weights (the
Kinetics checkpoint cannot be downloaded here), so the study path (`--preset study
--encoder-weights FILE`) runs on demo data the way tests/models/test_models.py builds one.

    .venv/bin/python benchmarks/random_hara_weights.py r101-random-hara.pth [--encoder resnext101-kinetics]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gifsent_models.registry import create_encoder


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--encoder", default="resnext101-kinetics")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    enc = create_encoder(args.encoder, random_init=True)
    for m in enc.modules():  # random, but not degenerate, batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    state = {f"module.{k}": v for k, v in enc.state_dict().items()}
    state["module.fc.weight"] = torch.randn(400, enc.feature_dim)
    state["module.fc.bias"] = torch.randn(400)
    torch.save({"epoch": 1, "arch": args.encoder, "state_dict": state}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
