"""What the three ZeRO stages share: parameter shards, the optimizer that steps them.

Every stage holds its parameters as `ShardedGroup`s (shard.py): flat buffers of which
rank r owns the shard r. The wrapped optimizer (any torch.optim.Optimizer, hpclab.optim's
included) is built on the shards only, so its state (K·Ψ/N_d bytes, e.g. Adam's m and v)
exists once in the whole group instead of once per rank. Its update must be elementwise
(SGD, momentum, Adam, AdamW, RMSprop, Adagrad ...): a shard is a slice of the flat
buffer, not whole tensors, so optimizers that use a tensor's norm (LAMB, LARS) would see
a piece of it.

    opt.step()            # stage-specific (zero1.py, zero2.py, zero3.py)
    opt.zero_grad()       # every gradient, full and sharded, to None
    opt.optimizer         # the wrapped optimizer over the shards
    opt.shards            # this rank's parameter shards (nn.Parameters)
    opt.full_state_dict() # {index: full tensor} of every parameter, on every rank

At construction rank 0's parameters are broadcast (hpclab.comm.broadcast), so ranks that
start from different weights train one model, as in DDP.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from hpclab import comm
from hpclab.parallel.zero.shard import ShardedGroup, check_params


class ShardedOptimizer:
    """Base class: `groups` of parameter indices become ShardedGroups, stepped by one
    `optimizer_class(shards, **defaults)`."""

    stage = 0

    def __init__(self, params, groups: list[list[int]], optimizer_class, *, keep_full: bool,
                 group=None, timeout: float = 60.0, **defaults):
        if not dist.is_initialized():
            raise RuntimeError(f"{type(self).__name__} needs a process group: run it in "
                               "run_local or on engines (cluster.run), or call "
                               "dist.init_process_group first")
        if not (isinstance(optimizer_class, type) and
                issubclass(optimizer_class, torch.optim.Optimizer)):
            raise TypeError(f"optimizer_class must be a torch.optim.Optimizer subclass (e.g. "
                            f"hpclab.optim.Adam), got {optimizer_class!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.params: list[nn.Parameter] = check_params(params, type(self).__name__)
        self.group, self.timeout = group, timeout
        self.rank, self.world_size = dist.get_rank(group), dist.get_world_size(group)
        self._broadcast_from_rank0()
        self.groups = [ShardedGroup([self.params[i] for i in idx], idx, self.rank,
                                    self.world_size, keep_full) for idx in groups]
        self.shards = [g.shard for g in self.groups]
        self.optimizer = optimizer_class(self.shards, **defaults)

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def numel(self) -> int:
        """Ψ: the parameters' elements (without padding)."""
        return sum(g.numel for g in self.groups)

    @torch.no_grad()
    def _broadcast_from_rank0(self) -> None:
        for p in self.params:
            comm.broadcast(p.data, src=0, group=self.group, timeout=self.timeout)

    def _step_shards(self) -> None:
        """The optimizer updates this rank's shard of the parameters, with its shard of
        the averaged gradient and its shard of the state; nothing else."""
        self.optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            raise ValueError("ZeRO frees gradients instead of zeroing them: use "
                             "zero_grad() (set_to_none=True)")
        for p in self.params:
            p.grad = None
        for s in self.shards:
            s.grad = None

    def _gather(self, g: ShardedGroup) -> None:
        """all-gather: every rank's shard into the group's flat buffer, on every rank."""
        comm.all_gather(g.flat, g.shard.detach(), group=self.group, timeout=self.timeout)

    def _reduce_scatter(self, g: ShardedGroup) -> None:
        """reduce-scatter with an average: rank r receives ḡ[shard r] = (1/N_d)·Σ_i g_i[shard r]
        into its shard's gradient (added to it when micro-batches accumulate)."""
        grad_shard = torch.empty(g.layout.shard_numel, dtype=g.flat.dtype,
                                 device=g.flat.device)
        comm.reduce_scatter(grad_shard, g.flat_grad(), op="avg", group=self.group,
                            timeout=self.timeout)
        g.add_grad_shard_(grad_shard)

    @torch.no_grad()
    def full_state_dict(self) -> dict[int, torch.Tensor]:
        """Every parameter in full, by its position in the parameter list, on every rank
        (for evaluation or a single-file export; costs one all-gather per group)."""
        out: dict[int, torch.Tensor] = {}
        for g in self.groups:
            flat = torch.empty(g.layout.padded, dtype=g.flat.dtype, device=g.flat.device)
            comm.all_gather(flat, g.shard.detach(), group=self.group, timeout=self.timeout)
            for i, view in zip(g.indices, g.layout.views(flat)):
                out[i] = view.clone()
        return out
