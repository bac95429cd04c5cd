"""Throughput, speed-up, scaling efficiency and Amdahl's law — the numbers a lecture plots.

With T(p) the time per unit of work on p workers:

    speed-up        S(p) = T(1) / T(p)
    efficiency      E(p) = S(p) / p                       (strong scaling: fixed total work)
    weak efficiency E_w(p) = T(1) / T(p)                   (fixed work *per worker*:
                                                           `speedup` of the step times)
    Amdahl          S(p) = 1 / ((1 − f) + f / p)           f = parallel fraction
    Gustafson       S(p) = (1 − f) + f · p                 (work grows with p)

`fit_amdahl` finds the f that best explains measured speed-ups (least squares on S):
with f known, S(∞) = 1/(1 − f) is the ceiling no number of GPUs will break.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_workers(p) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if np.any(p < 1):
        raise ValueError(f"worker counts must be >= 1, got {p.tolist()}")
    return p


def throughput(samples: float, seconds: float) -> float:
    """Samples (or tokens) per second."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    return samples / seconds


def speedup(t1: float, tp: Sequence[float] | float) -> np.ndarray:
    """S(p) = T(1) / T(p)."""
    tp = np.asarray(tp, dtype=float)
    if t1 <= 0 or np.any(tp <= 0):
        raise ValueError(f"times must be > 0, got T(1)={t1}, T(p)={tp.tolist()}")
    return t1 / tp


def efficiency(t1: float, tp, p) -> np.ndarray:
    """Strong-scaling efficiency E(p) = S(p) / p."""
    return speedup(t1, tp) / _check_workers(p)


def amdahl(p, f: float) -> np.ndarray:
    """Amdahl's predicted speed-up S(p) = 1 / ((1 − f) + f/p) for parallel fraction f."""
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"parallel fraction f must be in [0, 1], got {f}")
    p = _check_workers(p)
    return 1.0 / ((1.0 - f) + f / p)


def gustafson(p, f: float) -> np.ndarray:
    """Gustafson's scaled speed-up S(p) = (1 − f) + f·p."""
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"parallel fraction f must be in [0, 1], got {f}")
    return (1.0 - f) + f * _check_workers(p)


def fit_amdahl(p, s) -> float:
    """The parallel fraction f in [0, 1] minimising Σ (S_measured(p) − amdahl(p, f))².

    S is monotonic in f, so a bounded scalar search is exact enough and needs no start
    value (golden-section search on [0, 1], 1e-10 tolerance).
    """
    p, s = _check_workers(p), np.asarray(s, dtype=float)
    if p.shape != s.shape or p.size == 0:
        raise ValueError(f"p and s must be non-empty and the same length, got {p.size} and {s.size}")

    def sse(f):
        return float(np.sum((s - amdahl(p, f)) ** 2))

    lo, hi = 0.0, 1.0
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    while hi - lo > 1e-10:
        if sse(a) < sse(b):
            hi, b = b, a
            a = hi - ratio * (hi - lo)
        else:
            lo, a = a, b
            b = lo + ratio * (hi - lo)
    return (lo + hi) / 2.0
