"""`hpclab bench memory`: bytes per rank and step time of DP and ZeRO 1/2/3, against torch.

    hpclab bench memory                          # tiny transformer on 2 and 4 local ranks
    hpclab bench memory --ranks 2 --model mlp --steps 10 --repeats 5 --out out/bench

For each rank count N_d (forked processes in one gloo group, hpclab.cluster.run_local),
every rank trains the same model with a fixed per-rank batch and torch.optim.Adam under

    dp           hpclab.parallel.DistributedDataParallel(algorithm="ring")
    zero1/2/3    hpclab.parallel.zero.ZeRO1 / ZeRO2 / ZeRO3 (stage 3: one unit per block)
    torch-zero1  torch DDP + torch.distributed.optim.ZeroRedundancyOptimizer (stage 1)
    torch-fsdp2  torch.distributed.fsdp.fully_shard on each block and the root (stage 3)

and reports, per rank (the largest over the ranks):

    bytes held after the second backward, by category (hpclab.memory.measure.held_states):
    parameters, gradients, optimizer state, and each divided by Ψ (fp32 Adam: DP holds
    4 + 4 + 8 bytes per parameter; stage s divides the first s of the terms by N_d);
    the median step time, interleaved repeat by repeat so a busy machine slows all alike,
    and its ratio to torch's implementation of the same stage (target: <= 1.2x).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import asdict

import torch
import torch.distributed as dist
import torch.nn.functional as F

from hpclab.memory.measure import held_states

IMPLS = ("dp", "zero1", "zero2", "zero3", "torch-zero1", "torch-fsdp2")
STAGE = {"dp": 0, "zero1": 1, "zero2": 2, "zero3": 3, "torch-zero1": 1, "torch-fsdp2": 3}
REFERENCE = {"zero1": "torch-zero1", "zero2": "torch-zero1", "zero3": "torch-fsdp2"}
TARGET = 1.2      # our step time / torch's, same stage


def build(model: str, seed: int = 0):
    """(model, stage-3 units, batch x, y, loss function), same weights on every rank."""
    from hpclab.problems.models import make_mlp
    from hpclab.problems.transformer import lm_loss, tiny_transformer
    g = torch.Generator().manual_seed(1)
    if model == "mlp":
        net = make_mlp(64, hidden=(256, 256), out_features=10, seed=seed)
        units = [m for m in net if isinstance(m, torch.nn.Linear)]
        return net, units, torch.randn(64, 64, generator=g), \
            torch.randint(0, 10, (64,), generator=g), F.cross_entropy
    if model == "transformer":
        net = tiny_transformer(65, seed=seed, block_size=64)
        x = torch.randint(0, 65, (8, 64), generator=g)
        return net, list(net.blocks), x, torch.randint(0, 65, (8, 64), generator=g), lm_loss
    raise ValueError(f"model must be 'mlp' or 'transformer', got {model!r}")


def wrap(impl: str, net, units, mesh):
    """(the module to call, the optimizer) of one implementation."""
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.optim import ZeroRedundancyOptimizer

    from hpclab.parallel import DistributedDataParallel
    from hpclab.parallel.zero import zero_optimizer
    lr = 1e-3
    if impl == "dp":
        return DistributedDataParallel(net, algorithm="ring"), \
            torch.optim.Adam(net.parameters(), lr=lr)
    if impl.startswith("zero"):
        stage = STAGE[impl]
        return net, zero_optimizer(stage, net, torch.optim.Adam,
                                   units=units if stage == 3 else None, lr=lr)
    if impl == "torch-zero1":
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        return ddp, ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=torch.optim.Adam,
                                            lr=lr)
    for u in units:
        fully_shard(u, mesh=mesh)
    fully_shard(net, mesh=mesh)
    return net, torch.optim.Adam(net.parameters(), lr=lr)


def measure_on_rank(ctx, model: str, steps: int, repeats: int) -> dict:
    """Bytes held (after the second backward) and median step time of every impl."""
    from torch.distributed.device_mesh import init_device_mesh

    warnings.filterwarnings("ignore", message="FSDP2-wrapped module")
    mesh = init_device_mesh("cpu", (ctx.world_size,))
    runs = {}
    for impl in IMPLS:
        net, units, x, y, loss_fn = build(model)
        runs[impl] = (net, *wrap(impl, net, units, mesh), x, y, loss_fn)
    held, times = {}, {impl: [] for impl in IMPLS}
    for impl, (net, module, opt, x, y, loss_fn) in runs.items():
        for step in range(2):
            loss_fn(module(x), y).backward()
            if step == 1:
                held[impl] = asdict(held_states(net, opt))
            opt.step()
            opt.zero_grad(set_to_none=True)
    for _ in range(repeats):
        for impl, (net, module, opt, x, y, loss_fn) in runs.items():
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(steps):
                loss_fn(module(x), y).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            times[impl].append((time.perf_counter() - t0) / steps)
    runs["dp"][1].close()
    psi = sum(p.numel() for p in build(model)[0].parameters())
    return {"psi": psi, "held": held,
            "step": {impl: statistics.median(t) for impl, t in times.items()}}


def memory_table(model: str, ranks: list[int], steps: int, repeats: int) -> list[dict]:
    from hpclab.cluster.spawn import run_local
    rows = []
    for n in ranks:
        res = run_local(measure_on_rank, n, model, steps, repeats, timeout=600)
        for impl in IMPLS:
            held = {k: max(r["held"][impl][k] for r in res) for k in res[0]["held"][impl]}
            rows.append({"model": model, "ranks": n, "impl": impl, "stage": STAGE[impl],
                         "psi": res[0]["psi"], **held,
                         "step_ms": 1e3 * max(r["step"][impl] for r in res)})
        for r in rows[-len(IMPLS):]:
            ref = REFERENCE.get(r["impl"])
            r["vs_torch"] = (r["step_ms"] / next(q["step_ms"] for q in rows[-len(IMPLS):]
                                                  if q["impl"] == ref)) if ref else None
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [("| model | ranks | impl | stage | Ψ | parameters B | gradients B | optimizer B "
              "| total B | B/Ψ (θ + g + opt) | step ms | vs torch |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        total = r["parameters"] + r["gradients"] + r["optimizer"]
        per = " + ".join(f"{r[k] / r['psi']:.2f}" for k in ("parameters", "gradients",
                                                            "optimizer"))
        ratio = f"{r['vs_torch']:.2f}x {REFERENCE[r['impl']]}" if r["vs_torch"] else "—"
        lines.append(f"| {r['model']} | {r['ranks']} | {r['impl']} | {r['stage']} | "
                     f"{r['psi']} | {r['parameters']} | {r['gradients']} | "
                     f"{r['optimizer']} | {total} | {per} | {r['step_ms']:.2f} | {ratio} |")
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    return [f"{'PASS' if r['vs_torch'] <= TARGET else 'FAIL'}  {r['model']} on {r['ranks']} "
            f"ranks: {r['impl']} {r['vs_torch']:.2f}x {REFERENCE[r['impl']]}'s step time "
            f"(target <= {TARGET}x)" for r in rows if r["vs_torch"] is not None]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hpclab bench memory", description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--model", default="transformer", choices=["transformer", "mlp"])
    ap.add_argument("--steps", type=int, default=4, help="steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="folder for memory.md (the table)")
    args = ap.parse_args(argv)
    if min(args.ranks) < 1 or args.steps < 1 or args.repeats < 1:
        ap.error(f"--ranks, --steps and --repeats must be >= 1, got {args.ranks}, "
                 f"{args.steps}, {args.repeats}")
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])   # import torch._dynamo once
    rows = memory_table(args.model, sorted(args.ranks), args.steps, args.repeats)
    text = format_table(rows) + "\n\n" + "\n".join(targets(rows))
    print(text, flush=True)
    if args.out:
        from pathlib import Path
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "memory.md").write_text(text + "\n")
    return 0
