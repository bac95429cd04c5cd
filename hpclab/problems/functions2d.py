"""Two-dimensional test functions: the pictures behind every optimizer lecture.

Each `Function2D` works on numpy arrays (for contour plots) and on torch tensors (for
optimizers), because it only uses `+ - * **`:

    from hpclab.problems import ROSENBROCK, trajectory
    X, Y, Z = ROSENBROCK.grid(200)                      # contour data
    path = trajectory(ROSENBROCK, torch.optim.Adam, steps=500, lr=0.02)   # (501, 2) points

The analytic gradient `grad(x, y)` is written out next to `f` so a student can compare it
with autograd (the tests do, in float64).

    quadratic   f = ½(a x² + b y²)                 minimum (0, 0), condition number κ = b/a
    rosenbrock  f = (1 − x)² + 100 (y − x²)²        minimum (1, 1), a long curved valley
    beale       f = (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²   minimum (3, ½)
    saddle      f = x² − y² + y⁴/4                 saddle at (0, 0), minima (0, ±√2), f = −1
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Function2D:
    name: str
    f: Callable                      # f(x, y) -> value, numpy or torch
    grad: Callable                   # grad(x, y) -> (df/dx, df/dy)
    minima: tuple                    # ((x*, y*), ...): every global minimum
    f_min: float
    start: tuple                     # a start point that makes an instructive picture
    xlim: tuple
    ylim: tuple

    def __call__(self, x, y):
        return self.f(x, y)

    def loss(self, p: torch.Tensor) -> torch.Tensor:
        """f at a point stored as a tensor of shape (2,): what an optimizer minimises."""
        return self.f(p[0], p[1])

    def grid(self, n: int = 200):
        """(X, Y, Z) on an n×n grid over (xlim, ylim), for `plt.contour(X, Y, Z)`."""
        if n < 2:
            raise ValueError(f"n must be >= 2, got {n}")
        X, Y = np.meshgrid(np.linspace(*self.xlim, n), np.linspace(*self.ylim, n))
        return X, Y, self.f(X, Y)


# The analytic gradients below are what the lecture derives on the board; the tests check
# them against autograd.

def quadratic(a: float = 1.0, b: float = 10.0) -> Function2D:
    """½(a x² + b y²): the simplest ill-conditioned bowl; κ = b/a sets the zig-zag."""
    if a <= 0 or b <= 0:
        raise ValueError(f"a and b must be > 0 for a bowl with one minimum, got a={a}, b={b}")
    return Function2D(
        name=f"quadratic (κ={b / a:g})",
        f=lambda x, y: 0.5 * (a * x**2 + b * y**2),
        grad=lambda x, y: (a * x, b * y),
        minima=((0.0, 0.0),), f_min=0.0, start=(-4.0, 1.5),
        xlim=(-5.0, 5.0), ylim=(-2.5, 2.5))


ROSENBROCK = Function2D(
    name="rosenbrock",
    f=lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
    grad=lambda x, y: (-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)),
    minima=((1.0, 1.0),), f_min=0.0, start=(-1.5, 2.0),
    xlim=(-2.0, 2.0), ylim=(-1.0, 3.0))


def _beale_terms(x, y):
    return 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3


def _beale(x, y):
    t1, t2, t3 = _beale_terms(x, y)
    return t1**2 + t2**2 + t3**2


def _beale_grad(x, y):
    t1, t2, t3 = _beale_terms(x, y)
    dx = 2 * t1 * (y - 1) + 2 * t2 * (y**2 - 1) + 2 * t3 * (y**3 - 1)
    dy = 2 * t1 * x + 2 * t2 * (2 * x * y) + 2 * t3 * (3 * x * y**2)
    return dx, dy


BEALE = Function2D(
    name="beale", f=_beale, grad=_beale_grad,
    minima=((3.0, 0.5),), f_min=0.0, start=(1.0, 1.5),
    xlim=(-4.5, 4.5), ylim=(-4.5, 4.5))

SADDLE = Function2D(
    name="saddle",
    f=lambda x, y: x**2 - y**2 + 0.25 * y**4,
    grad=lambda x, y: (2 * x, -2 * y + y**3),
    minima=((0.0, math.sqrt(2.0)), (0.0, -math.sqrt(2.0))), f_min=-1.0,
    # Slightly off the ridge y = 0: plain GD crawls past the saddle, momentum escapes fast.
    start=(-2.0, 1e-3),
    xlim=(-2.5, 2.5), ylim=(-2.5, 2.5))

QUADRATIC = quadratic()
FUNCTIONS = {"quadratic": QUADRATIC, "rosenbrock": ROSENBROCK, "beale": BEALE,
             "saddle": SADDLE}


def trajectory(fn: Function2D, optimizer_cls, steps: int = 100, start=None,
               dtype=torch.float64, **optimizer_kwargs) -> np.ndarray:
    """Run `optimizer_cls([p], **optimizer_kwargs)` on fn from `start` (default fn.start).

    Returns the visited points as an array of shape (steps + 1, 2), first row = start.
    Any torch.optim-style optimizer works (hpclab.optim's or torch.optim's).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    p = torch.tensor(fn.start if start is None else start, dtype=dtype, requires_grad=True)
    opt = optimizer_cls([p], **optimizer_kwargs)
    points = [p.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        fn.loss(p).backward()
        opt.step()
        points.append(p.detach().clone())
    return torch.stack(points).numpy()
