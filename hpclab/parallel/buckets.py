"""Gradient buckets: many small gradients packed into a few flat tensors for all-reduce.

One all-reduce of n bytes costs about α + β·n (lecture C), so reducing every parameter
separately pays the latency α once per parameter. Packing gradients into buckets of about
`bucket_cap_mb` pays it once per bucket, while still letting the first buckets travel
while backward is computing the rest.

Parameters are bucketed in *reverse* registration order because backward produces their
gradients roughly in that order (the last layer's gradient is ready first).

    buckets = assign_buckets(list(model.parameters()), bucket_cap_mb=25)
    flat = buckets[0].flatten_grads()          # one contiguous tensor
    ...all-reduce flat...
    buckets[0].unflatten_grads(flat)           # back into p.grad
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Bucket:
    index: int
    params: list[torch.Tensor]
    ready: int = 0                       # parameters whose gradient is accumulated
    launched: bool = False
    result: torch.Tensor | None = None   # the averaged flat gradient, once reduced
    comm_seconds: float = 0.0            # time the reduction itself took
    sizes: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.sizes = [p.numel() for p in self.params]

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def reset(self) -> None:
        self.ready, self.launched, self.result, self.comm_seconds = 0, False, None, 0.0

    def flatten_grads(self) -> torch.Tensor:
        """All gradients of the bucket in one new tensor (a missing gradient counts as 0)."""
        parts = [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                 for p in self.params]
        return torch.cat(parts)

    def unflatten_grads(self, flat: torch.Tensor) -> None:
        """Write the reduced flat tensor back into each parameter's .grad."""
        for p, chunk in zip(self.params, torch.split(flat, self.sizes)):
            if p.grad is None:
                p.grad = chunk.view_as(p).clone()
            else:
                p.grad.copy_(chunk.view_as(p))


def assign_buckets(params: list[torch.Tensor], bucket_cap_mb: float) -> list[Bucket]:
    """Split `params` (reverse order) into buckets of at most `bucket_cap_mb` MiB each.

    A parameter larger than the cap gets a bucket of its own; a tiny cap therefore means
    one bucket per parameter (useful to test the bucketing logic).
    """
    if bucket_cap_mb <= 0:
        raise ValueError(f"bucket_cap_mb must be > 0, got {bucket_cap_mb}")
    cap_bytes = bucket_cap_mb * 2**20
    groups: list[list[torch.Tensor]] = []
    current: list[torch.Tensor] = []
    current_bytes = 0
    for p in reversed(params):
        nbytes = p.numel() * p.element_size()
        # a bucket holds one dtype, since it is reduced as one flat tensor
        if current and (current_bytes + nbytes > cap_bytes or p.dtype != current[0].dtype):
            groups.append(current)
            current, current_bytes = [], 0
        current.append(p)
        current_bytes += nbytes
    if current:
        groups.append(current)
    return [Bucket(index=i, params=g) for i, g in enumerate(groups)]
