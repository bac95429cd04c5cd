"""`hpclab bench comm`: every all-reduce algorithm against gloo, measured against the model.

    hpclab bench comm --engines 2            # 4 KiB … 64 MiB, table + plot (comm_bench.png)
    hpclab bench comm --engines 4 --out fig.png
    hpclab bench comm --quick                # CI: 3 sizes, 2 repeats, local processes

One run: measure α and β by ping-pong between ranks 0 and 1 and γ by local additions, fit
the α–β–γ model (hpclab.comm.cost_model), time hpclab.comm.all_reduce with every algorithm and
torch.distributed's own ("torch" = gloo on CPUs) at each size, and print measured vs
predicted time, bus bandwidth (algbw·2(p−1)/p), ratios against gloo and the model's choice
of algorithm per size. The cluster is real ipyparallel engines (hpclab.connect) unless
--local asks for forked processes (hpclab.cluster.spawn.run_local); the output says which.
Times are medians of --repeats runs (--statistic min: the best), each from a barrier to the
slowest rank's finish.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import torch

from hpclab.comm import ALGORITHMS, cost_model
from hpclab.comm.measure import (
    exchange,
    one_way,
    ping_pong,
    reduction_times,
    slowest_rank,
    time_all_reduces,
)
from hpclab.comm.ring_pipelined import SEGMENT_BYTES

KiB, MiB = 1 << 10, 1 << 20
SIZES = [4 * KiB * 4 ** k for k in range(8)]          # 4 KiB, 16 KiB, …, 64 MiB
QUICK_SIZES = [4 * KiB, 64 * KiB, 1 * MiB]
REFERENCE = "torch"
# what `measure` times for every message size: ping-pong, one-way message, exchange, the
# two reducing steps (one-way and exchange with the receiver adding) and a local add
KINDS = ("ping_pong", "one_way", "exchange", "one_way_reduce", "exchange_reduce", "reduce")


@dataclass
class BenchConfig:
    engines: int = 2
    sizes: list[int] = field(default_factory=lambda: list(SIZES))
    repeats: int = 20
    statistic: str = "median"    # or "min"
    out: str = "comm_bench.png"
    local: bool = False          # forked processes instead of ipyparallel engines
    timeout: float = 600.0


def repeats_for(nbytes: int, repeats: int) -> int:
    """More runs for small sizes: they are cheap, and noisier on a shared machine."""
    return repeats * (4 if nbytes <= MiB else 2)


def measure(ctx, sizes: list[int], repeats: int, statistic: str = "median") -> dict:
    """SPMD on every rank: the machine's message costs and all-reduce times (same on every
    rank). For each all-reduce size n, every run measures, in turn, the steps the
    algorithms take for it (ping-pong, one-way message, exchange, the one-way and exchange
    steps that add what arrives, and a local add, of n, n/2, …, n/p bytes: `part_sizes`)
    and then every algorithm, so that the model's parts and the collectives it predicts
    share the same load, caches and memory state. One-way messages and
    exchanges are timed like the collectives, from a barrier to the slower rank's finish;
    the ping-pong (half a round trip, the textbook α + nβ) feeds the fitted α–β–γ model.

    Each figure is the median of its runs (statistic="min": the best). The model adds
    several measured parts, and a sum of minima is smaller than the minimum of the sum:
    a collective that needs 3 steps rarely gets 3 lucky steps in a row on a shared
    machine. Medians add up consistently, minima do not."""
    pick = {"median": statistics.median, "min": min}[statistic]
    p = torch.distributed.get_world_size()
    results = {kind: {} for kind in KINDS + ("times", "parts")}
    for nbytes in [4, 64, KiB] + list(sizes):      # the tiny sizes: α of the fitted model
        x = torch.ones(max(nbytes // 4, 1))
        parts = part_sizes(nbytes, p) if nbytes in sizes else [nbytes]
        runs: dict[tuple, list[float]] = {}
        for i in range(repeats_for(nbytes, repeats) + 1):     # run 0 is a warm-up
            turn = {}
            for m in parts:
                turn["ping_pong", m] = ping_pong([m], repeats=1, timeout=ctx.timeout)[m]
                turn["one_way", m] = one_way([m], repeats=1, timeout=ctx.timeout)[m]
                turn["exchange", m] = exchange([m], repeats=1, timeout=ctx.timeout)[m]
                turn["one_way_reduce", m] = one_way([m], repeats=1, timeout=ctx.timeout,
                                                    reduce=True)[m]
                turn["exchange_reduce", m] = exchange([m], repeats=1, timeout=ctx.timeout,
                                                      reduce=True)[m]
                turn["reduce", m] = reduction_times([m], repeats=1)[m]
            if nbytes in sizes:
                for algorithm, t in time_all_reduces(x, ALGORITHMS["all_reduce"], repeats=1,
                                                     warmup=0, timeout=ctx.timeout).items():
                    turn["times", algorithm] = t
            if i > 0:
                for k, t in turn.items():
                    runs.setdefault(k, []).append(t)
        figures = {k: pick(v) for k, v in runs.items()}
        figures.update(slowest_rank({k: t for k, t in figures.items() if k[0] == "reduce"}))
        mine = {kind: {} for kind in KINDS}
        for (kind, key), t in figures.items():
            if kind == "times":
                results["times"].setdefault(nbytes, {})[key] = t
            else:
                mine[kind][key] = t
                results[kind][key] = t
        if nbytes in sizes:
            results["parts"][nbytes] = mine
    return results


def part_sizes(nbytes: int, p: int) -> list[int]:
    """The message sizes an n-byte all-reduce on p ranks sends: n (naive, tree, recursive
    doubling), n/2, n/4, … n/p' (halving-doubling, p' = 2^⌊log₂p⌋), n/p (ring chunks) and
    the pipelined ring's segments of them (k = ⌈(n/p)/SEGMENT_BYTES⌉ per chunk)."""
    p2 = 1 << (p.bit_length() - 1)
    halves = [max(nbytes >> k, 1) for k in range(p2.bit_length())]
    chunk = max(nbytes // p, 1)
    segment = max(chunk // -(-chunk // SEGMENT_BYTES), 1)
    return sorted({*halves, chunk, segment}, reverse=True)


def run(cfg: BenchConfig) -> tuple[dict, str]:
    if cfg.local:
        from hpclab.cluster.spawn import run_local
        where = f"{cfg.engines} local processes (run_local, gloo over 127.0.0.1)"
        return run_local(measure, cfg.engines, cfg.sizes, cfg.repeats, cfg.statistic,
                         timeout=cfg.timeout)[0], where
    import hpclab
    with hpclab.connect(n=cfg.engines) as cluster:
        where = f"{cluster.world_size} ipyparallel engines (hpclab.connect, hosts: " \
                f"{', '.join(sorted(set(cluster.hosts)))})"
        return cluster.run(measure, cfg.sizes, cfg.repeats, cfg.statistic,
                           timeout=cfg.timeout)[0], where


def fit(results: dict) -> cost_model.Params:
    """The lecture's model: one α, β, γ (and α₂, β₂) fitted to the measurements."""
    return cost_model.fit(results["ping_pong"], results["reduce"], results["exchange"])


def measured_costs(results: dict, nbytes: int | None = None) -> cost_model.MeasuredCosts:
    """The same formulas priced with measured message costs: those measured alongside the
    n-byte all-reduces (`nbytes`), or the whole machine table."""
    table = results["parts"][nbytes] if nbytes is not None else results
    return cost_model.MeasuredCosts(table["one_way"], table["exchange"], table["reduce"],
                               table.get("one_way_reduce"), table.get("exchange_reduce"))


def table(results: dict, params: cost_model.Params, p: int,
          costs: cost_model.Costs | None = None) -> list[dict]:
    """One row per (size, algorithm): measured time, the fitted α–β–γ prediction
    (`params`) and the prediction priced with measured costs: `costs` if given, else those
    measured alongside each size (results["parts"]), else `params` again."""
    rows = []
    for nbytes, times in results["times"].items():
        ref = times[REFERENCE]
        priced_by = costs or (measured_costs(results, nbytes)
                              if nbytes in results.get("parts", {}) else params)
        for algorithm, seconds in times.items():
            lecture = cost_model.predict(algorithm, nbytes, p, params)
            priced = cost_model.predict(algorithm, nbytes, p, priced_by)
            rows.append({"bytes": nbytes, "algorithm": algorithm, "measured_ms": 1e3 * seconds,
                         "abg_ms": 1e3 * lecture, "abg_error": lecture / seconds - 1,
                         "model_ms": 1e3 * priced, "model_error": priced / seconds - 1,
                         "busbw_GBs": cost_model.bus_bandwidth(nbytes, seconds, p) / 1e9,
                         "busbw_vs_gloo": ref / seconds, "time_vs_gloo": seconds / ref})
    return rows


def format_table(rows: list[dict]) -> str:
    head = (f"{'size':>8} {'algorithm':<18} {'measured ms':>11} {'α-β-γ ms':>9} {'err':>5} "
            f"{'model ms':>9} {'err':>5} {'busbw GB/s':>10} {'busbw/gloo':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{human(r['bytes']):>8} {r['algorithm']:<18} {r['measured_ms']:>11.3f} "
                     f"{r['abg_ms']:>9.3f} {r['abg_error']:>+5.0%} "
                     f"{r['model_ms']:>9.3f} {r['model_error']:>+5.0%} {r['busbw_GBs']:>10.3f} "
                     f"{r['busbw_vs_gloo']:>10.2f}")
    return "\n".join(lines)


def format_machine(results: dict) -> str:
    head = (f"{'size':>8} {'ping-pong ms':>12} {'one-way ms':>10} {'exchange ms':>11} "
            f"{'one-way+add':>11} {'exchange+add':>12} {'add ms':>8}")
    lines = [head]

    def ms(kind, nbytes, width):
        t = results.get(kind, {}).get(nbytes)
        return f"{'' if t is None else f'{1e3 * t:.3f}':>{width}}"

    for nbytes in sorted(results["ping_pong"]):
        lines.append(f"{human(nbytes):>8} {ms('ping_pong', nbytes, 12)} "
                     f"{ms('one_way', nbytes, 10)} {ms('exchange', nbytes, 11)} "
                     f"{ms('one_way_reduce', nbytes, 11)} {ms('exchange_reduce', nbytes, 12)} "
                     f"{ms('reduce', nbytes, 8)}")
    return "\n".join(lines)


def choices(results: dict, p: int) -> str:
    """What algorithm="auto" would pick per size (the model with the measured costs),
    against the fastest measured, and what the pick costs over the fastest."""
    head = f"{'size':>8}  {'model picks':<18} {'fastest measured':<18} {'pick/fastest':>12}"
    lines = [head + "  (torch excluded)"]
    for nbytes, times in results["times"].items():
        ours = {a: t for a, t in times.items() if a != REFERENCE}
        costs = measured_costs(results, nbytes)
        pick, fastest = cost_model.best_algorithm(nbytes, p, costs), min(ours, key=ours.get)
        lines.append(f"{human(nbytes):>8}  {pick:<18} {fastest:<18} "
                     f"{ours[pick] / ours[fastest]:>11.2f}x")
    return "\n".join(lines)


def targets(rows: list[dict], p: int) -> list[str]:
    """The course's targets for this benchmark, each with PASS/FAIL."""
    at = {(r["bytes"], r["algorithm"]): r for r in rows}
    sizes = sorted({r["bytes"] for r in rows})
    out = []

    def check(ok: bool, text: str):
        out.append(f"{'PASS' if ok else 'FAIL'}  {text}")

    big = [n for n in sizes if n >= 16 * MiB]
    if big:   # the plain ring and the pipelined one, each at its worst size
        worst = {a: min(at[n, a]["busbw_vs_gloo"] for n in big)
                 for a in ("ring", "ring_pipelined")}
        best = max(worst, key=worst.get)
        check(worst[best] >= 0.8, f"{best} busbw >= 0.8x gloo's at >= 16 MiB (worst "
                                  f"{worst[best]:.2f}x; ring {worst['ring']:.2f}x, "
                                  f"ring_pipelined {worst['ring_pipelined']:.2f}x)")
    if 4 * KiB in sizes:
        ratio = at[4 * KiB, "ring"]["time_vs_gloo"]
        check(ratio <= 3, f"ring at 4 KiB within 3x of gloo's time ({ratio:.2f}x)")
    mib = [r for r in rows if r["bytes"] >= MiB and r["algorithm"] != REFERENCE]
    if mib:
        bad = [f"{r['algorithm']}@{human(r['bytes'])} {r['model_error']:+.0%}" for r in mib
               if abs(r["model_error"]) > 0.25]
        check(not bad, f"model (measured costs) within ±25% of measured for >= 1 MiB "
                       f"({len(mib) - len(bad)}/{len(mib)} rows" +
              (f"; off: {', '.join(bad)})" if bad else ")"))
        within = sum(abs(r["abg_error"]) <= 0.25 for r in mib)
        out.append(f"info  one fitted α, β, γ within ±25% on {within}/{len(mib)} of those rows"
                   f" (mean error {sum(r['abg_error'] for r in mib) / len(mib):+.0%})")
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
            ax_t.loglog(x, [r["abg_ms"] for r in mine], ":", color=color, alpha=0.6)
        ax_bw.semilogx(x, [r["busbw_GBs"] for r in mine], "o-", color=color, label=algorithm)
    ax_t.set(xlabel="message size (bytes)", ylabel="all-reduce time (ms)",
             title=f"measured (dots), model with measured costs (lines),\n"
                   f"one fitted α, β, γ (dotted); p = {p}")
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
    ap.add_argument("--repeats", type=int, default=BenchConfig.repeats,
                    help="runs per measurement (x4 up to 1 MiB, x2 above)")
    ap.add_argument("--statistic", choices=("median", "min"), default=BenchConfig.statistic,
                    help="what to keep of the runs (default median: the model's parts and "
                         "the collectives add up consistently)")
    ap.add_argument("--out", default="comm_bench.png", help="where to save the plot")
    ap.add_argument("--local", action="store_true",
                    help="forked local processes instead of ipyparallel engines")
    ap.add_argument("--save", default=None,
                    help="also write the raw measurements ({bytes: seconds}) to this JSON file")
    ap.add_argument("--quick", action="store_true",
                    help="CI mode: sizes 4 KiB, 64 KiB, 1 MiB; 2 repeats; local processes")
    args = ap.parse_args(argv)
    if args.engines < 2:
        ap.error(f"--engines must be >= 2 (ping-pong needs two ranks), got {args.engines}")
    cfg = BenchConfig(engines=args.engines, repeats=args.repeats, out=args.out,
                      local=args.local or args.quick, statistic=args.statistic)
    if args.quick:
        cfg.sizes, cfg.repeats = list(QUICK_SIZES), 2
    start = time.time()
    results, where = run(cfg)
    if args.save:
        import json
        with open(args.save, "w") as f:
            json.dump({"where": where, "p": cfg.engines, **results}, f, indent=1)
    params, p = fit(results), cfg.engines
    rows = table(results, params, p)
    print(f"hpclab bench comm: all-reduce on {where}, p = {p}, float32, {cfg.statistic} of "
          f"{cfg.repeats}-{4 * cfg.repeats} runs; reference: torch.distributed.all_reduce (gloo)")
    print("\nthe machine: one-way ping-pong (ranks 0-1), one-way message from a barrier, "
          "exchange (all ranks in pairs at once), the same two with the receiver adding what "
          "arrives (float32), local add")
    print(format_machine(results))
    print(f"fitted α-β-γ model: {params}")
    print("model: the same formulas with each step priced from the table above\n")
    print(format_table(rows))
    print("\nbest algorithm per size (what algorithm=\"auto\" picks)")
    print(choices(results, p))
    print("\ntargets")
    print("\n".join(targets(rows, p)))
    import matplotlib
    matplotlib.use("Agg")   # a file, no window: works on a headless node
    plot(rows, p, cfg.out)
    print(f"\nplot: {cfg.out}  ({time.time() - start:.0f} s)")
    return 0
