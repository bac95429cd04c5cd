"""Gradient buckets: many small gradients packed into a few flat tensors for all-reduce.

A ring all-reduce of n bytes on p ranks costs 2(p−1)·α + 2(p−1)/p·n·β (lecture C1): the
latency term 2(p−1)·α is paid once per all-reduce, however small the message. Reducing
every parameter separately (naive_dp.py) pays it once per parameter; packing gradients
into buckets of about `bucket_cap_mb` pays it once per bucket, while still letting the
first buckets travel while backward is computing the rest.

Parameters are bucketed in *reverse* registration order because backward produces their
gradients roughly in that order (the last layer's gradient is ready first).

A bucket is what a communication hook receives; its methods have the names of torch's
`torch.distributed.GradBucket`:

    buckets = assign_buckets(list(model.parameters()), bucket_cap_mb=25)
    b = buckets[0]
    b.flatten_grads()                 # copy the gradients into one flat tensor ...
    b.index(), b.buffer(), b.parameters(), b.gradients(), b.is_last()
    ...all-reduce b.buffer()...
    b.unflatten_grads(averaged)       # ... and the reduced values back into p.grad
"""

from __future__ import annotations

import torch


class GradBucket:
    """Bucket number `index` (of `n_buckets`) holding the gradients of `params`."""

    def __init__(self, index: int, params: list[torch.Tensor], n_buckets: int = 1):
        if not 0 <= index < n_buckets:
            raise ValueError(f"index must be in [0, n_buckets={n_buckets}), got {index}")
        self._index, self._params, self._n_buckets = index, list(params), n_buckets
        self.sizes = [p.numel() for p in self._params]
        self.numel = sum(self.sizes)
        self.nbytes = sum(p.numel() * p.element_size() for p in self._params)
        self._buffer: torch.Tensor | None = None
        self.ready = 0            # parameters whose gradient backward has accumulated
        self.comm_seconds = 0.0   # time the last reduction of this bucket took

    def index(self) -> int:
        """The bucket's position in launch order: the same bucket on every rank."""
        return self._index

    def is_last(self) -> bool:
        """True for the last bucket reduced in a step (hooks count steps with it)."""
        return self._index == self._n_buckets - 1

    def complete(self) -> bool:
        """Has backward accumulated the gradient of every parameter in the bucket?"""
        return self.ready == len(self._params)

    def parameters(self) -> list[torch.Tensor]:
        return list(self._params)

    def buffer(self) -> torch.Tensor:
        """The bucket's gradients as one flat tensor (filled by flatten_grads)."""
        if self._buffer is None:
            raise RuntimeError(f"bucket {self._index} has no buffer yet: call flatten_grads()")
        return self._buffer

    def gradients(self) -> list[torch.Tensor]:
        """Views into buffer(), one per parameter, shaped like it."""
        return [chunk.view_as(p) for p, chunk in
                zip(self._params, torch.split(self.buffer(), self.sizes))]

    def flatten_grads(self) -> torch.Tensor:
        """Copy the gradients into a new flat buffer (a missing gradient counts as 0)."""
        parts = [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                 for p in self._params]
        self._buffer = torch.cat(parts)
        return self._buffer

    def unflatten_grads(self, flat: torch.Tensor) -> None:
        """Write a reduced flat tensor back into each parameter's .grad."""
        for p, chunk in zip(self._params, torch.split(flat, self.sizes)):
            if p.grad is None:
                p.grad = chunk.view_as(p).clone()
            else:
                p.grad.copy_(chunk.view_as(p))

    def __repr__(self) -> str:
        return (f"GradBucket(index={self._index}, parameters={len(self._params)}, "
                f"numel={self.numel})")


def assign_buckets(params: list[torch.Tensor], bucket_cap_mb: float) -> list[GradBucket]:
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
    return [GradBucket(i, g, n_buckets=len(groups)) for i, g in enumerate(groups)]
