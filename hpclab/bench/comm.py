"""`hpclab bench comm`: every all-reduce algorithm against gloo, measured against the model.

    hpclab bench comm --engines 2            # 4 KiB … 64 MiB, table + plot (comm_bench.png)
    hpclab bench comm --engines 4 --out fig.png
    hpclab bench comm --quick                # CI: 3 sizes, 2 repeats, local processes

One run: measure α and β by ping-pong between ranks 0 and 1 and γ by local additions, fit
the α–β–γ model (hpclab.comm.model), time hpclab.comm.all_reduce with every algorithm and
torch.distributed's own ("torch" = gloo on CPUs) at each size, and print measured vs
predicted time, bus bandwidth (algbw·2(p−1)/p), ratios against gloo and the model's choice
of algorithm per size. The cluster is real ipyparallel engines (hpclab.connect) unless
--local asks for forked processes (hpclab.cluster.spawn.run_local); the output says which.
Times are the best of --repeats runs, each from a barrier to the slowest rank's finish.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import torch

from hpclab.comm import ALGORITHMS, model
from hpclab.comm.measure import exchange, ping_pong, reduction_times, time_all_reduces

KiB, MiB = 1 << 10, 1 << 20
SIZES = [4 * KiB * 4 ** k for k in range(8)]          # 4 KiB, 16 KiB, …, 64 MiB
QUICK_SIZES = [4 * KiB, 64 * KiB, 1 * MiB]
REFERENCE = "torch"


@dataclass
class BenchConfig:
    engines: int = 2
    sizes: list[int] = field(default_factory=lambda: list(SIZES))
    repeats: int = 10
    out: str = "comm_bench.png"
    local: bool = False          # forked processes instead of ipyparallel engines
    timeout: float = 600.0


def repeats_for(nbytes: int, repeats: int) -> int:
    """More runs for small sizes: they are cheap, and noisier on a shared machine."""
    return repeats * (4 if nbytes <= MiB else 2)


def measure(ctx, sizes: list[int], repeats: int) -> dict:
    """SPMD on every rank: α/β/γ measurements and all-reduce times (same on every rank).
    Ping-pong, exchange and every algorithm take turns run by run, so that the model's
    parameters and the times it predicts are measured under the same load."""
    results = {"ping_pong": {}, "exchange": {}, "reduce": {}, "times": {}}
    for nbytes in [4, 64, KiB] + list(sizes):
        x = torch.ones(max(nbytes // 4, 1))
        best: dict[str, float] = {}
        for i in range(repeats_for(nbytes, repeats) + 1):     # run 0 is a warm-up
            turn = {"ping_pong": ping_pong([nbytes], repeats=1, timeout=ctx.timeout)[nbytes],
                    "exchange": exchange([nbytes], repeats=1, timeout=ctx.timeout)[nbytes]}
            if nbytes in sizes:
                turn.update(time_all_reduces(x, ALGORITHMS["all_reduce"], repeats=1,
                                             warmup=0, timeout=ctx.timeout))
            if i > 0:
                best = {k: min(t, best.get(k, float("inf"))) for k, t in turn.items()}
        results["ping_pong"][nbytes] = best.pop("ping_pong")
        results["exchange"][nbytes] = best.pop("exchange")
        if best:
            results["times"][nbytes] = best
    results["reduce"] = slowest_rank(reduction_times(sizes, repeats=4 * repeats))
    return results


def slowest_rank(times: dict[int, float]) -> dict[int, float]:
    """Each size's time on the slowest rank (all ranks ran at once and shared the cores)."""
    t = torch.tensor(list(times.values()), dtype=torch.float64)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return dict(zip(times, t.tolist()))


def run(cfg: BenchConfig) -> tuple[dict, str]:
    if cfg.local:
        from hpclab.cluster.spawn import run_local
        where = f"{cfg.engines} local processes (run_local, gloo over 127.0.0.1)"
        return run_local(measure, cfg.engines, cfg.sizes, cfg.repeats,
                         timeout=cfg.timeout)[0], where
    import hpclab
    with hpclab.connect(n=cfg.engines) as cluster:
        where = f"{cluster.world_size} ipyparallel engines (hpclab.connect, hosts: " \
                f"{', '.join(sorted(set(cluster.hosts)))})"
        return cluster.run(measure, cfg.sizes, cfg.repeats, timeout=cfg.timeout)[0], where


def fit(results: dict) -> model.Params:
    return model.fit(results["ping_pong"], results["reduce"], results["exchange"])


def table(results: dict, params: model.Params, p: int) -> list[dict]:
    rows = []
    for nbytes, times in results["times"].items():
        ref = times[REFERENCE]
        for algorithm, seconds in times.items():
            predicted = model.predict(algorithm, nbytes, p, params)
            rows.append({"bytes": nbytes, "algorithm": algorithm, "measured_ms": 1e3 * seconds,
                         "model_ms": 1e3 * predicted, "model_error": predicted / seconds - 1,
                         "busbw_GBs": model.bus_bandwidth(nbytes, seconds, p) / 1e9,
                         "busbw_vs_gloo": ref / seconds, "time_vs_gloo": seconds / ref})
    return rows


def format_table(rows: list[dict]) -> str:
    head = (f"{'size':>8} {'algorithm':<18} {'measured ms':>11} {'model ms':>9} "
            f"{'model err':>9} {'busbw GB/s':>10} {'busbw/gloo':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{human(r['bytes']):>8} {r['algorithm']:<18} {r['measured_ms']:>11.3f} "
                     f"{r['model_ms']:>9.3f} {r['model_error']:>+9.0%} {r['busbw_GBs']:>10.3f} "
                     f"{r['busbw_vs_gloo']:>10.2f}")
    return "\n".join(lines)


def format_machine(results: dict) -> str:
    lines = [f"{'size':>8} {'ping-pong ms':>12} {'exchange ms':>11} {'add ms':>8}"]
    for nbytes, one_way in results["ping_pong"].items():
        add = results["reduce"].get(nbytes)
        lines.append(f"{human(nbytes):>8} {1e3 * one_way:>12.3f} "
                     f"{1e3 * results['exchange'][nbytes]:>11.3f} "
                     f"{'' if add is None else f'{1e3 * add:.3f}':>8}")
    return "\n".join(lines)


def choices(results: dict, params: model.Params, p: int) -> str:
    lines = [f"{'size':>8}  {'model picks':<18} {'fastest measured':<18} (torch excluded)"]
    for nbytes, times in results["times"].items():
        ours = {a: t for a, t in times.items() if a != REFERENCE}
        lines.append(f"{human(nbytes):>8}  {model.best_algorithm(nbytes, p, params):<18} "
                     f"{min(ours, key=ours.get):<18}")
    return "\n".join(lines)


def targets(rows: list[dict], p: int) -> list[str]:
    """The course's targets for this benchmark, each with PASS/FAIL."""
    at = {(r["bytes"], r["algorithm"]): r for r in rows}
    sizes = sorted({r["bytes"] for r in rows})
    out = []

    def check(ok: bool, text: str):
        out.append(f"{'PASS' if ok else 'FAIL'}  {text}")

    big = [n for n in sizes if n >= 16 * MiB]
    if big:
        worst = min(at[n, "ring"]["busbw_vs_gloo"] for n in big)
        check(worst >= 0.8, f"ring busbw >= 0.8x gloo's at >= 16 MiB (worst {worst:.2f}x)")
    if 4 * KiB in sizes:
        ratio = at[4 * KiB, "ring"]["time_vs_gloo"]
        check(ratio <= 3, f"ring at 4 KiB within 3x of gloo's time ({ratio:.2f}x)")
    mib = [r for r in rows if r["bytes"] >= MiB and r["algorithm"] != REFERENCE]
    if mib:
        bad = [f"{r['algorithm']}@{human(r['bytes'])} {r['model_error']:+.0%}" for r in mib
               if abs(r["model_error"]) > 0.25]
        check(not bad, f"model within ±25% of measured for >= 1 MiB "
                       f"({len(mib) - len(bad)}/{len(mib)} rows" +
              (f"; off: {', '.join(bad)})" if bad else ")"))
    if p >= 4 and 16 * MiB in sizes:
        slow = at[16 * MiB, "naive"]["measured_ms"] / at[16 * MiB, "ring"]["measured_ms"]
        check(slow > 1.2, f"naive slower than ring at 16 MiB on {p} ranks ({slow:.2f}x)")
    return out


def plot(rows: list[dict], p: int, path: str) -> None:
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_bw) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, algorithm in enumerate(ALGORITHMS["all_reduce"]):
        mine = [r for r in rows if r["algorithm"] == algorithm]
        x = [r["bytes"] for r in mine]
        color = f"C{i}"
        ax_t.loglog(x, [r["measured_ms"] for r in mine], "o", color=color, label=algorithm)
        if algorithm != REFERENCE:
            ax_t.loglog(x, [r["model_ms"] for r in mine], "-", color=color, alpha=0.6)
        ax_bw.semilogx(x, [r["busbw_GBs"] for r in mine], "o-", color=color, label=algorithm)
    ax_t.set(xlabel="message size (bytes)", ylabel="all-reduce time (ms)",
             title=f"measured (dots) vs α–β–γ model (lines), p = {p}")
    ax_bw.set(xlabel="message size (bytes)", ylabel="bus bandwidth (GB/s)",
              title="busbw = algbw · 2(p−1)/p")
    ax_t.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def human(nbytes: int) -> str:
    for unit, size in (("MiB", MiB), ("KiB", KiB)):
        if nbytes >= size:
            return f"{nbytes // size} {unit}"
    return f"{nbytes} B"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hpclab bench comm", description=__doc__.split("\n")[0])
    ap.add_argument("--engines", type=int, default=2, help="number of ranks p (default 2)")
    ap.add_argument("--repeats", type=int, default=10,
                    help="runs per measurement, best kept (x4 up to 1 MiB, x2 above)")
    ap.add_argument("--out", default="comm_bench.png", help="where to save the plot")
    ap.add_argument("--local", action="store_true",
                    help="forked local processes instead of ipyparallel engines")
    ap.add_argument("--quick", action="store_true",
                    help="CI mode: sizes 4 KiB, 64 KiB, 1 MiB; 2 repeats; local processes")
    args = ap.parse_args(argv)
    if args.engines < 2:
        ap.error(f"--engines must be >= 2 (ping-pong needs two ranks), got {args.engines}")
    cfg = BenchConfig(engines=args.engines, repeats=args.repeats, out=args.out,
                      local=args.local or args.quick)
    if args.quick:
        cfg.sizes, cfg.repeats = list(QUICK_SIZES), 2
    start = time.time()
    results, where = run(cfg)
    params, p = fit(results), cfg.engines
    rows = table(results, params, p)
    print(f"hpclab bench comm: all-reduce on {where}, p = {p}, float32, best of "
          f"{cfg.repeats}; reference: torch.distributed.all_reduce (gloo)")
    print("\nthe machine: one-way ping-pong (ranks 0-1), exchange (all ranks in pairs at once),"
          " local add")
    print(format_machine(results))
    print(f"fitted model: {params}\n")
    print(format_table(rows))
    print("\nbest algorithm per size")
    print(choices(results, params, p))
    print("\ntargets")
    print("\n".join(targets(rows, p)))
    import matplotlib
    matplotlib.use("Agg")   # a file, no window: works on a headless node
    plot(rows, p, cfg.out)
    print(f"\nplot: {cfg.out}  ({time.time() - start:.0f} s)")
    return 0
