"""A DP × TP × PP mesh of process groups: p = pp · dp · tp ranks in a 3-D grid, one group
along each axis through every rank.

    mesh = Mesh(ctx, dp=2, tp=2)        # collective: every rank builds every group
    mesh = Mesh(ctx, dp=2, tp=2, pp=2)  # 8 ranks, a third axis for pipeline stages
    mesh.tp, mesh.dp, mesh.pp           # DistContexts: this rank in its TP / DP / PP group
    model = ParallelTransformer(tiny_transformer(vocab), mesh.tp)
    x, y = mesh.shard(batch)            # this DP replica's rows of the global batch
    fit(model, opt, [(x, y)], lm_loss, after_backward=mesh.after_backward,
        group=mesh.dp.group, world_size=mesh.dp.world_size)

Rank r sits at (k, d, j) with TP innermost and PP outermost (Megatron-LM's order):

    r = (k·dp + d)·tp + j,    j = r mod tp,   d = ⌊r/tp⌋ mod dp,   k = ⌊r/(dp·tp)⌋

so the ranks of a tensor-parallel group are neighbours (on a GPU node they share the
fast NVLink: TP talks in every layer), a DP group spans the replicas of one stage (one
all-reduce a step) and a pipeline group the stages (point-to-point, the least traffic,
fine across nodes):

    TP group of (k, d):  {(k·dp + d)·tp + j : j = 0 … tp−1}      (a row)
    DP group of (k, j):  {(k·dp + d)·tp + j : d = 0 … dp−1}      (a column)
    PP group of (d, j):  {(k·dp + d)·tp + j : k = 0 … pp−1}      (a pillar)

With pp = 1 this is the 2-D grid r = d·tp + j, k = 0, every PP group a single rank.

The groups are our own (torch.distributed.new_group, every rank creating every group in
the same order, as new_group requires) rather than torch's DeviceMesh: the lines of rank
arithmetic above are the lesson, and each group comes out as the DistContext that
hpclab's TP layers, collectives and pipeline executor already take.
`init_device_mesh("cpu", (pp, dp, tp))` builds the same groups (tests/parallel/test_mesh.py
compares them).

One step of DP × TP: each replica runs forward and backward on its rows (the TP
collectives inside the TP group); `after_backward` sums the sequence-parallel partial
gradients over the TP group, then averages every gradient over the DP group (one flat
all-reduce):

    ∇J = (1/dp) Σ_d ∇J_d,   J_d the mean loss of replica d's B/dp rows

With pp > 1 the model's layers are split over the PP group and a pipeline schedule runs
each replica's rows (parallel_3d.py's Trainer3D).
"""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from hpclab import comm
from hpclab.cluster.context import DistContext
from hpclab.parallel.sequence_parallel import all_reduce_sequence_parallel_grads


class Mesh:
    """This rank's place in the grid and its three groups (collective to build).

    coords = (d, j) and stage = k: its replica, TP rank and pipeline stage;
    tp_ranks, dp_ranks, pp_ranks: the global ranks of its three groups;
    tp, dp, pp: DistContexts of this rank in them (rank j, d, k of tp, dp, pp ranks)."""

    def __init__(self, ctx: DistContext, dp: int, tp: int, pp: int = 1,
                 algorithm: str = "torch"):
        if dp < 1 or tp < 1 or pp < 1 or dp * tp * pp != ctx.world_size:
            what = "dp × tp" if pp == 1 else "pp × dp × tp"
            raise ValueError(f"{what} must equal the world size {ctx.world_size}, got "
                             f"dp={dp}, tp={tp}" + ("" if pp == 1 else f", pp={pp}"))
        self.ctx, self.dp_size, self.tp_size, self.pp_size = ctx, dp, tp, pp
        self.algorithm = algorithm

        def rank(k, d, j):
            return (k * dp + d) * tp + j

        r = ctx.rank
        k, d, j = r // (dp * tp), (r // tp) % dp, r % tp
        self.coords = (d, j)                                     # (replica, TP rank)
        self.stage = k
        rows = {(k_, d_): [rank(k_, d_, j_) for j_ in range(tp)]
                for k_ in range(pp) for d_ in range(dp)}
        cols = {(k_, j_): [rank(k_, d_, j_) for d_ in range(dp)]
                for k_ in range(pp) for j_ in range(tp)}
        pillars = {(d_, j_): [rank(k_, d_, j_) for k_ in range(pp)]
                   for d_ in range(dp) for j_ in range(tp)}
        self.tp_ranks, self.dp_ranks = rows[k, d], cols[k, j]
        self.pp_ranks = pillars[d, j]
        wait = timedelta(seconds=ctx.timeout)
        tp_groups = {key: dist.new_group(g, timeout=wait) for key, g in rows.items()}
        dp_groups = {key: dist.new_group(g, timeout=wait) for key, g in cols.items()}
        pp_groups = {key: dist.new_group(g, timeout=wait) for key, g in pillars.items()}
        self.tp = self._context(tp_groups[k, d], j, tp)
        self.dp = self._context(dp_groups[k, j], d, dp)
        self.pp = self._context(pp_groups[d, j], k, pp)

    def _context(self, group, rank: int, size: int) -> DistContext:
        c = self.ctx
        return DistContext(rank=rank, world_size=size, local_rank=c.local_rank, host=c.host,
                           device=c.device, backend=c.backend, group=group, timeout=c.timeout)

    def shard(self, batch):
        """This replica's B/dp rows of a global batch (inputs, targets)."""
        d = self.coords[0]
        inputs, targets = batch
        if len(inputs) % self.dp_size:
            raise ValueError(f"the global batch of {len(inputs)} samples does not split "
                             f"into dp={self.dp_size} equal parts")
        return inputs.chunk(self.dp_size)[d], targets.chunk(self.dp_size)[d]

    def after_backward(self, model: nn.Module) -> None:
        """Sequence-parallel partial sums over TP, then the mean gradient over DP."""
        all_reduce_sequence_parallel_grads(model, self.tp, self.algorithm)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if self.dp_size == 1 or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        comm.all_reduce(flat, op="avg", algorithm=self.algorithm, group=self.dp.group,
                        timeout=self.dp.timeout)
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))
