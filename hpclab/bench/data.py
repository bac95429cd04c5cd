"""`hpclab bench data`: does prefetching pay? Training throughput with slow data loading.

    hpclab bench data                  # 60 steps per variant
    hpclab bench data --steps 100 --workers 2

The digits images are up-sampled to 32×32 and augmented per sample (a random rotation
with grid_sample, plus noise) — a CPU cost like decoding and augmenting real images.
Variants, all in this run, as samples/s and the ratio to the plain loop:

    plain loop            DataLoader(num_workers=0): load, then train, in sequence
    worker processes      DataLoader(num_workers=k, persistent_workers=True)
    prefetch thread       Prefetcher(DataLoader(num_workers=0)): loading overlaps training
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hpclab.parallel.prefetch import Prefetcher
from hpclab.problems.digits import load_digits_split


class AugmentedDigits(Dataset):
    """Digits at 32×32 with a random rotation (±15°) and noise, computed per sample."""

    def __init__(self, size: int = 32):
        split = load_digits_split()
        self.x = split.X_train.view(-1, 1, 8, 8)
        self.y = split.y_train
        self.size = size

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = nn.functional.interpolate(self.x[i:i + 1], size=self.size, mode="bilinear",
                                        align_corners=False)
        angle = (torch.rand(()) - 0.5) * (math.pi / 6)
        rot = torch.tensor([[angle.cos(), -angle.sin(), 0.0], [angle.sin(), angle.cos(), 0.0]])
        grid = nn.functional.affine_grid(rot[None], list(img.shape), align_corners=False)
        img = nn.functional.grid_sample(img, grid, align_corners=False)
        return (img + 0.05 * torch.randn_like(img))[0], self.y[i]


def _model(size: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, 10))


def _throughput(batches, steps: int, size: int) -> float:
    model = _model(size)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    seen, it = 0, iter(batches)
    t0 = time.perf_counter()
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(batches)
            x, y = next(it)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        seen += len(y)
    return seen / (time.perf_counter() - t0)


def run(steps: int = 60, workers: int = 2, batch: int = 64, size: int = 32,
        repeats: int = 2) -> list[tuple]:
    """Best samples/s of each variant over `repeats` rounds, variants interleaved so
    that a busy machine slows all of them alike."""
    data = AugmentedDigits(size)

    def loader(k):
        return DataLoader(data, batch_size=batch, shuffle=True, num_workers=k,
                          persistent_workers=k > 0,
                          generator=torch.Generator().manual_seed(0))

    variants = {"plain loop": lambda: loader(0),
                f"worker processes (k={workers})": lambda: loader(workers),
                "prefetch thread": lambda: Prefetcher(loader(0), depth=2)}
    best = dict.fromkeys(variants, 0.0)
    for _ in range(repeats):
        for name, make in variants.items():
            best[name] = max(best[name], _throughput(make(), steps, size))
    return list(best.items())


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="hpclab bench data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    rows = run(args.steps, args.workers, args.batch, repeats=args.repeats)
    print(f"data loading, augmented digits 32x32, batch {args.batch}, {args.steps} steps, "
          f"{torch.get_num_threads()} compute threads")
    print(f"{'variant':<26} {'samples/s':>10} {'vs plain':>9}")
    for name, rate in rows:
        print(f"{name:<26} {rate:>10,.0f} {rate / rows[0][1]:>8.2f}x")
    return 0
