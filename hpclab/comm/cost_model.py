"""The α–β–γ cost model of the all-reduce algorithms, and how to fit it.

A message of n bytes costs α + n·β (α: latency in seconds, β: seconds per byte, 1/β the
bandwidth); reducing n bytes locally costs n·γ. For p ranks and an n-byte vector:

    naive               2(p−1)·(α + nβ) + (p−1)·nγ
    parameter_server    2(p−1)·α₂ + 2(p−1)/p·nβ₂ + (p−1)/p·nγ   (sharded: like the ring)
    ring                2(p−1)·α₂ + 2(p−1)/p·nβ₂ + (p−1)/p·nγ
    ring_pipelined      the ring in k = ⌈n/(p·S)⌉ segments per chunk: 2(p−1)·k·α₂ + … (S = 2 MiB)
    recursive_doubling  log₂p·(α₂ + nβ₂ + nγ)
    halving_doubling    2·log₂p·α₂ + 2(p−1)/p·nβ₂ + (p−1)/p·nγ
    tree                critical path of the binary heap: ≈ 2d(α + nβ + nγ) + 2d(α + nβ),
                        d = ⌊log₂p⌋ (a parent serves its two children one after the other)
    torch               modelled as the ring (gloo's and NCCL's large-message algorithm)
    hierarchical        on N nodes of k ranks, with two link classes (TwoLevel):
                        2(k−1)·α_intra + 2(k−1)/k·nβ_intra + 2(N−1)·α_inter
                        + 2(N−1)/N·nβ_inter + ((k−1)/k + (N−1)/p)·nγ   (hierarchical.py)

When p is not a power of two the recursive algorithms run on p' = 2^⌊log₂p⌋ ranks and
pay 2(α + nβ) + nγ more to fold the extra ranks in and out.

α₂, β₂ are α, β when a rank sends and receives at the same time, as every step of the
ring, parameter server, recursive doubling and halving-doubling does. The lecture's model
assumes full-duplex links, α₂ = α and β₂ = β, which holds on a real network. On one host
the "network" is the CPUs copying through the kernel, both directions compete, and α₂, β₂
are measured separately (`measure.exchange`) — leave them out and the model is the
lecture's.

Bandwidths of a measured all-reduce taking t seconds on n bytes:

    algbw = n / t                   (what the user sees)
    busbw = algbw · 2(p−1)/p        (what each link carried: comparable across p, and
                                     with the ping-pong bandwidth 1/β)

    params = fit(ping_pong_times, reduction_times, exchange_times)   # {bytes: seconds}
    predict("ring", 16 << 20, 4, params);  best_algorithm(16 << 20, 4, params)

In code each formula is a schedule of steps, so that one schedule can be priced two ways:
send(m), exchange(m), add(m) and the reducing steps send_add(m) (m bytes arrive and are
added in) and exchange_add(m). `Params` prices them with one α, β, γ (the closed forms
above); `MeasuredCosts` reads them off tables measured on the group (measure.py, with
the reducing steps timed whole). `TwoLevel` holds two such pricings, one per link class
(inside a node, between nodes), for clusters of several nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hpclab.comm.ring_pipelined import SEGMENT_BYTES


@dataclass
class Params:
    alpha: float                      # s per message
    beta: float                       # s per byte sent, one direction at a time
    gamma: float                      # s per byte reduced
    beta_duplex: float | None = None   # β₂: s per byte while also receiving (None: = β)
    alpha_duplex: float | None = None  # α₂: s per message exchanged (None: = α)

    @property
    def beta2(self) -> float:
        return self.beta if self.beta_duplex is None else self.beta_duplex

    @property
    def alpha2(self) -> float:
        return self.alpha if self.alpha_duplex is None else self.alpha_duplex

    def send(self, m: float) -> float:
        """One m-byte message, one direction: α + m·β."""
        return self.alpha + m * self.beta

    def exchange(self, m: float) -> float:
        """m bytes sent while m bytes arrive: α₂ + m·β₂."""
        return self.alpha2 + m * self.beta2

    def add(self, m: float) -> float:
        """Reducing m bytes into a local buffer: m·γ."""
        return m * self.gamma

    def send_add(self, m: float) -> float:
        """A reducing step: m bytes arrive and are added in, α + m·β + m·γ."""
        return self.send(m) + self.add(m)

    def exchange_add(self, m: float) -> float:
        """m bytes sent while m bytes arrive and are added in: α₂ + m·β₂ + m·γ."""
        return self.exchange(m) + self.add(m)

    def __str__(self) -> str:
        text = (f"α = {self.alpha * 1e6:.1f} µs, β = {self.beta * 1e9:.3f} ns/B "
                f"({link_bandwidth(self.beta)}), γ = {self.gamma * 1e9:.3f} ns/B")
        if self.alpha_duplex is not None:
            text += f", α₂ = {self.alpha_duplex * 1e6:.1f} µs"
        if self.beta_duplex is not None:
            text += f", β₂ = {self.beta_duplex * 1e9:.3f} ns/B ({link_bandwidth(self.beta_duplex)})"
        return text


@dataclass
class MeasuredCosts:
    """Message costs read off measured tables ({bytes: seconds}) instead of one α, β, γ.

    The algorithms' schedules stay the same (the formulas above, step by step); only the
    price of a step changes: send(m) is the measured one-way time of an m-byte message,
    exchange(m) the measured swap, add(m) the measured addition, and the reducing steps
    send_add(m), exchange_add(m) are read off their own tables when given (on one host
    such a step costs more than its parts: what arrives sits in another core's cache).
    Tables are interpolated linearly in log(size)–log(time) between measured sizes and
    linearly in m beyond the largest. It is the α–β–γ model with size-dependent α(m) + m·β(m) (the idea of PLogP, Kielmann et
    al. 2000): on a network β hardly depends on m, but on one host a message leaves the
    caches somewhere between 1 and 64 MiB and its time per byte grows by 2–3×, which no
    single β can follow.
    """
    one_way: dict
    exchanges: dict
    reductions: dict
    one_way_reductions: dict | None = None   # measured reducing steps (measure.one_way /
    exchange_reductions: dict | None = None  # exchange with reduce=True); None: send + add
    # best_algorithm's answers so far, per (bytes, p): the tables never change, and "auto"
    # asks again at every call (interpolating every step of every formula: ~0.1 ms)
    picks: dict = field(default_factory=dict, repr=False, compare=False)

    def send(self, m: float) -> float:
        return _interpolate(self.one_way, m)

    def exchange(self, m: float) -> float:
        return _interpolate(self.exchanges, m)

    def add(self, m: float) -> float:
        return _interpolate(self.reductions, m) if m > 0 else 0.0

    def send_add(self, m: float) -> float:
        table = self.one_way_reductions
        return _interpolate(table, m) if table else self.send(m) + self.add(m)

    def exchange_add(self, m: float) -> float:
        table = self.exchange_reductions
        return _interpolate(table, m) if table else self.exchange(m) + self.add(m)

    def __str__(self) -> str:
        return (f"measured costs at {len(self.one_way)} message sizes "
                f"({min(self.one_way)} B … {max(self.one_way)} B)")


@dataclass
class TwoLevel:
    """Two link classes: between ranks of one node (`intra`: α_intra, β_intra) and between
    nodes (`inter`: α_inter, β_inter, one flow alone on a node's link), ranks numbered node
    by node, `ranks_per_node` = k of them on each node. Each class is priced as above (a
    `Params` or a `MeasuredCosts`); γ is the same everywhere (a local addition).

    Count the flows that share a link. A step of the flat ring on N nodes sends one
    message across each node boundary each way (rank νk+k−1 → (ν+1)k): one flow per
    direction, α_inter + m·β_inter, while the other ranks' messages go inside the nodes at
    the same time; the step waits for the slowest, so it costs the slower class. In the
    hierarchical all-reduce's phase across nodes the k rings run at once and their k flows
    share the node's link: k messages of m bytes cost what one of k·m bytes costs,
    α_inter + k·m·β_inter (`hierarchical` below).

    `flat`, when given, prices a flat algorithm's exchange step as measured while the ring
    runs it (calibrate: every rank sends to r+1 and receives from r−1 at once), instead of
    the slower class alone: on a shared machine the node-internal copies and the flows
    across compete for the same CPUs, and a link that has been busy for a whole step has
    no burst left in its buffers (the virtual cluster's token bucket), so the one flow that
    `inter` times alone from a barrier is the cheaper figure."""

    intra: Params | MeasuredCosts
    inter: Params | MeasuredCosts
    ranks_per_node: int
    flat: Params | MeasuredCosts | None = None
    picks: dict = field(default_factory=dict, repr=False, compare=False)

    def send(self, m: float) -> float:
        return max(self.intra.send(m), self.inter.send(m))

    def exchange(self, m: float) -> float:
        if self.flat is not None:
            return self.flat.exchange(m)
        return max(self.intra.exchange(m), self.inter.exchange(m))

    def add(self, m: float) -> float:
        return self.intra.add(m)

    def send_add(self, m: float) -> float:
        return max(self.intra.send_add(m), self.inter.send_add(m))

    def exchange_add(self, m: float) -> float:
        if self.flat is not None:
            return self.flat.exchange_add(m)
        return max(self.intra.exchange_add(m), self.inter.exchange_add(m))

    def alpha_beta(self) -> dict[str, tuple[float, float]]:
        """{"intra": (α, β), "inter": (α, β)} of the exchanges (a ring step), fitted to
        the tables of a measured class; what the lecture's two-level formula uses (and
        "flat": the flat ring's measured step, when there is one)."""
        out = {}
        classes = [("intra", self.intra), ("inter", self.inter)]
        if self.flat is not None:
            classes.append(("flat", self.flat))
        for name, c in classes:
            if isinstance(c, Params):
                out[name] = (c.alpha2, c.beta2)
            else:
                out[name] = fit_alpha_beta(list(c.exchanges), list(c.exchanges.values()))
        return out

    def __str__(self) -> str:
        text = [f"two link classes, {self.ranks_per_node} ranks per node:"]
        for name, (a, b) in self.alpha_beta().items():
            text.append(f"{name} α = {a * 1e6:.1f} µs, β = {b * 1e9:.3f} ns/B "
                        f"({link_bandwidth(b)})")
        return " ".join(text)


Costs = Params | MeasuredCosts | TwoLevel


def _interpolate(table: dict, m: float) -> float:
    """Time of an m-byte operation from a {bytes: seconds} table (log–log between points,
    proportional to m beyond the largest, the smallest's time below the smallest)."""
    sizes = np.array(sorted(table), dtype=float)
    times = np.array([table[k] for k in sorted(table)], dtype=float)
    if m <= sizes[0]:
        return float(times[0])
    if m >= sizes[-1]:
        return float(times[-1] * m / sizes[-1])
    return float(np.exp(np.interp(math.log(m), np.log(sizes), np.log(times))))


def naive(n: float, p: int, c: Costs) -> float:
    """The root receives and adds p−1 vectors, one after the other, then sends p−1."""
    return (p - 1) * c.send_add(n) + (p - 1) * c.send(n)


def ring(n: float, p: int, c: Costs) -> float:
    """2(p−1) steps, each a chunk of n/p bytes exchanged with the neighbours; p−1 of them
    also add the received chunk."""
    return (p - 1) * c.exchange_add(n / p) + (p - 1) * c.exchange(n / p)


def ring_pipelined(n: float, p: int, c: Costs, segment_bytes: int = SEGMENT_BYTES) -> float:
    """The ring's 2(p−1) steps, each as k messages of n/(p·k) bytes (ring_pipelined.py)."""
    k = max(1, math.ceil(n / p / segment_bytes))
    return k * ring(n / k, p, c)


def recursive_doubling(n: float, p: int, c: Costs) -> float:
    p2 = _p2(p)
    return math.log2(p2) * c.exchange_add(n) + _fold(n, p, c)


def halving_doubling(n: float, p: int, c: Costs) -> float:
    """log₂p halving steps (exchange and add n/2, n/4, … bytes), then log₂p doubling steps
    (exchange the same sizes back, no adds)."""
    p2 = _p2(p)
    steps = int(math.log2(p2))
    halves = [n / 2 ** k for k in range(1, steps + 1)]
    return sum(c.exchange_add(m) + c.exchange(m) for m in halves) + _fold(n, p, c)


def tree(n: float, p: int, c: Costs) -> float:
    """Reduce up the binary heap, then broadcast down it; each parent handles its children
    one after the other (one message at a time per rank)."""
    hop, hop_add = c.send(n), c.send_add(n)

    def reduced(v: int) -> float:      # when node v has the sum of its subtree
        t = 0.0
        for child in (2 * v + 1, 2 * v + 2):
            if child < p:
                t = max(t, reduced(child)) + hop_add
        return t

    def received(v: int, t: float) -> float:   # when the last node under v has the result
        last = t
        for k, child in enumerate(c for c in (2 * v + 1, 2 * v + 2) if c < p):
            last = max(last, received(child, t + (k + 1) * hop))
        return last

    return received(0, reduced(0))


def hierarchical(n: float, p: int, c: Costs) -> float:
    """hierarchical.py on N = p/k nodes: a node's ring reduce-scatters and all-gathers n/k
    bytes over fast links; the k rings across nodes all-reduce n/k bytes each, at once,
    over the node's shared link (a step: k messages of n/p bytes, priced as one of n/N).
    With costs of one link class (Params, MeasuredCosts) all ranks are on one node: the
    ring."""
    if not isinstance(c, TwoLevel):   # one link class: one node (k = p), and it is the ring
        return ring(n, p, c)
    k = c.ranks_per_node
    if p % k:
        raise ValueError(f"ranks_per_node={k} does not divide p={p}")
    N, m = p // k, n / p
    in_node = (k - 1) * c.intra.exchange_add(n / k) + (k - 1) * c.intra.exchange(n / k)
    across = (N - 1) * (c.inter.exchange(k * m) + c.add(m)) + (N - 1) * c.inter.exchange(k * m)
    return in_node + across


# Every all-reduce algorithm of collectives.py, in the order best_algorithm breaks ties.
FORMULAS = {"ring": ring, "recursive_doubling": recursive_doubling,
            "halving_doubling": halving_doubling, "tree": tree,
            "parameter_server": ring, "naive": naive,   # the sharded server: the ring's steps
            "ring_pipelined": ring_pipelined, "hierarchical": hierarchical,
            "torch": ring}   # gloo's, NCCL's: rings


def predict(algorithm: str, nbytes: float, p: int, params: Costs) -> float:
    """Predicted all-reduce time in seconds (0 on one rank: nothing to send)."""
    if algorithm not in FORMULAS:
        raise ValueError(f"no cost formula for algorithm {algorithm!r}; choose one of "
                         f"{list(FORMULAS)}")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    return 0.0 if p == 1 else FORMULAS[algorithm](nbytes, p, params)


def best_algorithm(nbytes: float, p: int, params: Costs, algorithms=None) -> str:
    """The algorithm with the smallest predicted time among `algorithms` (default: ours,
    every formula but "torch"; ties, to rounding: the earlier in FORMULAS). What
    all_reduce(x, algorithm="auto", costs=params) runs."""
    measured = isinstance(params, (MeasuredCosts, TwoLevel))
    memo = params.picks if algorithms is None and measured else {}
    if (nbytes, p) not in memo:
        # "hierarchical" only where there are nodes to be hierarchical about
        skip = {"torch"} | (set() if isinstance(params, TwoLevel) else {"hierarchical"})
        names = algorithms or [a for a in FORMULAS if a not in skip]
        times = {a: predict(a, nbytes, p, params) for a in names}
        best = min(times.values())
        memo[nbytes, p] = next(a for a in names if times[a] <= best * (1 + 1e-9))
    return memo[nbytes, p]


def alg_bandwidth(nbytes: float, seconds: float) -> float:
    return nbytes / seconds


def bus_bandwidth(nbytes: float, seconds: float, p: int) -> float:
    return alg_bandwidth(nbytes, seconds) * 2 * (p - 1) / p


LARGE = 1 << 20   # from here on a message's time is bandwidth, not latency


def fit_alpha_beta(nbytes, seconds, large: int = LARGE) -> tuple[float, float]:
    """(α, β) of t = α + n·β from one-way ping-pong times, least squares in *relative*
    errors so that 4-byte messages count as much as 64 MiB ones. β is then refitted on the
    messages of at least `large` bytes alone: on a real machine the time per byte drifts
    with size (caches, memory traffic), and β matters only where n·β dominates α."""
    n, t = np.asarray(nbytes, float), np.asarray(seconds, float)
    if n.size < 2 or np.unique(n).size < 2:
        raise ValueError(f"need times for at least two message sizes, got sizes {n.tolist()}")
    design = np.stack([np.ones_like(n), n], axis=1) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    alpha = max(float(alpha), 0.0)
    big = n >= large
    if big.any():
        w = n[big] / t[big]
        beta = float(np.dot(w, (t[big] - alpha) / t[big]) / np.dot(w, w))
    return alpha, max(float(beta), 0.0)


def fit_gamma(nbytes, seconds, large: int = LARGE) -> float:
    """γ of t = n·γ, least squares in relative errors over the vectors of at least
    `large` bytes (all of them if none is that large). γ too grows with n once the
    vectors leave the cache: one γ is a compromise."""
    n, t = np.asarray(nbytes, float), np.asarray(seconds, float)
    if (n >= large).any():
        n, t = n[n >= large], t[n >= large]
    ratio = n / t
    return float(ratio.sum() / np.dot(ratio, ratio))


def fit(ping_pong: dict, reductions: dict, exchanges: dict | None = None) -> Params:
    """Params from measured {bytes: seconds}: one-way ping-pong times (α, β), local
    reduction times (γ) and, optionally, bidirectional exchange times (β₂)."""
    alpha, beta = fit_alpha_beta(list(ping_pong), list(ping_pong.values()))
    gamma = fit_gamma(list(reductions), list(reductions.values()))
    alpha2 = beta2 = None
    if exchanges:
        alpha2, beta2 = fit_alpha_beta(list(exchanges), list(exchanges.values()))
    return Params(alpha, beta, gamma, beta2, alpha2)


def link_bandwidth(beta: float) -> str:
    """1/β as text, e.g. "2.57 GB/s" (β = 0 when no measured size was bandwidth-bound)."""
    return f"{1e-9 / beta:.2f} GB/s" if beta > 0 else "β too small to measure: use larger sizes"


def _p2(p: int) -> int:
    return 1 << (p.bit_length() - 1)


def _fold(n: float, p: int, c: Costs) -> float:
    return 0.0 if p == _p2(p) else c.send_add(n) + c.send(n)
