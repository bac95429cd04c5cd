"""Bytes a rank actually holds, by category: parameters, gradients, optimizer state.

    held = held_bytes(model, opt)     # {"parameters": B, "gradients": B, "optimizer": B}

`opt` may be a torch optimizer (plain data parallel), one of our ZeRO stages, torch's
ZeroRedundancyOptimizer, or an optimizer over FSDP2's sharded (DTensor) parameters. The
count is of tensor *storages*, each counted once, so views (a parameter that lives in a
flat buffer, a shard that is a slice of it) are not counted twice, padding is counted, and
a freed buffer (stage 3's parameters between uses) counts 0:

    parameters   storages of the model's parameters and of the optimizer's parameter
                 shards (ZeRO's `shards`)
    gradients    storages of those tensors' .grad
    optimizer    storages of every tensor in the optimizer's state (m, v, momentum, and
                 the step counters: 0-d tensors of 4 bytes each)

Call it after backward and before step() from the second step on: then the optimizer
state exists and every stage holds its gradients (stage 1 full, stages 2–3 as shards).
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor

CATEGORIES = ("parameters", "gradients", "optimizer")


def held_bytes(model: torch.nn.Module, optimizer) -> dict[str, int]:
    params = [_local(p) for p in model.parameters()]
    params += [_local(s) for s in getattr(optimizer, "shards", [])]
    grads = [_local(t.grad) for t in [*model.parameters(), *getattr(optimizer, "shards", [])]
             if t.grad is not None]
    inner = _inner(optimizer)
    state = [_local(v) for s in inner.state.values() for v in s.values()
             if isinstance(v, torch.Tensor)]
    return {"parameters": _storage_bytes(params), "gradients": _storage_bytes(grads),
            "optimizer": _storage_bytes(state)}


def _inner(optimizer) -> torch.optim.Optimizer:
    """The optimizer that holds the state: ours keep it in .optimizer, torch's
    ZeroRedundancyOptimizer in .optim (its own .state is a view for the user)."""
    for name in ("optimizer", "optim"):
        inner = getattr(optimizer, name, None)
        if isinstance(inner, torch.optim.Optimizer):
            return inner
    return optimizer


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _storage_bytes(tensors) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        if storage.nbytes():
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())
