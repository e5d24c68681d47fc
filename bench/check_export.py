#!/usr/bin/env python3
"""Checks fedge-export's files with PyTorch and ONNX, independently of fedge.

    /usr/bin/python3 bench/check_export.py --name cnn \\
        --features f.npy --logits l.npy [--torchscript m.pt] [--onnx m.onnx]

FEATURES and LOGITS are what `fedge-export evaluate --features_out
--logits_out` wrote: examples and fedge's own logits (LibTorch). The
TorchScript file runs in Python torch (torch.jit.load) on the examples;
the ONNX file goes through onnx.checker (full check, with shape
inference). Prints, per file:

    model=NAME format=torchscript max_abs_diff=D runtime=python-torch
    model=NAME format=onnx checker=ok opset=N

Exits 1 on an error (a failed check, a file that does not load).
"""

import argparse
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--logits", required=True)
    parser.add_argument("--torchscript")
    parser.add_argument("--onnx")
    args = parser.parse_args()

    import numpy as np
    features = np.load(args.features)
    logits = np.load(args.logits)
    if args.torchscript:
        import torch
        module = torch.jit.load(args.torchscript, map_location="cpu")
        module.eval()
        with torch.no_grad():
            got = module(torch.from_numpy(features)).numpy()
        diff = float(np.abs(got - logits).max())
        print(f"model={args.name} format=torchscript max_abs_diff={diff:.3g} "
              f"runtime=python-torch examples={len(features)}")
    if args.onnx:
        import onnx
        model = onnx.load(args.onnx)
        onnx.checker.check_model(model, full_check=True)
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        print(f"model={args.name} format=onnx checker=ok opset={opset}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        print(f"check_export: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
