"""Matplotlib pictures of training runs and teaching problems.

    fig, ax = plt.subplots()
    plot_losses(history, ax=ax)                 # train loss per step, val loss per eval
    plot_throughput(history)                    # samples/s (or tokens/s) per step
    plot_time_split(history)                    # forward / backward / comm / optim
    plot_contours(ROSENBROCK, {"Adam": path})   # 2-D function + optimizer trajectories
    plot_regression_fit(data.X, data.y, {"GD": theta})

Each function draws on `ax` (a new figure when None) and returns the axes, so notebooks
can compose figures and the headless demo can save them (`save_figure`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _axes(ax):
    return plt.subplots(figsize=(6, 4))[1] if ax is None else ax


def _smooth(values, window: int):
    if window <= 1 or len(values) < window:
        return np.asarray(values, dtype=float)
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_losses(history, ax=None, label: str = "", smooth: int = 1, log: bool = False):
    """Training loss per step (optionally a moving average of `smooth` steps) and the
    validation loss at each evaluation."""
    ax = _axes(ax)
    prefix = f"{label} " if label else ""
    steps, losses = history.steps(), _smooth(history.losses(), smooth)
    ax.plot(steps[len(steps) - len(losses):], losses, label=f"{prefix}train")
    if history.evals:
        ax.plot(history.val_steps(), history.val_losses(), "o-", label=f"{prefix}validation")
    if history.best_step is not None:
        ax.axvline(history.best_step, color="gray", ls=":", label="best (early stopping)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    ax.legend()
    return ax


def plot_throughput(history, ax=None, tokens: bool | None = None, label: str = ""):
    """Samples/s per step, or tokens/s when the records carry tokens (text models)."""
    ax = _axes(ax)
    if tokens is None:
        tokens = any("tokens" in r.extra for r in history.records)
    if tokens:
        values = [r.extra.get("tokens_per_s", 0.0) for r in history.records]
    else:
        values = [r.samples_per_s for r in history.records]
    ax.plot(history.steps(), values, label=label or None)
    ax.set_xlabel("step")
    ax.set_ylabel("tokens/s" if tokens else "samples/s")
    if label:
        ax.legend()
    return ax


def plot_time_split(history, ax=None):
    """Mean seconds per step in each phase, as one stacked bar."""
    ax = _axes(ax)
    phases = ["t_forward", "t_backward", "t_comm", "t_optim"]
    recs = history.records
    means = {p: np.mean([getattr(r, p) for r in recs]) if recs else 0.0 for p in phases}
    other = (np.mean([r.t_step for r in recs]) if recs else 0.0) - sum(means.values())
    bottom = 0.0
    for name, value in [*means.items(), ("t_other", max(other, 0.0))]:
        ax.bar(["step"], [value * 1e3], bottom=bottom, label=name[2:])
        bottom += value * 1e3
    ax.set_ylabel("ms per step")
    ax.legend()
    return ax


def plot_contours(fn, trajectories: dict | None = None, ax=None, levels: int = 30,
                  n: int = 200):
    """Log-spaced contours of a 2-D function, its minima (★) and optimizer paths."""
    ax = _axes(ax)
    X, Y, Z = fn.grid(n)
    shifted = Z - Z.min() + 1e-3   # log levels need positive values (the saddle dips < 0)
    ax.contour(X, Y, shifted, levels=np.geomspace(shifted.min(), shifted.max(), levels),
               cmap="viridis", linewidths=0.7)
    for x, y in fn.minima:
        ax.plot(x, y, "r*", ms=12)
    for name, path in (trajectories or {}).items():
        path = np.asarray(path)
        ax.plot(path[:, 0], path[:, 1], ".-", ms=2, lw=1, label=name)
    ax.set_xlim(*fn.xlim)
    ax.set_ylim(*fn.ylim)
    ax.set_title(fn.name)
    if trajectories:
        ax.legend()
    return ax


def plot_regression_fit(X: np.ndarray, y: np.ndarray, thetas: dict, ax=None):
    """Data (one feature + bias column) and the line y = θ₀ + θ₁x for each θ."""
    ax = _axes(ax)
    if X.shape[1] != 2:
        raise ValueError(f"plot_regression_fit draws one feature (X of shape (n, 2) with "
                         f"the bias column), got X of shape {X.shape}")
    x = X[:, 1]
    ax.scatter(x, y, s=12, alpha=0.6, label="data")
    grid = np.linspace(x.min(), x.max(), 50)
    for name, theta in thetas.items():
        ax.plot(grid, theta[0] + theta[1] * grid, label=name)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend()
    return ax


def save_figure(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
