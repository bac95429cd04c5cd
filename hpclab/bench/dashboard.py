"""`hpclab bench dashboard`: what the live dashboard costs training, and what it sends.

Each set-up runs alternately without and with a Dashboard (A B A B ..., so a busy
machine slows both alike) and reports, for the runs with it:

    slowdown     wall time per step against the mean of the bare runs either side, median
    noise        how much neighbouring bare runs differ (a slowdown below it is noise)
    kernel CPU   CPU seconds of this process (the notebook kernel) per wall second, with
                 minus without the dashboard: what it costs the kernel
    bytes/s      bytes of the widget messages, serialised and signed as ipykernel sends
                 them to the browser (jupyter_client.Session; the websocket carries the
                 same JSON)
    msgs/s       widget messages per second
    latency      from a step's end (its record's time.time()) to the message carrying its
                 point leaving the kernel, p50 / p95; the browser test measures on to
                 the screen

Set-ups: "fit" is hpclab.train.fit on the digits MLP in this process with the dashboard
as callback (training and the dashboard share this process); "N engines" is
hpclab.parallel.Trainer on N ipyparallel engines with the dashboard subscribed to the
Job (the engines train, this process receives and sends).

    hpclab bench dashboard [--steps 3000] [--repeats 4] [--engines 2 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import comm
import torch
from comm.base_comm import BaseComm
from jupyter_client.session import Session

import hpclab
from hpclab.widgets.dashboard import Dashboard


class CountingComm(BaseComm):
    """A widget comm that serialises every message as ipykernel would (JSON, HMAC
    signature) and counts the bytes, instead of writing them to a socket."""

    session = Session(key=b"hpclab-bench")
    bytes_sent = 0
    messages = 0

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        content = dict(data=data or {}, comm_id=self.comm_id, **keys)
        msg = self.session.msg(msg_type, content, metadata=metadata or {})
        frames = self.session.serialize(msg)
        CountingComm.bytes_sent += sum(len(f) for f in frames[1:])   # [0]: the delimiter
        CountingComm.bytes_sent += sum(len(memoryview(b)) for b in buffers or ())
        CountingComm.messages += 1


def _model_fn():
    return hpclab.problems.make_mlp(64, (256, 256), 10, seed=0)


def _data_fn():
    split = hpclab.problems.load_digits_split()
    return split.X_train, split.y_train


def _optimizer_fn(params):
    return hpclab.optim.Adam(params, lr=1e-3)


def _fit(steps: int, dash: Dashboard | None) -> float:
    train, _ = hpclab.problems.digits_loaders(batch_size=64)
    model = _model_fn()
    opt = _optimizer_fn(model.parameters())
    t0 = time.perf_counter()
    hpclab.train.fit(model, opt, train, torch.nn.functional.cross_entropy, steps=steps,
                     callbacks=[dash] if dash else [], progress=False)
    return time.perf_counter() - t0


def _job(cluster, steps: int, dash: Dashboard | None) -> float:
    from hpclab.parallel import Trainer, TrainerConfig

    trainer = Trainer(cluster, _model_fn, _data_fn, _optimizer_fn, TrainerConfig(batch_size=64))
    t0 = time.perf_counter()
    job = trainer.fit(steps=steps)
    if dash is not None:
        dash.attach(job)
    job.wait(timeout=600)
    return time.perf_counter() - t0


def _measured(run, steps: int, dash: Dashboard | None) -> dict:
    CountingComm.bytes_sent = CountingComm.messages = 0
    cpu0 = time.process_time()
    wall = run(steps, dash)
    if dash is not None:
        dash.finish()
    return {"wall": wall, "cpu": (time.process_time() - cpu0) / wall,
            "bytes": CountingComm.bytes_sent / wall, "msgs": CountingComm.messages / wall}


def compare(run, steps: int, repeats: int, label: str) -> dict:
    run(max(steps // 10, 5), None)                      # warm-up: imports, first allocations
    bare, live, lat = [], [], []
    for _ in range(repeats):
        bare.append(_measured(run, steps, None))
        dash = Dashboard(total_steps=steps)             # made before training starts
        live.append(_measured(run, steps, dash))
        lat += dash.latencies
    walls = [b["wall"] for b in bare]
    neighbours = [(walls[i] + walls[min(i + 1, repeats - 1)]) / 2 for i in range(repeats)]
    lat.sort()
    return {
        "setup": label,
        "bare_ms": 1e3 * statistics.median(walls) / steps,
        "dash_ms": 1e3 * statistics.median(r["wall"] for r in live) / steps,
        "slowdown": statistics.median(r["wall"] / n for r, n in zip(live, neighbours)) - 1,
        "noise": (statistics.median(abs(walls[i + 1] / walls[i] - 1)
                                    for i in range(repeats - 1)) if repeats > 1 else 0.0),
        "cpu": statistics.median(r["cpu"] for r in live) - statistics.median(b["cpu"] for b in bare),
        "bytes": statistics.median(r["bytes"] for r in live),
        "msgs": statistics.median(r["msgs"] for r in live),
        "p50": lat[len(lat) // 2] if lat else float("nan"),
        "p95": lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--engines", type=int, nargs="*", default=[2, 4],
                    help="engine counts for the Job set-up (none: skip it)")
    ap.add_argument("--no-fit", action="store_true", help="skip the single-process set-up")
    args = ap.parse_args(argv)
    comm.create_comm = CountingComm          # every widget made from here on counts
    rows = []
    if not args.no_fit:
        rows.append(compare(_fit, args.steps, args.repeats, "fit callback, 1 process"))
    for n in args.engines:
        with hpclab.connect(n=n) as cluster:
            rows.append(compare(lambda s, d: _job(cluster, s, d), args.steps, args.repeats,
                                f"{n} engines, Job.subscribe"))
    print(f"{'set-up':<26} {'bare ms/step':>12} {'with dash':>9} {'slowdown':>9} "
          f"{'noise':>6} {'kernel CPU':>10} {'bytes/s':>8} {'msgs/s':>6} "
          f"{'latency p50/p95 s':>18}")
    for r in rows:
        print(f"{r['setup']:<26} {r['bare_ms']:>12.3f} {r['dash_ms']:>9.3f} "
              f"{100 * r['slowdown']:>8.1f}% {100 * r['noise']:>5.1f}% "
              f"{100 * r['cpu']:>9.1f}% {r['bytes']:>8.0f} {r['msgs']:>6.1f} "
              f"{r['p50']:>8.3f} / {r['p95']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
