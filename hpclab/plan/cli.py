"""`hpclab plan`: every configuration of a world size, predicted, ranked, optionally measured.

    hpclab plan --world 4                            # the tiny model on this machine
    hpclab plan --world 4 --measure --out plan.md    # + run every configuration here
    hpclab plan --world 1024 --model gpt3-175b --gpu a100 --top 15   # on paper

Columns: dp tp pp m zero schedule sp | predicted ms and its terms (compute with the
bubble, TP, PP, DP collectives, optimizer) | memory per rank | fits the budget
(--memory-gb; on paper the GPU's memory) | measured ms and measured/predicted.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

from .datasheet import GPUS
from .report import MODELS, plan, table, verdict


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="hpclab plan", description=__doc__.split("\n")[0])
    ap.add_argument("--world", type=int, default=4, help="ranks p = dp·tp·pp")
    ap.add_argument("--model", choices=MODELS, default="tiny")
    ap.add_argument("--batch", type=int, default=None, help="global batch B, sequences")
    ap.add_argument("--memory-gb", type=float, default=None, help="memory budget per rank")
    ap.add_argument("--gpu", choices=sorted(GPUS), default="a100", help="on paper")
    ap.add_argument("--recompute", choices=("none", "selective", "full"), default=None)
    ap.add_argument("--micro-batches", type=int, nargs="+", default=None,
                    help="the m to try (default 1 2 4 8; on paper 1 2 4 … 4096)")
    ap.add_argument("--sequence-parallel", action="store_true",
                    help="also list sequence-parallel variants where tp > 1")
    ap.add_argument("--measure", action="store_true", help="run every configuration here")
    ap.add_argument("--steps", type=int, default=5, help="measured steps per configuration")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every configuration this many times in turn, keep the best")
    ap.add_argument("--top", type=int, default=None, help="print the best N only")
    ap.add_argument("--out", default=None, help="also write the report (markdown) here")
    args = ap.parse_args(argv)
    sp = (False, True) if args.sequence_parallel else (False,)

    def progress(row):
        print(f"measured {row.layout}: {1e3 * row.measured:.2f} ms "
              f"(predicted {1e3 * row.predicted:.2f})", file=sys.stderr, flush=True)

    try:
        rows = plan(world=args.world, model=args.model, batch=args.batch,
                    memory_gb=args.memory_gb, measure=args.measure, gpu=args.gpu,
                    micro_batches=args.micro_batches, sequence_parallel=sp,
                    recompute=args.recompute, steps=args.steps,
                    rounds=args.rounds,
                    progress=progress)
    except ValueError as exc:
        print(f"hpclab plan: {exc}", file=sys.stderr)
        return 2
    where = (f"{args.world} local ranks of {platform.node()} ({os.cpu_count()} cores, "
             f"load average {os.getloadavg()[0]:.1f})" if args.model == "tiny"
             else f"{args.world} × {GPUS[args.gpu].name} (data sheet)")
    lines = [f"hpclab plan --world {args.world} --model {args.model}"
             + (" --measure" if args.measure else ""),
             f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {where}", "",
             table(rows, top=args.top, markdown=bool(args.out))]
    fitting = [r for r in rows if r.fits]
    lines.append("")
    lines.append(f"{len(rows)} configurations, {len(fitting)} fit; predicted best that fits: "
                 + (f"{fitting[0].layout}" if fitting else "none"))
    if args.measure and any(r.measured is not None for r in rows):
        v = verdict(rows)
        lines.append(f"measured {v['measured']}: predicted best {v['predicted_best']}, "
                     f"measured best {v['measured_best']}; the predicted best takes "
                     f"{v['ratio']:.3f}× the measured best's time: "
                     + ("within" if v["within"] else "NOT within")
                     + f" {v['tolerance']:.0%}; median |predicted/measured − 1| = "
                     f"{v['median_error']:.1%}")
    text = "\n".join(lines)
    print(text if not args.out else text.replace(table(rows, top=args.top, markdown=True),
                                                 table(rows, top=args.top, markdown=False)))
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0
