"""Standard model factories that the lectures, the demo and the distributed code share.

    model = make_mlp(64, hidden=(128, 64), out_features=10, seed=0)   # digits classifier

Seeding the factory (not the global RNG) gives every rank of a data-parallel job the
same initial weights without touching anyone else's random state.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def make_mlp(in_features: int = 64, hidden=(64,), out_features: int = 10,
             activation: str = "relu", dropout: float = 0.0,
             seed: int | None = 0) -> nn.Sequential:
    """Linear → activation (→ dropout) for each hidden width, then a Linear to the logits.

    `hidden` is an int or a sequence of ints; `seed=None` uses torch's global RNG.
    """
    if isinstance(hidden, int):
        hidden = (hidden,)
    widths = [in_features, *hidden]
    if any(w < 1 for w in [*widths, out_features]):
        raise ValueError(f"layer widths must be >= 1, got in={in_features}, "
                         f"hidden={tuple(hidden)}, out={out_features}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                         f"got {activation!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    def build() -> nn.Sequential:
        layers = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], out_features))
        return nn.Sequential(*layers)

    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
