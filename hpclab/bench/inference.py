"""`hpclab bench inference`: throughput of distributed inference against one process.

    hpclab bench inference                  # 1, 2 processes; data- and pipeline-parallel
    hpclab bench inference --samples 20000 --world-sizes 1 2 4

Each variant predicts the same inputs with the same MLP (eval mode, no gradients) in
processes joined by gloo (one thread each); the table shows samples/s and the speed-up
over the single process measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from hpclab.cluster.spawn import run_local
from hpclab.parallel.inference import data_parallel_predict, predict
from hpclab.parallel.pipeline import pipeline_forward, split_sequential


def _model(width: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)).eval()


def _timed(ctx, mode: str, samples: int, width: int, repeats: int) -> float:
    torch.set_num_threads(1)
    model = _model(width)
    x = torch.randn(samples, 64, generator=torch.Generator().manual_seed(0))
    stage = split_sequential(model, ctx.world_size)[ctx.rank] if mode == "pipeline" else None
    best = float("inf")
    for _ in range(repeats):
        if ctx.world_size > 1:
            torch.distributed.barrier(group=ctx.group)
        t0 = time.perf_counter()
        if mode == "single":
            predict(model, x)
        elif mode == "data":
            data_parallel_predict(ctx, model, x)
        else:
            pipeline_forward(stage, ctx, x if ctx.rank == 0 else None, n_micro=16)
        if ctx.world_size > 1:
            torch.distributed.barrier(group=ctx.group)
        best = min(best, time.perf_counter() - t0)
    return samples / best


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="hpclab bench inference", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--world-sizes", type=int, nargs="+", default=[2])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    single = run_local(_timed, 1, "single", args.samples, args.width, args.repeats)[0]
    print(f"inference, {args.samples} samples, MLP width {args.width}, 1 thread per process")
    print(f"{'variant':<22} {'samples/s':>12} {'speed-up':>9}")
    print(f"{'1 process':<22} {single:>12,.0f} {1.0:>8.2f}x")
    for p in args.world_sizes:
        for mode in ("data", "pipeline"):
            rate = run_local(_timed, p, mode, args.samples, args.width, args.repeats,
                             timeout=600)[0]
            print(f"{f'{mode}-parallel, p={p}':<22} {rate:>12,.0f} {rate / single:>8.2f}x")
    return 0
