"""`hpclab bench hierarchical`: hierarchical against flat ring all-reduce on a cluster of
nodes, measured and as the two-level cost model predicts it.

    sudo hpclab vcluster up --nodes 2 --cpus-per-node 2 --link 1gbit
    hpclab bench hierarchical           # 2 nodes × 2 ranks (SLURM_CONF: the vcluster's if unset)
    hpclab bench hierarchical --rounds 3   # calibrate and measure 3 times: the spread
    hpclab bench hierarchical --local      # 4 local processes as 2 "nodes" (no slow link)

On the engines: `calibrate()` measures both link classes and the flat ring's step
(cost_model.TwoLevel: α, β inside a node and across, `flat`), then each size is
all-reduced with algorithm="ring" and "hierarchical", the two taking turns (best of
`repeats`, the slowest rank's time). The table gives each algorithm's measured and
predicted time, the measured speed-up t_ring / t_hier next to the model's and their ratio
(measured / predicted: 1 = the model is exact, the target is within 0.8–1.2); the
reference is the flat ring measured in the same run. With several rounds, each round
calibrates afresh and the last lines give the spread over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field

import torch

from hpclab.cluster.vcluster import VCluster
from hpclab.comm import cost_model
from hpclab.comm.measure import CALIBRATION_SIZES, calibrate, time_all_reduces

MiB = 1 << 20
ALGORITHMS = ("ring", "hierarchical")
TARGET = (0.8, 1.2)         # measured / predicted speed-up: the model within 20 %


@dataclass
class Config:
    nodes: int = 2
    ranks_per_node: int = 2
    sizes: list[int] = field(default_factory=lambda: [4 * MiB, 16 * MiB, 32 * MiB])
    repeats: int = 9
    local: bool = False
    timeout: float = 180.0
    rounds: int = 1


def measure(ctx, sizes, repeats: int, calibration_sizes=CALIBRATION_SIZES) -> dict:
    """On every rank: the two-level costs (calibrated at `calibration_sizes`, best of
    `repeats` like the all-reduces: a burst of load during calibration only adds time, and
    one spoiled table entry moves the prediction of every size that reads it; the model
    goes on linearly past the largest size), then measured and predicted times per size."""
    costs = calibrate(timeout=ctx.timeout, sizes=calibration_sizes, repeats=repeats)
    rows = []
    for nbytes in sizes:
        x = torch.ones(nbytes // 4)
        measured = time_all_reduces(x, ALGORITHMS, repeats=repeats, timeout=ctx.timeout)
        predicted = {a: cost_model.predict(a, nbytes, ctx.world_size, costs)
                     for a in ALGORITHMS}
        rows.append({"bytes": nbytes, "measured": measured, "predicted": predicted,
                     "auto": cost_model.best_algorithm(nbytes, ctx.world_size, costs)})
    return {"costs": str(costs), "rows": rows, "hosts": ctx.host}


def speedups(row: dict) -> tuple[float, float, float]:
    """(measured, predicted, measured / predicted) of the speed-up t_ring / t_hierarchical."""
    m = row["measured"]["ring"] / row["measured"]["hierarchical"]
    p = row["predicted"]["ring"] / row["predicted"]["hierarchical"]
    return m, p, m / p


def table(result: dict) -> str:
    lines = [result["costs"],
             (f"{'size':>7} {'ring ms':>16} {'hier ms':>16} {'speed-up':>9} {'model':>7} "
              f"{'ratio':>6}  auto picks"),
             (f"{'':>7} {'measured/model':>16} {'measured/model':>16} {'measured':>9} "
             f"{'':>7} {'m/p':>6}")]
    for row in result["rows"]:
        m, p, ratio = speedups(row)
        t, q = row["measured"], row["predicted"]
        lines.append(f"{row['bytes'] // MiB:>4} MiB {t['ring'] * 1e3:>7.1f}/{q['ring'] * 1e3:<8.1f}"
                     f"{t['hierarchical'] * 1e3:>7.1f}/{q['hierarchical'] * 1e3:<8.1f}"
                     f"{m:>8.2f}x {p:>6.2f}x {ratio:>6.2f}  {row['auto']}")
    return "\n".join(lines)


def spread(results: list[dict]) -> str:
    """Per size, the range over rounds of the measured and predicted speed-ups and of
    their ratio, the median ratio, and how many rounds are within the target 0.8–1.2."""
    lines = [(f"over {len(results)} rounds: {'size':>7} {'measured':>13} {'predicted':>13} "
             f"{'ratio m/p':>11} {'median':>6}  within 20 %")]
    for i, row in enumerate(results[0]["rows"]):
        got = [speedups(r["rows"][i]) for r in results]
        span = [(min(g[j] for g in got), max(g[j] for g in got)) for j in range(3)]
        ratios = [g[2] for g in got]
        inside = sum(TARGET[0] <= q <= TARGET[1] for q in ratios)
        lines.append(f"{'':>17}{row['bytes'] // MiB:>4} MiB "
                     + " ".join(f"{lo:>6.2f}–{hi:<6.2f}" for lo, hi in span)
                     + f" {statistics.median(ratios):>6.2f}  {inside} of {len(ratios)}")
    return "\n".join(lines)


def rounds(ctx, sizes, repeats: int, count: int) -> list[dict]:
    """`measure` `count` times, each calibrating afresh (on every rank)."""
    return [measure(ctx, sizes, repeats) for _ in range(count)]


def run(cfg: Config) -> tuple[list[dict], str]:
    p = cfg.nodes * cfg.ranks_per_node
    if cfg.local:
        from hpclab.cluster.spawn import run_local
        out = run_local(rounds, p, cfg.sizes, cfg.repeats, cfg.rounds, timeout=cfg.timeout,
                        ranks_per_node=cfg.ranks_per_node)
        return out[0], f"{p} local processes as {cfg.nodes} nodes × {cfg.ranks_per_node}"
    import hpclab
    vc = VCluster.load()
    if vc is not None and "SLURM_CONF" not in os.environ:   # the virtual cluster's Slurm
        os.environ.update(vc.env())
    with hpclab.connect(n=p, engines="slurm", nodes=cfg.nodes, time="30",
                        timeout=cfg.timeout) as cluster:
        hosts = cluster.hosts
        out = cluster.run(rounds, cfg.sizes, cfg.repeats, cfg.rounds,
                          timeout=cfg.timeout * 4 * cfg.rounds)
    if len(set(hosts)) != cfg.nodes:
        raise RuntimeError(f"engines landed on {sorted(set(hosts))}, not {cfg.nodes} nodes")
    return out[0], f"Slurm engines on {', '.join(sorted(set(hosts)))} ({p} ranks)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hpclab bench hierarchical",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--ranks-per-node", type=int, default=2)
    ap.add_argument("--sizes-mib", type=int, nargs="+", default=[4, 16, 32])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--rounds", type=int, default=1,
                    help="calibrate and measure this many times (the spread under load)")
    ap.add_argument("--local", action="store_true",
                    help="forked local processes as nodes instead of Slurm engines")
    args = ap.parse_args(argv)
    cfg = Config(args.nodes, args.ranks_per_node, [s * MiB for s in args.sizes_mib],
                 args.repeats, args.local, rounds=args.rounds)
    t0 = time.time()
    results, where = run(cfg)
    print(f"hpclab bench hierarchical: {where}, float32, best of {cfg.repeats}; "
          f"reference: the flat ring in the same run ({time.time() - t0:.0f} s)")
    for i, result in enumerate(results):
        if len(results) > 1:
            print(f"round {i + 1}:")
        print(table(result))
    if len(results) > 1:
        print(spread(results))
    return 0
