"""`hpclab bench compression`: bytes on the wire and loss after K steps, per compression hook.

    hpclab bench compression                 # 2 processes, 150 steps of the digits MLP
    hpclab bench compression --world-size 3 --steps 300

Every variant trains the same MLP from the same weights on the same per-rank shards with
our DistributedDataParallel; only the comm hook differs. The table shows, against the
uncompressed run measured in the same invocation, the bytes each rank sent per step and
the final training loss. Error feedback is what lets the lossy hooks land where the
uncompressed run does; "top-k, no EF" shows what happens without it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from hpclab.cluster.spawn import run_local
from hpclab.parallel.compression import (
    CompressionState,
    PowerSGDState,
    TopKState,
    allreduce_bytes,
    fp16_hook,
    int8_hook,
    powersgd_hook,
    topk_hook,
)
from hpclab.parallel.ddp import DistributedDataParallel
from hpclab.problems.digits import load_digits_split
from hpclab.problems.models import make_mlp

VARIANTS = {
    # name: (hook, state factory given the DDP; None = plain averaging)
    "none": (None, None),
    "fp16": (fp16_hook, lambda ddp: CompressionState.for_ddp(ddp)),
    "int8": (int8_hook, lambda ddp: CompressionState.for_ddp(ddp)),
    "top-k 1%": (topk_hook, lambda ddp: TopKState.for_ddp(ddp, ratio=0.01)),
    "top-k 1%, no EF": (topk_hook,
                        lambda ddp: TopKState.for_ddp(ddp, ratio=0.01, error_feedback=False)),
    "PowerSGD r=2": (powersgd_hook, lambda ddp: PowerSGDState.for_ddp(ddp, rank=2)),
    # one matrix per weight, biases uncompressed: the layout of torch's powerSGD_hook
    "PowerSGD r=2, per tensor": (powersgd_hook, lambda ddp: PowerSGDState.for_ddp(
        ddp, rank=2, per_tensor=True)),
}


@dataclass
class Result:
    variant: str
    bytes_per_step: float
    final_loss: float


def train_with_hook(ctx, variant: str, steps: int = 150, batch: int = 32, lr: float = 0.05,
                    seed: int = 0) -> Result:
    """Data-parallel SGD (momentum 0.9) on the digits MLP with one compression variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    split = load_digits_split(seed=seed)
    x, y = split.X_train[ctx.rank::ctx.world_size], split.y_train[ctx.rank::ctx.world_size]
    model = make_mlp(64, (64,), 10, seed=seed)
    ddp = DistributedDataParallel(model, bucket_cap_mb=0.005, algorithm="torch",
                                  timeout=ctx.timeout)
    hook, make_state = VARIANTS[variant]
    state = make_state(ddp) if make_state else None
    if hook is not None:
        ddp.register_comm_hook(state, hook)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    n_batches = len(x) // batch
    for t in range(steps):
        i = t % n_batches
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x[i * batch:(i + 1) * batch]),
                                          y[i * batch:(i + 1) * batch]).backward()
        opt.step()
    ddp.close()
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(model(split.X_train), split.y_train))
    n = sum(p.numel() for p in model.parameters())
    sent = state.bytes_sent / steps if state else allreduce_bytes(4 * n, ctx.world_size)
    return Result(variant, sent, loss)


def compare(world_size: int = 2, steps: int = 150, variants=tuple(VARIANTS)) -> list[Result]:
    return [run_local(train_with_hook, world_size, v, steps, timeout=600)[0] for v in variants]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="hpclab bench compression", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args(argv)
    results = compare(args.world_size, args.steps)
    base = results[0]
    print(f"gradient compression, {args.world_size} processes, {args.steps} steps "
          f"(digits MLP, our DDP over gloo)")
    print(f"{'variant':<24} {'bytes/step/rank':>16} {'vs none':>8} {'final loss':>11} "
          f"{'Δ loss':>8}")
    for r in results:
        print(f"{r.variant:<24} {r.bytes_per_step:>16,.0f} {r.bytes_per_step / base.bytes_per_step:>7.3f}x "
              f"{r.final_loss:>11.4f} {r.final_loss - base.final_loss:>+8.4f}")
    return 0
