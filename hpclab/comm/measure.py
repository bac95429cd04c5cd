"""Measure the machine: α and β by ping-pong, γ by local reduction, collectives by timing.

Run SPMD on every rank of an initialised group (an engine's `cluster.run`, run_local):

    costs = calibrate(group)                   # the group's message costs, for "auto"
    all_reduce(x, algorithm="auto", costs=costs)

    pp = ping_pong([4, 4096, 1 << 20])         # {nbytes: one-way seconds}, on every rank
    ow = one_way([4, 4096, 1 << 20])           # {nbytes: seconds}, 0 -> 1 from a barrier
    ex = exchange([4, 4096, 1 << 20])          # {nbytes: seconds}, all ranks in pairs at once
    sh = shift([4, 4096, 1 << 20])             # {nbytes: seconds}, every rank r → r+1 at once
    owr = one_way(sizes, reduce=True)          # ... and the receiver adds what arrives
    exr = exchange(sizes, reduce=True)         # ... and every rank adds what arrives
    red = reduction_times([1 << 20, 1 << 24])  # {nbytes: seconds of a.add_(b)}, local
    params = cost_model.fit(pp, red, ex)
    ts = time_all_reduces(x, ["ring", "torch"])  # {algorithm: seconds}, same on every rank

Every figure is the *minimum* over `repeats` runs: on a shared machine the other users
only ever add time, so the minimum is the most repeatable estimate of what the hardware
and the algorithm cost. A collective's time is the slowest rank's (it is over when the
last rank is done), each run starting from a barrier.

`calibrate` measures what algorithm="auto" prices its choice with (as MPI libraries and
NCCL choose by size from a cost model): every step kind above at powers of 4 from 4 B to
16 MiB, about a second, the slowest rank's times on every rank, so that every rank picks
the same algorithm (a collective must run the same algorithm everywhere). On a cluster of
several nodes it measures both link classes (cost_model.TwoLevel) and the flat ring's own
step (`shift`: the one flow per direction on each node link together with the copies
inside the nodes, as the flat ring runs them).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from hpclab.comm.collectives import all_reduce
from hpclab.comm.cost_model import Costs, MeasuredCosts, TwoLevel
from hpclab.comm.p2p import Comm

CALIBRATION_SIZES = tuple(4 << (2 * k) for k in range(12))   # 4 B, 16 B, …, 16 MiB


def calibrate(group=None, timeout: float | timedelta | None = None, repeats: int = 3,
              sizes=CALIBRATION_SIZES, ranks_per_node: int | None = None) -> Costs:
    """The message costs of `group`, measured (collective: every rank must call it), to
    pass as all_reduce(..., algorithm="auto", costs=...). The same on every rank; on one
    rank there is nothing to measure and the tables are empty.

    On several nodes of k ≥ 2 ranks each (`ranks_per_node`; default for the default group:
    LOCAL_WORLD_SIZE, as hpclab.connect, run_local and torchrun set it) the costs are
    `TwoLevel`: one set of tables for the links inside a node (ranks ℓ, ℓ+1 of every node
    at once, as the node rings run), one for a link between nodes (rank 0 and rank k,
    alone on it), and the flat ring's step as it runs (`shift`, plain and adding, p − 1
    steps back to back as in each half of the ring: what TwoLevel.flat prices flat
    algorithms' exchanges with)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sizes = sorted(int(n) for n in sizes)
    p = dist.get_world_size(group)
    if p == 1:
        return MeasuredCosts({}, {}, {})
    k = ranks_per_node
    if k is None:
        k = int(os.environ.get("LOCAL_WORLD_SIZE", p)) if group is None else p
    if k < 2 or k >= p or p % k:
        return _tables(sizes, repeats, group, timeout, (0, 1), None)
    intra = _tables(sizes, repeats, group, timeout, (0, 1),
                    [(v * k + j, v * k + j + 1) for v in range(p // k) for j in range(0, k - 1, 2)])
    inter = _tables(sizes, repeats, group, timeout, (0, k), [(0, k)])
    steps = [shift(sizes, repeats=repeats, group=group, timeout=timeout, reduce=reduce,
                   steps=p - 1) for reduce in (False, True)]
    flat = MeasuredCosts(inter.one_way, steps[0], inter.reductions, inter.one_way_reductions,
                         steps[1])
    return TwoLevel(intra, inter, k, flat)


def _tables(sizes, repeats, group, timeout, pair, pairs) -> MeasuredCosts:
    """One link class's tables: one-way messages over `pair`, exchanges between `pairs`."""
    def both(measure, **where):   # the plain message, and the step that adds what arrives
        return [measure(sizes, repeats=repeats, group=group, timeout=timeout, reduce=reduce,
                        **where) for reduce in (False, True)]

    sends, sends_adding = both(one_way, pair=pair)
    swaps, swaps_adding = both(exchange, pairs=pairs)
    adds = slowest_rank(reduction_times(sizes, repeats=repeats), group)
    return MeasuredCosts(sends, swaps, adds, sends_adding, swaps_adding)


def ping_pong(sizes, repeats: int = 10, group=None, timeout=None) -> dict[int, float]:
    """One-way message time (half a round trip) between ranks 0 and 1, per size in bytes.
    Goes through the same send/recv path as the algorithms, so α includes their overhead."""
    comm = Comm.of(group, timeout, collective="ping_pong", algorithm="naive", trace=None)
    times = torch.zeros(len(sizes), dtype=torch.float64)
    if comm.world_size > 1 and comm.rank < 2:
        peer = 1 - comm.rank
        for _ in range(3):   # warm up the connection: the very first messages are slow
            comm.exchange(times, peer, torch.empty_like(times), peer, step=0, phase="warm-up")
        for i, nbytes in enumerate(sizes):
            buf = torch.zeros(max(int(nbytes), 1), dtype=torch.uint8)
            best = float("inf")
            for j in range(repeats + 1):    # +1: the first round trip sets up buffers
                start = time.perf_counter()
                if comm.rank == 0:
                    comm.send(buf, peer, step=0, phase="ping")
                    comm.recv(buf, peer, step=1, phase="pong")
                else:
                    comm.recv(buf, peer, step=0, phase="ping")
                    comm.send(buf, peer, step=1, phase="pong")
                if j > 0:
                    best = min(best, (time.perf_counter() - start) / 2)
            times[i] = best
    if comm.world_size > 1:
        dist.broadcast(times, group_src=0, group=group)
    return {int(n): float(t) for n, t in zip(sizes, times)}


def one_way(sizes, repeats: int = 10, group=None, timeout=None,
            reduce: bool = False, pair: tuple[int, int] = (0, 1)) -> dict[int, float]:
    """Time for rank 0 to send n bytes to rank 1 (or pair = (src, dst)), from a barrier to
    the slower of the two:
    a one-way message timed the way the collectives are (and exchange below), so that it
    includes leaving the barrier together. The ping-pong's half round trip does not; it
    is the textbook α + nβ, this is what one step of the tree or naive algorithm costs.

    reduce=True: rank 1 adds what arrives into its own float32 vector as it arrives
    (`Comm.recv_reduce`, exactly what a parent in the tree or naive's root does): the
    price of a reducing step, send(n) + add(n) in the α–β–γ model."""
    comm = Comm.of(group, timeout, collective="one_way", algorithm="naive", trace=None)
    src, dst = pair

    def operation(nbytes: int):
        buf = _vector(nbytes, reduce)
        if comm.world_size > 1 and comm.rank == src:
            return lambda: comm.send(buf, dst, step=0, phase="one way")
        if comm.rank == dst and reduce:
            return lambda: comm.recv_reduce(buf, src, "sum", step=0, phase="one way")
        if comm.rank == dst:
            return lambda: comm.recv(buf, src, step=0, phase="one way")
        return lambda: None

    return _from_barrier(sizes, repeats, group, operation)


def exchange(sizes, repeats: int = 10, group=None, timeout=None,
             reduce: bool = False, pairs=None) -> dict[int, float]:
    """Time for ranks 2i and 2i+1 (or the given `pairs` of ranks; the others wait) to swap
    n bytes, every pair at once (a bidirectional
    ping-pong): what one step of the ring, recursive doubling or halving-doubling costs.
    Equal to the one-way time on a full-duplex network; slower on one host, where the
    same CPUs copy both directions (and all p ranks share the cores).

    reduce=True: each rank adds what arrives into its own float32 vector while it sends
    another (`Comm.exchange_reduce`, a reduce-scatter step of the ring or halving-doubling):
    exchange(n) + add(n) in the α–β–γ model. Measured as one step because on one host it
    costs more than its two parts timed apart (course VM, 1 MiB: the add inside the step
    takes 0.35 ms, a local add 0.04 ms): the kernel has just written the data on behalf of
    another thread, often on the other core, so it is not in this core's cache."""
    comm = Comm.of(group, timeout, collective="exchange", algorithm="naive", trace=None)
    partner = comm.rank ^ 1
    if pairs is not None:
        partner = next((b if a == comm.rank else a for a, b in pairs if comm.rank in (a, b)),
                       comm.world_size)

    if partner >= comm.world_size:
        partner = None                        # no pair: this rank waits
    return _from_barrier(sizes, repeats, group,
                         _swap(comm, partner, partner, reduce, "exchange"))


def shift(sizes, repeats: int = 10, group=None, timeout=None,
          reduce: bool = False, steps: int = 1) -> dict[int, float]:
    """Time for every rank r to send n bytes to r+1 while it receives n bytes from r−1
    (indices mod p), all at once from a barrier: one step of the flat ring, exactly as
    ring.py runs it. On nodes numbered node by node one message crosses each node boundary
    each way per step, while the others are copied inside the nodes; on one host all p
    ranks' copies share the cores. reduce=True: each rank adds what arrives (a
    reduce-scatter step). steps > 1: a timed run is that many steps back to back, as the
    ring runs its 2(p−1), and the figure is its time / steps — the price of a step that
    follows another (a shaped link's token bucket, full after the barrier's pause, lets
    the first one through faster)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    comm = Comm.of(group, timeout, collective="shift", algorithm="ring", trace=None)
    right, left = (comm.rank + 1) % comm.world_size, (comm.rank - 1) % comm.world_size

    if comm.world_size == 1:
        right = left = None
    one_step = _swap(comm, right, left, reduce, "shift")

    def operation(nbytes: int):
        step = one_step(nbytes)

        def back_to_back():
            for _ in range(steps):
                step()
        return back_to_back

    times = _from_barrier(sizes, repeats, group, operation)
    return {n: t / steps for n, t in times.items()}


def _swap(comm, dst, src, reduce: bool, phase: str):
    """The operation `_from_barrier` times: send n bytes to `dst` while receiving n from
    `src` (adding them in with reduce=True); nothing where dst is None."""
    def operation(nbytes: int):
        if dst is None:
            return lambda: None
        mine, into = _vector(nbytes, reduce), _vector(nbytes, reduce)
        if reduce:
            return lambda: comm.exchange_reduce(mine, dst, into, src, "sum", step=0,
                                                phase=phase)
        return lambda: comm.exchange(mine, dst, into, src, step=0, phase=phase)
    return operation


def _vector(nbytes: int, reduce: bool) -> torch.Tensor:
    """n bytes to send: raw bytes, or float32 where they are added (what gradients are)."""
    if reduce:
        return torch.zeros(max(nbytes // 4, 1), dtype=torch.float32)
    return torch.zeros(max(nbytes, 1), dtype=torch.uint8)


def _from_barrier(sizes, repeats: int, group, operation) -> dict[int, float]:
    """For each size, `operation(nbytes)` gives the call to time; every run starts at a
    barrier (one untimed pass first), a run's time is the slowest rank's, and the best of
    `repeats` runs is kept. The sizes take turns (pass j runs every size once), as the
    algorithms do in `time_all_reduces`: a burst of load from elsewhere spoils one run of
    a few sizes, which the best of the other passes replaces, rather than every run of one
    size. Same figures on every rank."""
    runs = [operation(int(nbytes)) for nbytes in sizes]
    times = torch.zeros(len(sizes), repeats, dtype=torch.float64)
    for j in range(-1, repeats):
        for i, run in enumerate(runs):
            dist.barrier(group=group)
            start = time.perf_counter()
            run()
            if j >= 0:
                times[i, j] = time.perf_counter() - start
    if dist.get_world_size(group) > 1:
        dist.all_reduce(times, op=dist.ReduceOp.MAX, group=group)
    return {int(n): float(t) for n, t in zip(sizes, times.min(dim=1).values)}


def slowest_rank(times: dict, group=None) -> dict:
    """Local times (all ranks ran at once and shared the cores) → each one's value on the
    slowest rank, the same dict on every rank."""
    t = torch.tensor(list(times.values()), dtype=torch.float64)
    if dist.get_world_size(group) > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return dict(zip(times, t.tolist()))


def reduction_times(sizes, dtype=torch.float32, repeats: int = 10) -> dict[int, float]:
    """Seconds to add two local vectors of `nbytes` (what one reduction step costs)."""
    out = {}
    for nbytes in sizes:
        n = max(int(nbytes) // torch.empty(0, dtype=dtype).element_size(), 1)
        a, b = torch.ones(n, dtype=dtype), torch.ones(n, dtype=dtype)
        best = float("inf")
        for _ in range(repeats + 1):
            start = time.perf_counter()
            a.add_(b)
            best = min(best, time.perf_counter() - start)
        out[int(nbytes)] = best
    return out


def time_all_reduces(x: torch.Tensor, algorithms, repeats: int = 5, warmup: int = 1,
                     group=None, timeout=None) -> dict[str, float]:
    """Best-of-`repeats` time in seconds of hpclab.comm.all_reduce(x, algorithm=a) for
    each algorithm a, each run from a barrier to the slowest rank's finish (the same on
    every rank); the algorithms take turns run by run, so that a burst of load from other
    users hits all of them rather than one."""
    times = torch.zeros(len(algorithms), repeats, dtype=torch.float64)
    for i in range(-warmup, repeats):
        for a, algorithm in enumerate(algorithms):
            dist.barrier(group=group)
            start = time.perf_counter()
            all_reduce(x, algorithm=algorithm, group=group, timeout=timeout)
            if i >= 0:
                times[a, i] = time.perf_counter() - start
    dist.all_reduce(times, op=dist.ReduceOp.MAX, group=group)
    return {algorithm: float(times[a].min()) for a, algorithm in enumerate(algorithms)}
