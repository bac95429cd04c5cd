"""`hpclab bench pipeline`: the bubble of GPipe, 1F1B and interleaved 1F1B, measured.

    hpclab bench pipeline                          # p = 2, 4; m = 8; v = 2; t_f = 30 ms
    hpclab bench pipeline --ranks 4 --micro 16 --t-forward 0.005

Every schedule runs on forked processes (gloo) over stages of equal, known cost (a sleep
of t_f forward and t_b = 2·t_f backward per rank, pipeline_equal_stages.py), so the
formulas' assumption holds on any machine. Per schedule the table shows the idle
fraction of the fastest of the repeated steps, measured from the ranks' timestamps, the
formula's bubble, their ratio (measured/theory: above 1 by the messages and the time the
processes take to wake up: on a machine with more runnable processes than cores each
hand-off can take milliseconds, so the load average is printed too), and each rank's peak of micro-batches in flight against the
memory calculator's n_r (hpclab.memory: GPipe m, 1F1B min(m, p − r)); interleaved counts
model chunks, against min(v·m, 2(p − r − 1) + (v − 1)p + 1).
"""

from __future__ import annotations

import argparse
import os

from hpclab.cluster.spawn import run_local
from hpclab.memory import Parallelism
from hpclab.parallel.pipeline import bubble_fraction
from hpclab.parallel.pipeline_equal_stages import timed_steps
from hpclab.parallel.pipeline_interleaved import bubble_fraction as interleaved_bubble
from hpclab.parallel.pipeline_interleaved import in_flight as interleaved_in_flight
from hpclab.parallel.pipeline_schedule import bubble


def measure(p: int, m: int, v: int, t_f: float, repeats: int) -> list[dict]:
    """One row per schedule: measured and theoretical bubble, peaks in flight."""
    rows = []
    for name in ("gpipe", "1f1b", "interleaved"):
        ranks = run_local(timed_steps, p, name, m, v, t_f, 2 * t_f, repeats, timeout=300)
        steps = [[e for rank in ranks for e in rank[k].events] for k in range(repeats)]
        fastest = min(steps, key=lambda ev: max(e.t_end for e in ev) - min(e.t_start for e in ev))
        if name == "interleaved":
            theory = interleaved_bubble(p, m, v)
            predicted = [interleaved_in_flight(p, m, r, v) for r in range(p)]
        else:
            theory = bubble_fraction(p, m)
            predicted = [Parallelism(pp=p, microbatches=m, schedule=name).in_flight(r)
                         for r in range(p)]
        rows.append({"schedule": name, "p": p, "m": m, "v": v if name == "interleaved" else 1,
                     "measured": bubble(fastest), "theory": theory,
                     "peak": [rank[0].peak_in_flight for rank in ranks],
                     "predicted": predicted, "events": fastest})
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="hpclab bench pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4], help="pipeline sizes p")
    ap.add_argument("--micro", type=int, default=8, help="micro-batches m (a multiple of p)")
    ap.add_argument("--chunks", type=int, default=2, help="model chunks v per rank (interleaved)")
    ap.add_argument("--t-forward", type=float, default=0.03, help="t_f per rank, seconds")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"equal stages: t_f = {1e3 * args.t_forward:g} ms, t_b = 2 t_f per rank; "
          f"fastest of {args.repeats} steps; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    print(f"{'schedule':<12} {'p':>2} {'m':>3} {'v':>2} {'bubble':>7} {'theory':>7} "
          f"{'ratio':>6}  peak in flight per rank (calculator)")
    for p in args.ranks:
        for row in measure(p, args.micro, args.chunks, args.t_forward, args.repeats):
            print(f"{row['schedule']:<12} {p:>2} {row['m']:>3} {row['v']:>2} "
                  f"{row['measured']:>7.3f} {row['theory']:>7.3f} "
                  f"{row['measured'] / row['theory']:>6.2f}  {row['peak']} ({row['predicted']})")
    return 0
