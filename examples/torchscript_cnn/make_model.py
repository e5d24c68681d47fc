#!/usr/bin/env python3
"""Makes model.pt: a small MNIST CNN with BatchNorm, as a TorchScript archive.

fedge trains any TorchScript module whose forward(x) maps a float batch
[N, 1, 28, 28] to logits [N, 10]; its parameters and buffers (BatchNorm's
running statistics and batch counter included) are federated by name. This
script defines such a module, scripts it with torch.jit.script (so that
train() and eval() switch BatchNorm between batch and running statistics)
and saves it. The weights are seeded, so the same seed gives the same
archive contents.

    python3 make_model.py                    # writes ./model.pt
    python3 make_model.py --out /tmp/m.pt --seed 3
"""

import argparse

import torch
from torch import nn


class SmallCnn(nn.Module):
    """conv-BN-ReLU-pool twice, then one linear layer: 1x28x28 -> 10."""

    def __init__(self, channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(torch.flatten(x, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="model.pt", help="archive to write")
    parser.add_argument("--seed", type=int, default=1, help="weights seed")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = SmallCnn()
    module = torch.jit.script(model)
    module.save(args.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {params} parameters")


if __name__ == "__main__":
    main()
