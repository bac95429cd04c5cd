"""A DP × TP mesh of process groups: p = dp · tp ranks in a grid, one group per row and
one per column.

    mesh = Mesh(ctx, dp=2, tp=2)        # collective: every rank builds every group
    mesh.tp, mesh.dp                    # DistContexts: this rank in its TP / DP group
    model = ParallelTransformer(tiny_transformer(vocab), mesh.tp)
    x, y = mesh.shard(batch)            # this DP replica's rows of the global batch
    fit(model, opt, [(x, y)], lm_loss, after_backward=mesh.after_backward,
        group=mesh.dp.group, world_size=mesh.dp.world_size)

Rank r sits at (d, j) = (r // tp, r mod tp), so the ranks of a tensor-parallel group are
neighbours (on a GPU node they share the fast NVLink; TP talks in every layer, DP once a
step):

    TP group of replica d:  {d·tp + j : j = 0 … tp−1}      (a row)
    DP group of shard j:    {d·tp + j : d = 0 … dp−1}      (a column)

The groups are our own (torch.distributed.new_group, every rank creating every group in
the same order, as new_group requires) rather than torch's DeviceMesh: the two lines of
rank arithmetic above are the lesson, and each group comes out as the DistContext that
hpclab's TP layers and collectives already take. `init_device_mesh("cpu", (dp, tp))`
builds the same rows and columns (tests/parallel/test_mesh.py compares them).

One step: each replica runs forward and backward on its rows (the TP collectives inside
the TP group); `after_backward` sums the sequence-parallel partial gradients over the TP
group, then averages every gradient over the DP group (one flat all-reduce):

    ∇J = (1/dp) Σ_d ∇J_d,   J_d the mean loss of replica d's B/dp rows
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
    def __init__(self, ctx: DistContext, dp: int, tp: int, algorithm: str = "torch"):
        if dp < 1 or tp < 1 or dp * tp != ctx.world_size:
            raise ValueError(f"dp × tp must equal the world size {ctx.world_size}, got "
                             f"dp={dp}, tp={tp}")
        self.ctx, self.dp_size, self.tp_size, self.algorithm = ctx, dp, tp, algorithm
        self.coords = divmod(ctx.rank, tp)                       # (d, j)
        rows = [[d * tp + j for j in range(tp)] for d in range(dp)]
        cols = [[d * tp + j for d in range(dp)] for j in range(tp)]
        self.tp_ranks, self.dp_ranks = rows[self.coords[0]], cols[self.coords[1]]
        wait = timedelta(seconds=ctx.timeout)
        tp_groups = [dist.new_group(r, timeout=wait) for r in rows]
        dp_groups = [dist.new_group(c, timeout=wait) for c in cols]
        d, j = self.coords
        self.tp = self._context(tp_groups[d], j, tp)
        self.dp = self._context(dp_groups[j], d, dp)

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
