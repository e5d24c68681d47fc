#!/usr/bin/env python3
"""Post-training static int8 quantization of a TorchScript model.

fedge-export quantize runs this (LibTorch's C++ API cannot quantize): it
writes the float model as TorchScript (a trace of a zoo network, or a
user's archive) and the calibration examples as .npy; this script applies
PyTorch's graph mode quantization to the TorchScript module
(torch.ao.quantization.quantize_jit: batch norm folded into convolutions,
int8 weights, uint8 activations whose ranges are observed on the
calibration examples) and saves the int8 module as TorchScript. Needs
Debian's python3-torch and python3-numpy.

    /usr/bin/python3 scripts/quantize_int8.py --model float.pt \\
        --calibration examples.npy --out int8.pt [--engine qnnpack]

The int8 module runs in PyTorch and LibTorch with the same quantized engine
("qnnpack": ARM and x86; "onednn": x86). Prints "ok size_bytes=S" and exits
0, or prints the error and exits 1.
"""

import argparse
import os
import warnings

import fedge_tool

CALIBRATION_BATCH = 256


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="float TorchScript file")
    parser.add_argument("--calibration", required=True,
                        help=".npy float32 examples [N, input_shape...]")
    parser.add_argument("--out", required=True, help="int8 TorchScript file to write")
    parser.add_argument("--engine", default="qnnpack", choices=["qnnpack", "onednn", "fbgemm", "x86"])
    args = parser.parse_args()

    import numpy as np
    import torch
    from torch.ao.quantization import get_default_qconfig, quantize_jit

    if args.engine not in torch.backends.quantized.supported_engines:
        raise SystemExit(f"--engine {args.engine} is not in this PyTorch "
                         f"(it has {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = args.engine
    examples = torch.from_numpy(np.load(args.calibration)).float()
    model = torch.jit.load(args.model, map_location="cpu")
    model.eval()

    def calibrate(m, data):
        with torch.no_grad():
            for begin in range(0, len(data), CALIBRATION_BATCH):
                m(data[begin:begin + CALIBRATION_BATCH])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_jit's deprecation notes.
        quantized = quantize_jit(model, {"": get_default_qconfig(args.engine)},
                                 calibrate, [examples], inplace=False)
    fedge_tool.write_atomically(args.out,
                                lambda tmp: torch.jit.save(quantized, tmp))
    print(f"ok size_bytes={os.path.getsize(args.out)}")


if __name__ == "__main__":
    fedge_tool.run(main)
