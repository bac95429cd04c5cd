"""Loss functions written out, each equal to its torch.nn.functional twin.

    mse(ŷ, y)                          = 1/n Σ (ŷᵢ − yᵢ)²
    binary_cross_entropy(p, y)         = −1/n Σ [yᵢ log pᵢ + (1 − yᵢ) log(1 − pᵢ)]
    binary_cross_entropy_with_logits   the same with p = σ(z), computed stably:
                                         max(z, 0) − z·y + log(1 + e^−|z|)
    cross_entropy(z, c)                = −1/n Σ log softmax(zᵢ)[cᵢ],
                                         log softmax(z) = z − log Σⱼ e^zⱼ  (log-sum-exp)

All take torch tensors and return the mean over the batch (torch's default reduction).
"""

from __future__ import annotations

import torch


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean()


def sigmoid(z: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-z))


def binary_cross_entropy(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """p are probabilities in [0, 1]. log is clamped at −100, exactly as torch does."""
    log_p = torch.clamp(torch.log(p), min=-100)
    log_1mp = torch.clamp(torch.log(1 - p), min=-100)
    return -(y * log_p + (1 - y) * log_1mp).mean()


def binary_cross_entropy_with_logits(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Never forms σ(z), so a logit of ±1000 does not turn into log(0)."""
    return (torch.clamp(z, min=0) - z * y + torch.log1p(torch.exp(-z.abs()))).mean()


def log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    # Subtracting the max first keeps exp() from overflowing; the result is unchanged.
    m = z.max(dim=dim, keepdim=True).values
    return z - m - torch.log(torch.exp(z - m).sum(dim=dim, keepdim=True))


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.exp(log_softmax(z, dim))


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits (n, C), integer classes (n,). Extra leading dims (B, T, C) are flattened."""
    logits = logits.reshape(-1, logits.shape[-1])
    target = target.reshape(-1)
    if logits.shape[0] != target.shape[0]:
        raise ValueError(f"logits give {logits.shape[0]} rows but target has "
                         f"{target.shape[0]} labels")
    return -log_softmax(logits).gather(1, target[:, None].long()).mean()
