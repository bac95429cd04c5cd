"""Scratch buffers that survive from one collective call to the next.

An algorithm that adds incoming data into its own vector needs somewhere for that data to
land first (the `Inbox` slots). A fresh buffer per call is the obvious choice and a slow
one: memory the process has not touched yet is mapped in page by page while the kernel
copies the message into it, and on this course's machines that costs 0.3–0.4 ms for a
2 MiB segment — 20% of a 4 MiB ring all-reduce. So the buffers are kept and handed out
again, as NCCL and gloo keep theirs:

    slot = scratch.take(numel, like=x)     # a flat buffer of >= numel elements, x's dtype
    ...                                    # receive into slot[:numel], add, ...
    scratch.give(slot)                     # only once no receive can still write into it

Each thread has its own pool (a DDP communication thread and the notebook's thread never
share a buffer), holding at most `POOL_BYTES`; larger or extra buffers are left to the
allocator. A buffer is given back only after a collective finished normally: after an
error a posted receive may still write into it, so it is dropped instead.
"""

from __future__ import annotations

import threading

import torch

POOL_BYTES = 64 << 20   # per thread: the largest ring segments (2 MiB) × a few inboxes

_local = threading.local()


def _pool() -> list[torch.Tensor]:
    if not hasattr(_local, "free"):
        _local.free = []
    return _local.free


def take(numel: int, like: torch.Tensor) -> torch.Tensor:
    """A flat buffer of at least `numel` elements with like's dtype and device (contents
    undefined): the smallest free one that fits, else a new one of exactly `numel`."""
    free = _pool()
    fits = [i for i, b in enumerate(free)
            if b.dtype == like.dtype and b.device == like.device and b.numel() >= numel]
    if fits:
        return free.pop(min(fits, key=lambda i: free[i].numel()))
    return torch.empty(numel, dtype=like.dtype, device=like.device)


def give(buffer: torch.Tensor) -> None:
    """Return a buffer from `take` to this thread's pool (the oldest are dropped when the
    pool would exceed POOL_BYTES)."""
    free = _pool()
    free.append(buffer)
    while pooled_bytes() > POOL_BYTES:
        free.pop(0)


def pooled_bytes() -> int:
    """Bytes this thread's pool holds now (for tests and curious students)."""
    return sum(b.numel() * b.element_size() for b in _pool())
