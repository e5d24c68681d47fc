#!/usr/bin/env python3
"""Converts a TorchScript model that fedge exported to ONNX.

fedge-export runs this (LibTorch's C++ API has no ONNX exporter): it writes
the model as TorchScript, then this script loads it with torch.jit.load and
calls torch.onnx.export with a dummy batch of the model's input shape. The
ONNX graph takes "input" [batch, input_shape...] (float32) and returns
"logits" [batch, num_classes]; the batch axis is dynamic. The result is
checked with onnx.checker (full check: with shape inference). Needs
Debian's python3-torch and python3-onnx.

    /usr/bin/python3 scripts/export_onnx.py --model m.pt --out m.onnx \\
        --input-shape 1,28,28 [--opset 13]

Prints "ok opset=N size_bytes=S" and exits 0, or prints the error and
exits 1.
"""

import argparse
import os
import warnings

import fedge_tool


def parse_shape(text):
    try:
        shape = [int(d) for d in text.split(",")]
    except ValueError:
        raise SystemExit(f"--input-shape must be comma-separated integers, got {text!r}")
    if not shape or min(shape) < 1:
        raise SystemExit(f"--input-shape needs dimensions >= 1, got {text!r}")
    return shape


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="TorchScript file (.pt)")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--input-shape", required=True, help="one example's shape, e.g. 1,28,28")
    parser.add_argument("--opset", type=int, default=13, help="ONNX opset (13-17)")
    args = parser.parse_args()
    shape = parse_shape(args.input_shape)

    import torch  # After argument parsing: importing torch takes a second.
    import onnx

    model = torch.jit.load(args.model, map_location="cpu")
    model.eval()
    dummy = torch.zeros([1] + shape)

    def write(tmp):
        with warnings.catch_warnings():
            # The exporter warns about ScriptModule input names it cannot
            # infer.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (dummy,), tmp,
                opset_version=args.opset,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                do_constant_folding=True)
        onnx.checker.check_model(onnx.load(tmp), full_check=True)

    fedge_tool.write_atomically(args.out, write)
    print(f"ok opset={args.opset} size_bytes={os.path.getsize(args.out)}")


if __name__ == "__main__":
    fedge_tool.run(main)
