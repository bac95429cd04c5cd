"""Large batches: more GPUs means a larger global batch B = p·b. How to keep the accuracy.

Same number of epochs with a k× larger batch means k× fewer steps. Two remedies the
lecture compares:

    linear scaling rule (Goyal et al. 2017)   η(B) = η₀ · B / B₀, with a linear warm-up
                                              over the first epochs so the early, large
                                              steps do not diverge
    LAMB (You et al. 2019)                    a per-layer trust ratio ‖θ‖/‖update‖ that
                                              keeps every layer's step proportionate

`batch_size_sweep` trains the digits MLP for a fixed number of epochs at several batch
sizes with each recipe and returns the table the lecture plots (final loss vs B).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from hpclab.optim import LAMB, SGD, LinearWarmup
from hpclab.problems.digits import digits_loaders
from hpclab.problems.models import make_mlp
from hpclab.train import evaluate, fit


def linear_scaling_lr(base_lr: float, base_batch: int, batch: int) -> float:
    """η(B) = η₀ · B / B₀."""
    if base_lr < 0 or base_batch < 1 or batch < 1:
        raise ValueError(f"need base_lr >= 0 and batch sizes >= 1, got base_lr={base_lr}, "
                         f"base_batch={base_batch}, batch={batch}")
    return base_lr * batch / base_batch


def sqrt_scaling_lr(base_lr: float, base_batch: int, batch: int) -> float:
    """η(B) = η₀ · √(B / B₀): the usual rule for adaptive methods (Adam, LAMB)."""
    return base_lr * math.sqrt(linear_scaling_lr(1.0, base_batch, batch))


RECIPES = {
    # name: (optimizer, learning-rate rule, warm-up?)
    "sgd": ("sgd", None, False),                   # η₀ whatever the batch: the naive way
    "sgd+linear+warmup": ("sgd", linear_scaling_lr, True),
    "lamb": ("lamb", sqrt_scaling_lr, True),
}


@dataclass
class SweepRow:
    recipe: str
    batch_size: int
    lr: float
    steps: int
    final_loss: float      # training loss of the last step
    val_loss: float
    val_accuracy: float


def batch_size_sweep(batch_sizes=(32, 128, 512), recipes=tuple(RECIPES), epochs: int = 8,
                     base_lr: float = 0.02, base_batch: int = 32, lamb_lr: float = 0.02,
                     warmup_fraction: float = 0.2, seed: int = 0) -> list[dict]:
    """Train each (recipe, B) for `epochs` epochs from the same initial weights."""
    unknown = set(recipes) - set(RECIPES)
    if unknown:
        raise ValueError(f"unknown recipes {sorted(unknown)}; choose from {sorted(RECIPES)}")
    rows = []
    for name in recipes:
        kind, rule, warmup = RECIPES[name]
        for batch in batch_sizes:
            train, val = digits_loaders(batch_size=batch, seed=seed)
            model = make_mlp(64, (64,), 10, seed=seed)
            base = base_lr if kind == "sgd" else lamb_lr
            lr = rule(base, base_batch, batch) if rule else base
            opt = (SGD(model.parameters(), lr=lr, momentum=0.9) if kind == "sgd"
                   else LAMB(model.parameters(), lr=lr, weight_decay=0.01))
            steps = epochs * len(train)
            sched = (LinearWarmup(opt, max(1, int(warmup_fraction * steps)))
                     if warmup else None)
            hist = fit(model, opt, train, torch.nn.functional.cross_entropy, epochs=epochs,
                       scheduler=sched, progress=False)
            metrics = evaluate(model, val, torch.nn.functional.cross_entropy)
            rows.append(asdict(SweepRow(name, batch, lr, steps, hist.losses()[-1],
                                        metrics["val_loss"], metrics.get("val_accuracy",
                                                                         float("nan")))))
    return rows
