"""The optimizer playground's computation: trajectories of optimizers on a 2-D function.

No widgets here, so it is easy to test and to use from a lecture cell:

    from hpclab.problems import ROSENBROCK
    run = run_optimizer(ROSENBROCK, Choice("Adam", lr=0.05), steps=200)
    run.points        # (steps + 1, 2): θ₀, θ₁, ...
    run.losses        # (steps + 1,):   f(θ₀), f(θ₁), ...

Each choice names an hpclab.optim class and its hyperparameters (the same names as
torch.optim). "SGD (noise)" is plain gradient descent on a noisy gradient,

    g̃ = ∇f(θ) + σ ξ,   ξ ~ N(0, I)   (seeded),

the picture of minibatch noise: the step follows the true gradient only on average.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hpclab import optim

# name -> (optimizer class, fixed keyword arguments, hyperparameters a slider may change)
OPTIMIZERS = {
    "GD": (optim.GD, {}, ("lr",)),
    "SGD (noise)": (optim.SGD, {}, ("lr", "noise")),
    "momentum": (optim.SGD, {}, ("lr", "momentum")),
    "Nesterov": (optim.SGD, {"nesterov": True}, ("lr", "momentum")),
    "Adagrad": (optim.Adagrad, {}, ("lr",)),
    "RMSprop": (optim.RMSprop, {}, ("lr", "alpha")),
    "Adam": (optim.Adam, {}, ("lr", "beta1", "beta2")),
}
DEFAULTS = {"lr": 0.01, "momentum": 0.9, "alpha": 0.99, "beta1": 0.9, "beta2": 0.999,
            "noise": 1.0}


@dataclass
class Choice:
    """One optimizer with its hyperparameters, e.g. Choice("momentum", lr=0.01, momentum=0.9)."""
    name: str
    hyper: dict = field(default_factory=dict)

    def __init__(self, name: str, **hyper):
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
        allowed = OPTIMIZERS[name][2]
        unknown = sorted(set(hyper) - set(allowed))
        if unknown:
            raise ValueError(f"{name} takes hyperparameters {list(allowed)}, got {unknown}")
        self.name = name
        self.hyper = {k: hyper.get(k, DEFAULTS[k]) for k in allowed}
        if self.hyper["lr"] < 0:
            raise ValueError(f"lr must be >= 0, got {self.hyper['lr']}")
        if self.hyper.get("noise", 0) < 0:
            raise ValueError(f"noise must be >= 0, got {self.hyper['noise']}")

    def make(self, params):
        """The hpclab.optim optimizer for `params` with these hyperparameters."""
        cls, fixed, _ = OPTIMIZERS[self.name]
        kwargs = dict(fixed, lr=self.hyper["lr"])
        if "momentum" in self.hyper:
            kwargs["momentum"] = self.hyper["momentum"]
        if "alpha" in self.hyper:
            kwargs["alpha"] = self.hyper["alpha"]
        if "beta1" in self.hyper:
            kwargs["betas"] = (self.hyper["beta1"], self.hyper["beta2"])
        return cls(params, **kwargs)

    @property
    def label(self) -> str:
        """e.g. 'momentum (lr=0.0002, momentum=0.9)': values to 3 significant digits."""
        return self.name + " (" + ", ".join(f"{k}={v:.3g}" for k, v in self.hyper.items()) + ")"


@dataclass
class Run:
    choice: Choice
    points: np.ndarray      # (steps + 1, 2)
    losses: np.ndarray      # (steps + 1,)

    @property
    def diverged(self) -> bool:
        return not np.isfinite(self.losses).all()


def run_optimizer(fn, choice: Choice, steps: int = 200, start=None, seed: int = 0,
                  blowup: float = 1e6) -> Run:
    """Minimise the 2-D function `fn` (hpclab.problems.Function2D) from `start`.

    A run that leaves the plot by more than `blowup` (a too-large learning rate) stops
    there: the remaining points repeat the last finite one and the losses are inf.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    p = torch.tensor(fn.start if start is None else start, dtype=torch.float64,
                     requires_grad=True)
    opt = choice.make([p])
    noise = choice.hyper.get("noise", 0.0)
    gen = torch.Generator().manual_seed(seed)
    points = np.empty((steps + 1, 2))
    losses = np.full(steps + 1, np.inf)
    points[0] = p.detach().numpy()
    for k in range(steps):
        opt.zero_grad()
        loss = fn.loss(p)
        losses[k] = loss.item()
        loss.backward()
        if noise:
            p.grad += noise * torch.randn(2, generator=gen, dtype=torch.float64)
        opt.step()
        points[k + 1] = p.detach().numpy()
        if not np.isfinite(points[k + 1]).all() or np.abs(points[k + 1]).max() > blowup:
            points[k + 1:] = points[k]
            return Run(choice, points, losses)
    losses[steps] = fn.loss(p).item()
    return Run(choice, points, losses)
