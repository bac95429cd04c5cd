"""Flat buffers and their shards: the bookkeeping every ZeRO stage shares.

ZeRO cuts a set of tensors (a bucket of parameters, or one layer's parameters) into N_d
equal shards, one per data-parallel rank. The tensors are laid end to end in one flat
buffer of Ψ elements, padded with zeros to

    Ψ' = N_d · ⌈Ψ / N_d⌉        (so every shard has the same size Ψ'/N_d)

and rank r owns elements [r·Ψ'/N_d, (r+1)·Ψ'/N_d). Equal shards are what reduce-scatter
and all-gather need (rank r's output is block r of the input); the padding costs fewer
than N_d elements per buffer.

    layout = FlatLayout.of(params, world_size=3)       # Ψ = 65 → Ψ' = 66, shards of 22
    flat = layout.flatten([p.grad for p in params])     # 66 elements, zeros in the padding
    mine = flat[layout.shard_slice(rank)]               # this rank's 22 elements
    for p, view in zip(params, layout.views(flat)):     # tensors shaped like params,
        ...                                             # sharing flat's memory

`ShardedGroup` is one such buffer of *parameters*: the module's parameters become views of
the flat buffer and `shard` (an nn.Parameter the optimizer steps) is this rank's slice of
it. `free_` / `allocate_` release and re-create a buffer's memory while every view of it
stays valid (stage 3 frees a layer's full parameters between uses this way).
`bucket_by_size` groups parameters into buckets of about `cap_bytes` each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FlatLayout:
    """Where each tensor lies in a flat buffer of `padded` elements cut into equal shards."""
    shapes: tuple[torch.Size, ...]
    numels: tuple[int, ...]
    offsets: tuple[int, ...]     # where each tensor starts in the flat buffer
    numel: int                   # Ψ: the elements that belong to a tensor
    padded: int                  # Ψ' = N_d·⌈Ψ/N_d⌉
    world_size: int              # N_d

    @classmethod
    def of(cls, tensors, world_size: int) -> FlatLayout:
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be a positive int, got {world_size!r}")
        shapes = tuple(t.shape for t in tensors)
        numels = tuple(t.numel() for t in tensors)
        offsets = tuple(sum(numels[:i]) for i in range(len(numels)))
        numel = sum(numels)
        padded = world_size * -(-numel // world_size)
        return cls(shapes, numels, offsets, numel, padded, world_size)

    @property
    def shard_numel(self) -> int:
        """Ψ'/N_d: the size of every rank's shard."""
        return self.padded // self.world_size

    def shard_slice(self, rank: int) -> slice:
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank must be in 0..{self.world_size - 1}, got {rank}")
        return slice(rank * self.shard_numel, (rank + 1) * self.shard_numel)

    def flatten(self, tensors, dtype=None, device=None) -> torch.Tensor:
        """A new flat buffer of Ψ' elements holding `tensors` (None counts as zeros)."""
        first = next((t for t in tensors if t is not None), None)
        dtype = dtype or (first.dtype if first is not None else torch.float32)
        device = device or (first.device if first is not None else "cpu")
        flat = torch.zeros(self.padded, dtype=dtype, device=device)
        for view, t in zip(self.views(flat), tensors):
            if t is not None:
                view.copy_(t)
        return flat

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of `flat` shaped like the tensors (no copies)."""
        return [flat[o:o + n].view(s) for o, n, s in zip(self.offsets, self.numels, self.shapes)]

    def pieces(self, rank: int):
        """The parts of the tensors that rank's shard holds, as (tensor index, range in the
        flattened tensor, range in the shard); padding belongs to no tensor."""
        lo, hi = rank * self.shard_numel, (rank + 1) * self.shard_numel
        for i, (o, n) in enumerate(zip(self.offsets, self.numels)):
            a, b = max(lo, o), min(hi, o + n)
            if a < b:
                yield i, slice(a - o, b - o), slice(a - lo, b - lo)


def free_(t: torch.Tensor) -> None:
    """Release t's memory; views of it keep their shapes and become valid again after
    `allocate_` (their data must be written before use)."""
    t.untyped_storage().resize_(0)


def allocate_(t: torch.Tensor) -> None:
    """Give t (and every view of it) memory again, after `free_`. Contents are undefined."""
    nbytes = t.numel() * t.element_size()
    if t.untyped_storage().nbytes() != nbytes:
        t.untyped_storage().resize_(nbytes)


def is_allocated(t: torch.Tensor) -> bool:
    return t.untyped_storage().nbytes() > 0


class ShardedGroup:
    """Parameters that live in one flat buffer, of which this rank owns a shard.

    With `keep_full=True` (stages 1 and 2) the module's parameters become views of the
    flat buffer and `shard` is a view of it too, so the optimizer's in-place update of
    the shard updates the parameters, and an all-gather into `flat` completes them.
    With `keep_full=False` (stage 3) `shard` is a separate tensor of Ψ'/N_d elements and
    the flat buffer is freed: the parameters exist in full only between `allocate_` and
    `free_`.
    """

    def __init__(self, params: list[nn.Parameter], indices: list[int], rank: int,
                 world_size: int, keep_full: bool):
        self.params, self.indices = params, indices   # indices: positions in the user's list
        self.layout = FlatLayout.of(params, world_size)
        self.rank = rank
        with torch.no_grad():
            self.flat = self.layout.flatten([p.detach() for p in params])
        for p, view in zip(params, self.layout.views(self.flat)):
            p.data = view
        mine = self.flat[self.layout.shard_slice(rank)]
        self.shard = nn.Parameter(mine if keep_full else mine.clone())
        if not keep_full:
            free_(self.flat)
        self.ready = 0               # parameters whose gradient backward has accumulated

    @property
    def numel(self) -> int:
        return self.layout.numel

    def flat_grad(self) -> torch.Tensor:
        """The parameters' gradients in one flat buffer of Ψ' elements (a missing gradient
        counts as zeros)."""
        return self.layout.flatten([p.grad for p in self.params], dtype=self.flat.dtype,
                                   device=self.flat.device)

    def add_grad_shard_(self, grad_shard: torch.Tensor) -> None:
        """shard.grad ← shard.grad + grad_shard (accumulation over micro-batches)."""
        if self.shard.grad is None:
            self.shard.grad = grad_shard
        else:
            self.shard.grad.add_(grad_shard)


def bucket_by_size(params: list[nn.Parameter], cap_bytes: float) -> list[list[int]]:
    """Indices of `params` in buckets of at most `cap_bytes` (a larger parameter gets a
    bucket of its own), in *reverse* order: backward makes the last layer's gradients
    first, so bucket 0 is complete first."""
    if cap_bytes <= 0:
        raise ValueError(f"bucket cap must be > 0 bytes, got {cap_bytes}")
    buckets: list[list[int]] = []
    size = 0.0
    for i in reversed(range(len(params))):
        nbytes = params[i].numel() * params[i].element_size()
        if not buckets or size + nbytes > cap_bytes:
            buckets.append([])
            size = 0.0
        buckets[-1].append(i)
        size += nbytes
    return buckets


def check_params(params, who: str) -> list[nn.Parameter]:
    """The parameters as a list; refuse param-group dicts (one group of shards is stepped)."""
    params = list(params)
    if not params:
        raise ValueError(f"{who} got an empty parameter list")
    if any(isinstance(p, dict) for p in params):
        raise ValueError(f"{who} takes a plain list of parameters, not parameter-group "
                         "dicts: the optimizer steps one group of flat shards")
    frozen = [i for i, p in enumerate(params) if not p.requires_grad]
    if frozen:
        raise ValueError(f"{who} got parameters that do not require grad (positions "
                         f"{frozen}); pass only the parameters the optimizer trains")
    if len({id(p) for p in params}) != len(params):
        raise ValueError(f"{who} got the same parameter twice")
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1:
        raise ValueError(f"{who} needs parameters of one dtype to share a flat buffer, "
                         f"got {sorted(map(str, dtypes))}")
    return params
