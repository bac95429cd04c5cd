"""Interleaved 1F1B (Narayanan et al. 2021, section 2.2, Megatron-LM's schedule).

Cut the model into p·v pieces instead of p: rank r holds v model chunks, the virtual
stages s = c·p + r for c = 0 … v−1 (p = 2, v = 2: rank 0 holds pieces 0 and 2, rank 1
pieces 1 and 3), so a micro-batch travels around the ranks v times. Each chunk costs 1/v
of a stage, so the pipe fills and drains v times faster: with equal stages (forward t_f,
backward t_b per whole stage) the bubble is (p − 1)(t_f + t_b)/v in a step of
m(t_f + t_b) + (p − 1)(t_f + t_b)/v, the idle fraction

    bubble(p, m, v) = (p − 1) / (v·m + p − 1),

at the price of v times as many messages. Megatron's order: micro-batches go through in
groups of p; rank r's k-th forward (k = 0 … v·m − 1) and k-th backward are

    chunk   c_F(k) = ⌊(k mod p·v) / p⌋          c_B(k) = v − 1 − c_F(k)
    micro   i(k)   = ⌊k / (p·v)⌋·p + (k mod p)

with warm-up w_r = min(2(p − r − 1) + (v − 1)·p, v·m) forwards (all v·m when m = p), then
one forward one backward, then the cool-down backwards. Like Megatron we require m to be
a multiple of p. At its peak rank r holds

    n_r = min(v·m, w_r + 1) chunks in flight,   rank 0: v·p + p − 1 = v·p·(1 + (p−1)/(v·p))

i.e. L·(1 + (p − 1)/(p·v)) layers' worth (Korthikanti et al. 2022, section 4.2.3), a little
more than 1F1B's L.

    >>> print(table(interleaved_1f1b, p=2, m=4, v=2))
    rank 0: F0 F1 F0.1 F1.1 F2 B0.1 F3 B1.1 F2.1 B0 F3.1 B1 B2.1 B3.1 B2 B3
    rank 1: F0 F1 F0.1 B0.1 F1.1 B1.1 F2 B0 F3 B1 F2.1 B2.1 F3.1 B3.1 B2 B3
"""

from __future__ import annotations

from torch import nn

from hpclab.parallel.pipeline import split_sequential
from hpclab.parallel.pipeline_schedule import Action


def interleaved_1f1b(p: int, m: int, r: int, v: int = 2) -> list[Action]:
    """Rank r's interleaved 1F1B order (Megatron-LM), v model chunks per rank."""
    _check(p, m, r, v)
    total = v * m
    warmup = total if m == p else min(2 * (p - r - 1) + (v - 1) * p, total)

    def chunk(k: int, forward: bool) -> int:
        c = (k % (p * v)) // p
        return c if forward else v - 1 - c

    def micro(k: int) -> int:
        return (k // (p * v)) * p + k % p

    actions = [Action("F", micro(k), chunk(k, True)) for k in range(warmup)]
    for k in range(total - warmup):                    # steady state
        f = warmup + k
        actions += [Action("F", micro(f), chunk(f, True)), Action("B", micro(k), chunk(k, False))]
    actions += [Action("B", micro(k), chunk(k, False)) for k in range(total - warmup, total)]
    return actions


def in_flight(p: int, m: int, r: int, v: int = 2) -> int:
    """n_r = min(v·m, w_r + 1): model chunks' activations rank r holds at its peak."""
    _check(p, m, r, v)
    if m == p:
        return v * m
    return min(v * m, 2 * (p - r - 1) + (v - 1) * p + 1)


def bubble_fraction(p: int, m: int, v: int) -> float:
    """(p − 1)/(v·m + p − 1): the idle fraction of a step with equal stages."""
    _check(p, m, 0, v)
    return (p - 1) / (v * m + p - 1)


def split_interleaved(model: nn.Sequential, p: int, v: int, r: int) -> list[nn.Sequential]:
    """Rank r's v chunks of `model` cut into p·v pieces: pieces r, p + r, 2p + r, …"""
    pieces = split_sequential(model, p * v)
    return [pieces[c * p + r] for c in range(v)]


def _check(p: int, m: int, r: int, v: int) -> None:
    if p < 1 or m < 1 or v < 1:
        raise ValueError(f"p, m and v must be >= 1, got p={p}, m={m}, v={v}")
    if m % p:
        raise ValueError(f"interleaved 1F1B needs the number of micro-batches m to be a "
                         f"multiple of p (as Megatron-LM does), got m={m}, p={p}: use "
                         f"m={(m // p + 1) * p}")
    if not 0 <= r < p:
        raise ValueError(f"rank r must be in 0..{p - 1} for p={p}, got {r}")
