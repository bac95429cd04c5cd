"""ZeRO stage 3 (FSDP): shard the parameters too (P_os+g+p in the ZeRO paper).

Stages 1–2 still keep all Ψ parameters on every rank. Stage 3 keeps only a shard of each
*unit* (a module the user picks, e.g. each transformer block) and brings a unit's full
parameters into being only while it computes:

    memory per rank = (2 + 2 + K)·Ψ/N_d  + one unit's full parameters (and their gradients)

For each unit u, on rank r:

    forward   1. pre-hook: all-gather θ_u ← [θ_u[shard 0], ..., θ_u[shard N_d−1]]
              2. the unit's forward
              3. post-hook: free θ_u (only θ_u[shard r] stays)
    backward  4. when the gradient of the unit's output arrives: all-gather θ_u again
              5. the unit's backward makes g_u
              6. when all of g_u is made, reduce-scatter:
                 ḡ_u[shard r] = (1/N_d)·Σ_i g_{i,u}[shard r], then free g_u and θ_u
    step      7. the optimizer updates θ[shard r] with ḡ[shard r] and its state shard only
              (no all-gather: the next forward gathers each unit when it needs it)

Communication per step and rank: two all-gathers and one reduce-scatter of Ψ·(N_d−1)/N_d
each, 3Ψ·(N_d−1)/N_d in all: 1.5× DP's, the price of not holding the parameters.
Parameters that belong to no unit form one more unit, the whole model (gathered around the
whole forward, as FSDP's root).

    units = list(model.blocks)                     # one unit per transformer block
    opt = ZeRO3(model, hpclab.optim.Adam, units=units, lr=1e-3)
    loss_fn(model(x), y).backward()                # steps 1-6, unit by unit
    opt.step()                                     # step 7
    opt.zero_grad()
    with opt.full_parameters():                    # e.g. to evaluate or save the model
        ...

Outside forward and backward the module's parameters have no memory (their storage is
freed); read them through `full_parameters()` or `full_state_dict()`. Each unit must run
once per forward. torch's counterpart is FSDP2: `torch.distributed.fsdp.fully_shard`.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.autograd import Variable

from hpclab.parallel.zero.base import ShardedOptimizer
from hpclab.parallel.zero.shard import ShardedGroup, allocate_, free_, is_allocated


def unit_groups(module: nn.Module, units) -> tuple[list[nn.Module], list[list[int]]]:
    """The unit modules and, for each, the indices (in module.parameters()) of the
    parameters it owns: those inside it and inside no unit nested in it. Parameters of
    no unit go to the whole model, as one more unit."""
    units = list(units)
    params = list(module.parameters())
    index = {id(p): i for i, p in enumerate(params)}
    if len({id(u) for u in units}) != len(units):
        raise ValueError("units must not contain the same module twice")
    for u in units:
        if not any(u is m for m in module.modules()):
            raise ValueError(f"unit {type(u).__name__} is not a submodule of the model")
    owner: dict[int, int] = {}
    # deeper units first claim their parameters: a unit owns what its sub-units do not
    depth = {id(u): sum(1 for m in module.modules() if any(x is u for x in m.modules()))
             for u in units}
    for k in sorted(range(len(units)), key=lambda k: -depth[id(units[k])]):
        for p in units[k].parameters():
            owner.setdefault(index[id(p)], k)
    rest = [i for i in range(len(params)) if i not in owner]
    if rest and not any(u is module for u in units):
        units.append(module)
        for i in rest:
            owner[i] = len(units) - 1
    groups = [[i for i in range(len(params)) if owner.get(i) == k] for k in range(len(units))]
    keep = [k for k in range(len(units)) if groups[k]]
    return [units[k] for k in keep], [groups[k] for k in keep]


class ZeRO3(ShardedOptimizer):
    """Parameter + gradient + optimizer-state sharding, unit by unit (FSDP)."""

    stage = 3

    def __init__(self, module: nn.Module, optimizer_class, *, units=None, group=None,
                 timeout: float = 60.0, **defaults):
        if not isinstance(module, nn.Module):
            raise TypeError(f"ZeRO3 shards a module: pass the model, got "
                            f"{type(module).__name__}")
        self.module = module
        self.units, groups = unit_groups(module, units if units is not None else [module])
        super().__init__(list(module.parameters()), groups, optimizer_class, keep_full=False,
                         group=group, timeout=timeout, **defaults)
        self._group_of = {id(p): g for g in self.groups for p in g.params}
        self._in_backward = False
        self._hold_full = False      # inside full_parameters(): forward frees nothing
        for unit, g in zip(self.units, self.groups):
            unit.register_forward_pre_hook(lambda _m, _a, g=g: self._before_forward(g))
            unit.register_forward_hook(lambda _m, _a, out, g=g: self._after_forward(g, out))
        for p in self.params:
            p.register_post_accumulate_grad_hook(self._on_grad_ready)

    # -- forward -------------------------------------------------------------------------
    @torch.no_grad()
    def _unshard(self, g: ShardedGroup) -> None:
        """all-gather the unit's full parameters into its (re-allocated) flat buffer."""
        if not is_allocated(g.flat):
            allocate_(g.flat)
            self._gather(g)

    def _before_forward(self, g: ShardedGroup) -> None:
        self._unshard(g)                                   # 1. all-gather θ_u

    def _after_forward(self, g: ShardedGroup, output):
        if not self._hold_full:
            free_(g.flat)                                  # 3. free θ_u
        if torch.is_grad_enabled():                        # 4. is armed on the output
            for t in _tensors(output):
                if t.requires_grad:
                    t.register_hook(lambda grad, g=g: self._before_backward(g))
        return output

    # -- backward ------------------------------------------------------------------------
    def _before_backward(self, g: ShardedGroup) -> None:
        if not self._in_backward:
            self._in_backward = True
            for h in self.groups:
                h.ready = 0
            Variable._execution_engine.queue_callback(self._finish_backward)
        self._unshard(g)                                   # 4. all-gather θ_u again

    def _on_grad_ready(self, p: torch.Tensor) -> None:
        g = self._group_of[id(p)]
        g.ready += 1
        if g.ready == len(g.params):
            self._after_backward(g)

    @torch.no_grad()
    def _after_backward(self, g: ShardedGroup) -> None:
        self._reduce_scatter(g)                            # 6. reduce-scatter ḡ_u
        for p in g.params:                                 #    free g_u ...
            p.grad = None
        free_(g.flat)                                      #    ... and θ_u

    def _finish_backward(self) -> None:
        """Runs when autograd has finished: a unit whose parameters did not all get a
        gradient (unused ones count as zeros) is reduced now, in unit order."""
        self._in_backward = False
        for g in self.groups:
            if is_allocated(g.flat):
                self._after_backward(g)

    # -- step ----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> None:
        self._step_shards()                                # 7. step this rank's shard

    @contextlib.contextmanager
    def full_parameters(self):
        """Inside the block the module's parameters hold their full values (read them, run
        forward to evaluate; do not train); afterwards they are freed again. Collective:
        every rank enters it."""
        for g in self.groups:
            self._unshard(g)
        self._hold_full = True
        try:
            yield self.module
        finally:
            self._hold_full = False
            for g in self.groups:
                free_(g.flat)


def _tensors(output):
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for o in output:
            yield from _tensors(o)
    elif isinstance(output, dict):
        for o in output.values():
            yield from _tensors(o)
