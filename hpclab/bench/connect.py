"""`hpclab bench connect`: what `hpclab.connect` adds to ipyparallel's own start.

    hpclab bench connect                 # 2 engines, 5 rounds
    hpclab bench connect --engines 4 --repeats 3

Each round, in turn (the order alternates between rounds, so that neither always finds
the caches warm):

    ipyparallel   ipp.Cluster(n).start_and_connect_sync(): a controller and n engines,
                  registered with a connected client (the reference)
    hpclab        hpclab.connect(n): the same, plus every engine described, ordered into
                  ranks and joined in a torch.distributed process group

and then the time `cluster.close()` takes. Printed: every round, the medians, and what
connect adds to ipyparallel's start (median of the per-round differences).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import socket
import statistics
import time

import ipyparallel as ipp

import hpclab


def ipyparallel_start(n: int) -> float:
    """Seconds for ipyparallel to start a controller and n engines and connect to them."""
    cluster = ipp.Cluster(n=n, log_level=logging.ERROR)
    t0 = time.perf_counter()
    client = cluster.start_and_connect_sync()
    seconds = time.perf_counter() - t0
    client.close()
    cluster.stop_cluster_sync()
    return seconds


def hpclab_connect(n: int) -> tuple[float, float]:
    """Seconds for hpclab.connect(n) (engines + process group), and for close()."""
    t0 = time.perf_counter()
    cluster = hpclab.connect(n=n)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    cluster.close()
    return seconds, time.perf_counter() - t0


def run(n: int, repeats: int) -> list[dict]:
    rounds = []
    for r in range(repeats):
        row = {}
        for what in (("ipp", "hpclab") if r % 2 == 0 else ("hpclab", "ipp")):
            if what == "ipp":
                row["ipp_s"] = ipyparallel_start(n)
            else:
                row["connect_s"], row["close_s"] = hpclab_connect(n)
        rounds.append(row)
    return rounds


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="hpclab bench connect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    try:
        load = f"load average {os.getloadavg()[0]:.1f}"
    except OSError:
        load = "load unknown"
    print(f"connect, {args.engines} local engines, {args.repeats} rounds; "
          f"{socket.gethostname()} ({platform.machine()}, {os.cpu_count()} CPUs, {load}), "
          f"ipyparallel {ipp.__version__}")
    rounds = run(args.engines, args.repeats)
    print(f"{'round':>5} {'ipyparallel s':>14} {'hpclab.connect s':>17} {'added s':>8} "
          f"{'close s':>8}")
    for i, row in enumerate(rounds):
        print(f"{i:>5} {row['ipp_s']:>14.2f} {row['connect_s']:>17.2f} "
              f"{row['connect_s'] - row['ipp_s']:>8.2f} {row['close_s']:>8.2f}")
    med = {k: statistics.median(row[k] for row in rounds) for k in rounds[0]}
    added = statistics.median(row["connect_s"] - row["ipp_s"] for row in rounds)
    print(f"{'median':>5} {med['ipp_s']:>14.2f} {med['connect_s']:>17.2f} {added:>8.2f} "
          f"{med['close_s']:>8.2f}")
    print(f"hpclab.connect takes {med['connect_s'] / med['ipp_s']:.2f}x ipyparallel's own "
          f"start: {added:+.2f} s (median of the per-round differences)")
    return 0
