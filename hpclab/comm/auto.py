"""algorithm="auto": let the cost model pick the all-reduce algorithm for each size.

What MPI libraries and NCCL do, with the course's own model: the first "auto" call in a
process group measures what messages cost there (calibrate: one-way messages, exchanges,
the same two with the receiver adding what arrives, and local additions, at powers of 4
from 4 B to 16 MiB; about a second), and from then
on every all-reduce of n bytes runs

    argmin over algorithms A of  T_A(n, p)        (model.predict with the measured costs)

so small messages get a latency-bound algorithm (few steps: tree, recursive doubling) and
large ones a bandwidth-bound one (ring, halving-doubling) — wherever the crossover lies on
this machine. Every rank holds the same measured table (the slowest rank's times), so
every rank picks the same algorithm: a collective must run the same algorithm everywhere.

    costs = hpclab.comm.calibrate()          # collective: call it on every rank, once
    hpclab.comm.choose(4 << 20)              # "ring", "tree", ... for a 4 MiB all-reduce
    hpclab.comm.all_reduce(x, algorithm="auto")
"""

from __future__ import annotations

from datetime import timedelta

import torch.distributed as dist

from hpclab.comm import model

CALIBRATION_SIZES = tuple(4 << (2 * k) for k in range(12))   # 4 B, 16 B, …, 16 MiB

_costs: dict = {}     # process group -> MeasuredCosts (the group object is kept: no id reuse)
_choices: dict = {}   # (process group, nbytes) -> algorithm


def calibrate(group=None, timeout: float | timedelta | None = None, repeats: int = 3,
              sizes=CALIBRATION_SIZES) -> model.MeasuredCosts:
    """Measure message costs in `group` (every rank must call it) and keep them for "auto".

    Returns the same model.MeasuredCosts on every rank. On one rank there is nothing to
    measure: the table is empty and choose() answers "ring" (any algorithm is a no-op)."""
    from hpclab.comm.measure import exchange, one_way, reduction_times, slowest_rank
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sizes = sorted(int(n) for n in sizes)
    if dist.get_world_size(group) == 1:
        costs = model.MeasuredCosts({}, {}, {})
    else:
        def both(measure):   # the plain message, and the step that adds what arrives
            return [measure(sizes, repeats=repeats, group=group, timeout=timeout,
                            reduce=reduce) for reduce in (False, True)]

        sends, sends_adding = both(one_way)
        swaps, swaps_adding = both(exchange)
        adds = slowest_rank(reduction_times(sizes, repeats=repeats), group)
        costs = model.MeasuredCosts(sends, swaps, adds, sends_adding, swaps_adding)
    key = _key(group)
    _costs[key] = costs
    for k in [k for k in _choices if k[0] is key]:
        del _choices[k]
    return costs


def costs_of(group=None, timeout: float | timedelta | None = None) -> model.MeasuredCosts:
    """The group's measured costs, calibrating on first use (a collective call)."""
    key = _key(group)
    if key not in _costs:
        calibrate(group, timeout)
    return _costs[key]


def choose(nbytes: int, group=None, timeout: float | timedelta | None = None) -> str:
    """The algorithm the model predicts fastest for an all-reduce of `nbytes` in `group`."""
    key = (_key(group), int(nbytes))
    if key not in _choices:
        p, costs = dist.get_world_size(group), costs_of(group, timeout)
        _choices[key] = "ring" if p == 1 else model.best_algorithm(nbytes, p, costs)
    return _choices[key]


def _key(group):
    return group if group is not None else dist.group.WORLD
