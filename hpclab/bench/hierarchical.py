"""`hpclab bench hierarchical`: hierarchical against flat ring all-reduce on a cluster of
nodes, measured and as the two-level cost model predicts it.

    sudo hpclab vcluster up --nodes 2 --cpus-per-node 2 --link 1gbit
    hpclab bench hierarchical           # 2 nodes × 2 ranks (SLURM_CONF: the vcluster's if unset)
    hpclab bench hierarchical --local      # 4 local processes as 2 "nodes" (no slow link)

On the engines: `calibrate()` measures both link classes (cost_model.TwoLevel: α, β inside
a node and across), then each size is all-reduced with algorithm="ring" and
"hierarchical", the two taking turns (best of `repeats`, the slowest rank's time). The
table gives the measured speed-up t_ring / t_hier next to the model's, and the model's
error; the reference is the flat ring measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field

import torch

from hpclab.cluster.vcluster import VCluster
from hpclab.comm import cost_model
from hpclab.comm.measure import calibrate, time_all_reduces

MiB = 1 << 20
ALGORITHMS = ("ring", "hierarchical")


@dataclass
class Config:
    nodes: int = 2
    ranks_per_node: int = 2
    sizes: list[int] = field(default_factory=lambda: [1 * MiB, 4 * MiB, 16 * MiB])
    repeats: int = 5
    local: bool = False
    timeout: float = 180.0


def measure(ctx, sizes, repeats: int) -> dict:
    """On every rank: the two-level costs, then measured and predicted times per size."""
    costs = calibrate(timeout=ctx.timeout)
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
    """(measured, predicted, relative error) of t_ring / t_hierarchical."""
    m = row["measured"]["ring"] / row["measured"]["hierarchical"]
    p = row["predicted"]["ring"] / row["predicted"]["hierarchical"]
    return m, p, m / p - 1


def table(result: dict) -> str:
    lines = [result["costs"],
             (f"{'size':>7} {'ring ms':>16} {'hier ms':>16} {'speed-up':>9} {'model':>7} "
              f"{'error':>7}  auto picks"),
             f"{'':>7} {'measured/model':>16} {'measured/model':>16}"]
    for row in result["rows"]:
        m, p, err = speedups(row)
        t, q = row["measured"], row["predicted"]
        lines.append(f"{row['bytes'] // MiB:>4} MiB {t['ring'] * 1e3:>7.1f}/{q['ring'] * 1e3:<8.1f}"
                     f"{t['hierarchical'] * 1e3:>7.1f}/{q['hierarchical'] * 1e3:<8.1f}"
                     f"{m:>8.2f}x {p:>6.2f}x {err:>+6.0%}  {row['auto']}")
    return "\n".join(lines)


def run(cfg: Config) -> tuple[dict, str]:
    p = cfg.nodes * cfg.ranks_per_node
    if cfg.local:
        from hpclab.cluster.spawn import run_local
        out = run_local(measure, p, cfg.sizes, cfg.repeats, timeout=cfg.timeout,
                        ranks_per_node=cfg.ranks_per_node)
        return out[0], f"{p} local processes as {cfg.nodes} nodes × {cfg.ranks_per_node}"
    import hpclab
    vc = VCluster.load()
    if vc is not None and "SLURM_CONF" not in os.environ:   # the virtual cluster's Slurm
        os.environ.update(vc.env())
    with hpclab.connect(n=p, engines="slurm", nodes=cfg.nodes, time="30",
                        timeout=cfg.timeout) as cluster:
        hosts = cluster.hosts
        out = cluster.run(measure, cfg.sizes, cfg.repeats, timeout=cfg.timeout * 4)
    if len(set(hosts)) != cfg.nodes:
        raise RuntimeError(f"engines landed on {sorted(set(hosts))}, not {cfg.nodes} nodes")
    return out[0], f"Slurm engines on {', '.join(sorted(set(hosts)))} ({p} ranks)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hpclab bench hierarchical",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--ranks-per-node", type=int, default=2)
    ap.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--local", action="store_true",
                    help="forked local processes as nodes instead of Slurm engines")
    args = ap.parse_args(argv)
    cfg = Config(args.nodes, args.ranks_per_node, [s * MiB for s in args.sizes_mib],
                 args.repeats, args.local)
    t0 = time.time()
    result, where = run(cfg)
    print(f"hpclab bench hierarchical: {where}, float32, best of {cfg.repeats}; "
          f"reference: the flat ring in the same run ({time.time() - t0:.0f} s)")
    print(table(result))
    return 0
