"""What the live dashboard costs training, measured: `python -m hpclab.widgets.overhead`.

Two set-ups, each run alternately with and without a Dashboard (A B A B ..., so a busy
machine slows both alike), reporting the ratio of median wall time per step:

    single   hpclab.train.fit on the digits MLP in this process, Dashboard as callback:
             the drawing thread competes with training for the CPU and the GIL
    engines  hpclab.parallel.Trainer on 2 ipyparallel engines, Dashboard subscribed to
             the Job: drawing happens in this process, the engines train

and the dashboard's own figures: draws, full redraws, share of wall time spent drawing,
and the latency from a record's arrival to its picture being pushed (median / max).
"noise" is how much two neighbouring runs without the dashboard differ (median): on a
shared machine a slowdown below it cannot be told from the machine's own variation.

    python -m hpclab.widgets.overhead [--steps 5000] [--repeats 6] [--engines 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import hpclab
from hpclab.widgets.dashboard import Dashboard


def _fit(steps: int, dash: Dashboard | None) -> float:
    train, _ = hpclab.problems.digits_loaders(batch_size=64)
    model = hpclab.problems.make_mlp(64, (256, 256), 10, seed=0)
    opt = hpclab.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    hpclab.train.fit(model, opt, train, torch.nn.functional.cross_entropy, steps=steps,
                     callbacks=[dash] if dash else [], progress=False)
    return (time.perf_counter() - t0) / steps


def _job(cluster, steps: int, dash: Dashboard | None) -> float:
    from hpclab.parallel import Trainer, TrainerConfig

    trainer = Trainer(cluster, _model_fn, _data_fn, _optimizer_fn, TrainerConfig(batch_size=64))
    t0 = time.perf_counter()
    job = trainer.fit(steps=steps)
    if dash is not None:
        dash.attach(job)
    job.wait(timeout=600)
    return (time.perf_counter() - t0) / steps


def _model_fn():
    return hpclab.problems.make_mlp(64, (256, 256), 10, seed=0)


def _data_fn():
    split = hpclab.problems.load_digits_split()
    return split.X_train, split.y_train


def _optimizer_fn(params):
    return hpclab.optim.Adam(params, lr=1e-3)


def compare(run, steps: int, repeats: int, label: str) -> dict:
    bare, live, dashes = [], [], []
    run(max(steps // 10, 5), None)                     # warm-up: imports, first allocations
    for _ in range(repeats):
        bare.append(run(steps, None))
        dash = Dashboard(total_steps=steps)            # displayed before training starts
        live.append(run(steps, dash))
        dash.renderer.stop()                           # the share counts the run only
        dash.finish()
        dashes.append(dash)
    lat = sorted(x for d in dashes for x in d.latencies)
    # each run with the dashboard against the mean of the bare runs either side of it:
    # the machine's speed drifts (a shared VM: ±20 % between runs), pairs cancel most of it
    neighbours = [(bare[i] + bare[min(i + 1, repeats - 1)]) / 2 for i in range(repeats)]
    out = {"setup": label, "bare_ms": 1e3 * statistics.median(bare),
           "dashboard_ms": 1e3 * statistics.median(live),
           "slowdown": statistics.median(b / a for a, b in zip(neighbours, live)) - 1,
           # how much neighbouring runs without the dashboard differ: a slowdown below
           # this cannot be told from the machine's own variation
           "noise": statistics.median(abs(bare[i + 1] / bare[i] - 1)
                                      for i in range(repeats - 1)) if repeats > 1 else 0.0,
           "draws": sum(d.renderer.stats.draws for d in dashes),
           "full_redraws": sum(d.full_redraws for d in dashes),
           "drawing_share": statistics.median(d.renderer.stats.duty_cycle for d in dashes),
           "latency_median_s": statistics.median(lat) if lat else float("nan"),
           "latency_max_s": max(lat) if lat else float("nan")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--engines", type=int, default=2, help="0: skip the engine set-up")
    args = ap.parse_args(argv)
    rows = [compare(_fit, args.steps, args.repeats, "single process (fit callback)")]
    if args.engines:
        with hpclab.connect(n=args.engines) as cluster:
            rows.append(compare(lambda s, d: _job(cluster, s, d), args.steps, args.repeats,
                                f"{args.engines} engines (Job.subscribe)"))
    print(f"{'set-up':<32} {'bare ms/step':>12} {'with dash':>10} {'slowdown':>9} "
          f"{'noise':>6} {'draws':>6} {'full':>5} {'drawing':>8} {'latency med/max s':>18}")
    for r in rows:
        print(f"{r['setup']:<32} {r['bare_ms']:>12.2f} {r['dashboard_ms']:>10.2f} "
              f"{100 * r['slowdown']:>8.1f}% {100 * r['noise']:>5.0f}% "
              f"{r['draws']:>6} {r['full_redraws']:>5} "
              f"{100 * r['drawing_share']:>7.1f}% "
              f"{r['latency_median_s']:>8.3f} / {r['latency_max_s']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
