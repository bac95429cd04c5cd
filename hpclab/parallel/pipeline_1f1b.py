"""The 1F1B pipeline schedule (PipeDream-Flush; Narayanan et al. 2021, section 2.2).

p stages on p ranks, m micro-batches. GPipe runs all m forwards before any backward, so
every stage holds the activations of all m micro-batches. 1F1B starts each backward as
early as possible. Rank r runs three phases:

    warm-up     w_r = min(p − r − 1, m) forwards          F0 … F_{w_r − 1}
    steady      m − w_r times: one forward, one backward  F_{w_r + k}, B_k
    cool-down   the last w_r backwards                     B_{m − w_r} … B_{m − 1}

The last rank has no warm-up (F0 B0 F1 B1 …); rank r is p − r − 1 micro-batches behind it,
the time micro-batch 0 needs to come back. At its peak rank r holds

    n_r = min(m, p − r)   micro-batches in flight   (GPipe: m)

so the first stage holds p, not m, micro-batches' activations. The step takes as long as
GPipe's: with equal stages (forward t_f, backward t_b) it is (m + p − 1)(t_f + t_b), of
which each rank computes m(t_f + t_b), so the idle fraction is the same

    bubble(p, m) = (p − 1) / (m + p − 1).

1F1B buys memory, not time; interleaving (pipeline_interleaved.py) buys time.

    >>> one_f_one_b(p=4, m=6, r=1)
    [F0, F1, F2, B0, F3, B1, F4, B2, F5, B3, B4, B5]
"""

from __future__ import annotations

from hpclab.parallel.pipeline_schedule import Action


def one_f_one_b(p: int, m: int, r: int) -> list[Action]:
    """Rank r's 1F1B order of forwards and backwards."""
    _check(p, m, r)
    warmup = min(p - r - 1, m)
    actions = [Action("F", i) for i in range(warmup)]
    for k in range(m - warmup):                        # steady state
        actions += [Action("F", warmup + k), Action("B", k)]
    actions += [Action("B", i) for i in range(m - warmup, m)]   # cool-down
    return actions


def in_flight(p: int, m: int, r: int) -> int:
    """n_r = min(m, p − r): micro-batches whose activations rank r holds at its peak."""
    _check(p, m, r)
    return min(m, p - r)


def bubble_fraction(p: int, m: int) -> float:
    """(p − 1)/(m + p − 1), as GPipe: the idle fraction of a step with equal stages."""
    _check(p, m, 0)
    return (p - 1) / (m + p - 1)


def _check(p: int, m: int, r: int) -> None:
    if p < 1 or m < 1:
        raise ValueError(f"p and m must be >= 1, got p={p}, m={m}")
    if not 0 <= r < p:
        raise ValueError(f"rank r must be in 0..{p - 1} for p={p}, got {r}")
