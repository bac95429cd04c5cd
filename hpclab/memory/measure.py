"""The bytes a real model holds, to check the calculator against.

    with SavedTensors(exclude=model.parameters()) as saved:
        loss = lm_loss(model(x), y)              # forward: autograd saves tensors
    saved.bytes                                  # activation bytes (unique storages)
    saved.sizes()                                # each storage's bytes, to compare by term
    held_states(model, optimizer)                # StateBytes: parameters, .grad, state
                                                 # (also ZeRO, torch ZeRO, FSDP2 shards)

`SavedTensors` installs `torch.autograd.graph.saved_tensors_hooks`, so it sees every
tensor an op keeps for backward, and counts each *storage* once: q, k and v are views of
one qkv output, and a log-softmax output saved by two ops is one tensor. Parameters that
ops save (a linear layer keeps its weight) are counted as parameters, not activations.
Inside a `torch.utils.checkpoint` region ops save nothing; the checkpoint keeps its
inputs, which it saves through the same hooks, so they are counted.

On CUDA, `cuda_step_peak` measures torch.cuda.max_memory_allocated over a training step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Self

import torch
from torch.distributed.tensor import DTensor

from .states import StateBytes


def _key(t: torch.Tensor) -> tuple:
    st = t.untyped_storage()
    return (t.device.type, t.device.index, st.data_ptr(), st.nbytes())


def unique_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (views and repeats counted once)."""
    keys = {_key(t) for t in tensors if t is not None}
    return sum(k[3] for k in keys)


class SavedTensors:
    """Record the storages autograd saves for backward while the context is open."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._exclude = {_key(t) for t in exclude}
        self.records: dict[tuple, tuple] = {}     # storage -> (shape, dtype, saved by)
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _key(t)
        if key not in self._exclude and key[3] > 0 and key not in self.records:
            op = t.grad_fn.name() if t.grad_fn is not None else "leaf/output"
            self.records[key] = (tuple(t.shape), t.dtype, op)
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def __enter__(self) -> Self:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return sum(k[3] for k in self.records)

    def sizes(self) -> list[int]:
        """Each saved storage's bytes, sorted (compare with the calculator's terms)."""
        return sorted(k[3] for k in self.records)


def held_states(model: torch.nn.Module, optimizer) -> StateBytes:
    """Bytes held now by the parameters, their .grad and the optimizer's state tensors
    (moments and torch.optim's 4-byte step counters), each storage counted once.

    `optimizer` may be a torch optimizer, one of our ZeRO stages (hpclab.parallel.zero:
    its parameter `shards` count as parameters), torch's ZeroRedundancyOptimizer (the
    state lives in its inner `.optim`) or an optimizer over FSDP2's DTensor parameters
    (their local shards count). A flat buffer that parameters are views of counts once,
    with its padding; a freed buffer (ZeRO-3's parameters between uses) counts 0. Call it
    after backward and before step(), from the second step on, so that the optimizer
    state exists and every stage holds its gradients."""
    tensors = [*model.parameters(), *getattr(optimizer, "shards", [])]
    state = [_local(v) for s in _inner(optimizer).state.values() for v in s.values()
             if isinstance(v, torch.Tensor)]
    return StateBytes(parameters=unique_bytes(_local(t) for t in tensors),
                      gradients=unique_bytes(_local(t.grad) for t in tensors
                                             if t.grad is not None),
                      optimizer=unique_bytes(state))


def _inner(optimizer) -> torch.optim.Optimizer:
    """The optimizer that holds the state: ZeRO stages keep it in .optimizer, torch's
    ZeroRedundancyOptimizer in .optim (its own .state is a view for the user)."""
    for name in ("optimizer", "optim"):
        inner = getattr(optimizer, name, None)
        if isinstance(inner, torch.optim.Optimizer):
            return inner
    return optimizer


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def cuda_step_peak(step: Callable[[], None], device: torch.device | None = None) -> dict:
    """Run `step` (forward, backward, optimizer step) on CUDA; bytes allocated before it,
    at its peak (torch.cuda.max_memory_allocated) and after it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return {"before": before, "peak": torch.cuda.max_memory_allocated(device),
            "after": torch.cuda.memory_allocated(device)}
