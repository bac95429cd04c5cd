"""One training step of the tiny transformer over a DP × TP × PP mesh (3-D parallelism).

    layout = Layout(dp=2, tp=2, pp=2, micro_batches=4, schedule="1f1b", zero=1)
    trainer = Trainer3D(ctx, layout, tiny_transformer(vocab, n_layers=4), torch.optim.AdamW,
                        lr=1e-3)                    # collective: every rank of the job
    loss = trainer.step((x, y))                     # the global batch, the same on every rank
    trainer.full_parameters()                       # {name: tensor} of the whole model
    trainer.timeline                                # the last step's PipelineTimeline

The p = pp·dp·tp ranks form a Mesh (mesh.py: rank r = (k·dp + d)·tp + j). Rank (k, d, j)
holds pipeline stage k of the model, TP-sharded (rank j of its TP group), and trains on
replica d's B/dp rows of the global batch of B samples:

    stage split   S = pp·v pieces (v = 2 chunks per rank interleaved, else 1): the token and
                  position embeddings go with piece 0, the final LayerNorm and the head with
                  piece S − 1, the L blocks split evenly (the first L mod S pieces one more);
                  rank k holds pieces s = c·pp + k, c = 0 … v − 1 (pipeline_interleaved.py)
    forward and   the replica's rows cut into m = micro_batches micro-batches, run by the
    backward      schedule's executor over the PP group (pipeline_executor.py: activations
                  and gradients are sent stage to stage), the TP collectives inside every
                  block (tp_transformer.py); with pp = 1 no executor: the m micro-batches run
                  one after the other on the whole model, gradients accumulating
    gradients     each micro-batch's loss weighted by its share, so the stage's .grad is
                  ∇J_d, the gradient of replica d's mean loss; then
                    1. sequence parallel: the partial gradients of the LayerNorms and
                       row-parallel biases summed over the TP group
                    2. ∇J = (1/dp) Σ_d ∇J_d over the DP group: one flat all-reduce (zero = 0),
                       or ZeRO's reduce-scatter around the optimizer (zero = 1, 2, 3)
    loss          J_d is on the last stage; broadcast over the PP group, averaged over the
                  DP group: J = (1/dp) Σ_d J_d, the global mean, the same float on every rank

The tiny transformer's head is its own nn.Linear, not tied to the token embedding, so no
gradient crosses the first and last stage. (Megatron-LM ties them and all-reduces the
embedding's gradient over the pair of ranks that hold its two copies.)

ZeRO-2 and -3 reduce gradients during backward, as soon as a bucket's gradients are made;
a pipeline makes a stage's gradients in m backward pieces (and interleaved in v chunks),
so they are offered only with pp = 1. ZeRO-1 reduces in step(), after the whole pipeline
step, and works with any pp.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from hpclab import comm
from hpclab.parallel.mesh import Mesh
from hpclab.parallel.pipeline_equal_stages import SCHEDULES  # name -> (p, m, r) -> actions
from hpclab.parallel.pipeline_executor import PipelineTimeline, run_schedule
from hpclab.parallel.sequence_parallel import (
    all_reduce_sequence_parallel_grads,
    gather_sequence,
    scatter_to_sequence,
)
from hpclab.parallel.tensor_parallel import ALGORITHM, gather_parameters, split_sizes
from hpclab.parallel.tp_transformer import ParallelBlock
from hpclab.parallel.zero import zero_optimizer
from hpclab.problems.transformer import TinyTransformer, lm_loss
from hpclab.train import NonFiniteLossError

INTERLEAVED_CHUNKS = 2      # v: model chunks per rank with schedule="interleaved"


@dataclass(frozen=True)
class Layout:
    """How p = dp·tp·pp ranks share one training step."""
    dp: int = 1
    tp: int = 1
    pp: int = 1
    micro_batches: int = 1          # m, per pipeline step (per DP replica)
    zero: int = 0                   # 0: DP all-reduce; 1: ZeRO-1 over DP; 2, 3: pp = 1 only
    schedule: str = "1f1b"          # "gpipe" | "1f1b" | "interleaved" (v = 2 chunks per rank)
    sequence_parallel: bool = False

    def __post_init__(self):
        for name in ("dp", "tp", "pp", "micro_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.zero not in (0, 1, 2, 3):
            raise ValueError(f"zero (the ZeRO stage) must be 0, 1, 2 or 3, got {self.zero}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got "
                             f"{self.schedule!r}")
        if self.zero >= 2 and self.pp > 1:
            raise ValueError(f"zero={self.zero} needs pp=1, got pp={self.pp}: ZeRO-{self.zero} "
                             f"reduces each gradient bucket as backward completes it, and a "
                             f"pipeline completes a stage's gradients only after all m "
                             f"micro-batches; use zero=1 (reduces in step()) or pp=1")
        if self.pp > 1 and self.schedule == "interleaved" and self.micro_batches % self.pp:
            raise ValueError(f"the interleaved schedule needs micro_batches to be a multiple "
                             f"of pp, got micro_batches={self.micro_batches}, pp={self.pp}")

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def chunks(self) -> int:
        """v: model chunks per rank (2 with the interleaved schedule over pp > 1)."""
        return INTERLEAVED_CHUNKS if self.schedule == "interleaved" and self.pp > 1 else 1

    def check(self, world_size: int) -> None:
        """The layout must use exactly the job's ranks."""
        if self.world_size != world_size:
            raise ValueError(f"dp × tp × pp = {self.dp} × {self.tp} × {self.pp} = "
                             f"{self.world_size} must equal the world size {world_size}")


class Piece(nn.Module):
    """Virtual stage s of the model: [embeddings] blocks a … b−1 [final norm, head], with
    TinyTransformer's parameter names (tok_emb.weight, blocks.3.attn.qkv.weight, …)."""

    def __init__(self, model: TinyTransformer, blocks: range, first: bool, last: bool,
                 tp, sequence_parallel: bool, algorithm: str):
        super().__init__()
        self.tp, self.sequence_parallel, self.algorithm = tp, sequence_parallel, algorithm
        self.first, self.last, self.block_size = first, last, model.cfg.block_size
        if first:
            self.tok_emb = copy.deepcopy(model.tok_emb)
            self.pos_emb = copy.deepcopy(model.pos_emb)
        self.blocks = nn.Sequential(OrderedDict(
            (str(i), ParallelBlock(model.blocks[i], tp, sequence_parallel, algorithm))
            for i in blocks))
        if last:
            self.ln_f, self.head = copy.deepcopy(model.ln_f), copy.deepcopy(model.head)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Piece 0 takes token ids (B, T); the last returns logits (B, T, vocab); between
        them the residual stream h, (B, T/t, C) on each TP rank with sequence parallel."""
        if self.first:
            idx = h
            if idx.shape[1] > self.block_size:
                raise ValueError(f"sequence length {idx.shape[1]} exceeds block_size="
                                 f"{self.block_size}")
            h = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1], device=idx.device))
            if self.sequence_parallel:
                h = scatter_to_sequence(h, self.tp, self.algorithm)
        h = self.blocks(h)
        if self.last:
            if self.sequence_parallel:
                h = gather_sequence(h, self.tp, self.algorithm)
            h = self.head(self.ln_f(h))
        return h


class Trainer3D:
    """Trains `model` DP × TP × PP as `layout` says; every rank calls every method."""

    def __init__(self, ctx, layout: Layout, model: TinyTransformer, optimizer_class,
                 **opt_kwargs):
        layout.check(ctx.world_size)
        check_model(model, layout)
        self.ctx, self.layout, self.algorithm = ctx, layout, ALGORITHM
        self.mesh = Mesh(ctx, layout.dp, layout.tp, layout.pp)
        self.timeline: PipelineTimeline | None = None
        self.steps, self.last_finite = 0, None
        pp, v, k = layout.pp, layout.chunks, self.mesh.pp.rank
        S = pp * v
        bounds = [0]
        for n in split_sizes(model.cfg.n_layers, S):
            bounds.append(bounds[-1] + n)
        self.chunks = nn.ModuleList(
            Piece(model, range(bounds[s], bounds[s + 1]), s == 0, s == S - 1, self.mesh.tp,
                  layout.sequence_parallel, self.algorithm)
            for s in (c * pp + k for c in range(v)))
        self._names = [name for name, _ in model.named_parameters()]
        group = self.mesh.dp.group
        if layout.zero == 0:
            self.optimizer = optimizer_class(self.chunks.parameters(), **opt_kwargs)
        else:
            units = ([u for piece in self.chunks for u in (*piece.blocks, piece)]
                     if layout.zero == 3 else None)
            self.optimizer = zero_optimizer(layout.zero, self.chunks, optimizer_class,
                                            units=units, group=group, timeout=ctx.timeout,
                                            **opt_kwargs)

    def step(self, batch) -> float:
        """One optimizer step on the global batch (inputs, targets); the global mean loss."""
        inputs, targets = self.mesh.shard(batch)
        m = self.layout.micro_batches
        if len(inputs) < m:
            raise ValueError(f"each of the dp={self.layout.dp} replicas gets {len(inputs)} "
                             f"rows of the batch, fewer than micro_batches={m}: use a batch "
                             f"of at least {m * self.layout.dp} samples")
        self.optimizer.zero_grad(set_to_none=True)
        if self.layout.pp == 1:
            self.timeline, local = None, 0.0
            for x, y in zip(inputs.tensor_split(m), targets.tensor_split(m)):
                loss = lm_loss(self.chunks[0](x), y) * (len(x) / len(inputs))
                loss.backward()
                local += float(loss.detach())
        else:
            local = self._pipeline_step(inputs, targets)
        loss = self._global_loss(local)
        if not math.isfinite(loss):
            raise NonFiniteLossError(self.steps, loss, self.last_finite)
        self._reduce_gradients()
        self.optimizer.step()
        self.steps, self.last_finite = self.steps + 1, loss
        return loss

    def _pipeline_step(self, inputs, targets) -> float | None:
        pp, k, m = self.mesh.pp, self.mesh.pp.rank, self.layout.micro_batches
        actions = SCHEDULES[self.layout.schedule](pp.world_size, m, k)
        self.timeline = PipelineTimeline()
        return run_schedule(actions, list(self.chunks), pp,
                            inputs if k == 0 else None,
                            targets if k == pp.world_size - 1 else None, lm_loss, m,
                            timeline=self.timeline, name=self.layout.schedule)

    def _global_loss(self, local: float | None) -> float:
        """J_d from the last stage to the whole PP group, then the mean over DP."""
        device = next(self.chunks.parameters()).device
        t = torch.tensor([0.0 if local is None else local], dtype=torch.float64,
                         device=device)
        pp, dp = self.mesh.pp, self.mesh.dp
        if pp.world_size > 1:
            comm.broadcast(t, src=pp.world_size - 1, algorithm=self.algorithm,
                           group=pp.group, timeout=pp.timeout)
        if dp.world_size > 1:
            comm.all_reduce(t, op="avg", algorithm=self.algorithm, group=dp.group,
                            timeout=dp.timeout)
        return float(t)

    def _reduce_gradients(self) -> None:
        if self.layout.zero == 0:
            self.mesh.after_backward(self.chunks)       # SP sums over TP, mean over DP
        elif self.layout.zero == 1:
            all_reduce_sequence_parallel_grads(self.chunks, self.mesh.tp, self.algorithm)
        # zero 2, 3: reduced during backward (sequence parallel is refused for them)

    def full_parameters(self) -> dict[str, torch.Tensor]:
        """The whole model's parameters, named as model.named_parameters(), on every rank:
        gathered over TP (gather_parameters), then over PP (each stage its own names).
        Collective: every rank of the job calls it."""
        if self.layout.zero == 3:
            with self.optimizer.full_parameters():
                mine = self._gather_tp()
        else:
            mine = self._gather_tp()
        full = mine
        if self.mesh.pp.world_size > 1:
            stages = [None] * self.mesh.pp.world_size
            device = next(iter(mine.values())).device
            dist.all_gather_object(stages, {n: t.cpu() for n, t in mine.items()},
                                   group=self.mesh.pp.group)
            full = {n: t.to(device) for stage in stages for n, t in stage.items()}
        return {n: full[n] for n in self._names}

    def _gather_tp(self) -> dict[str, torch.Tensor]:
        out = {}
        for piece in self.chunks:
            out.update(gather_parameters(piece, self.mesh.tp, algorithm=self.algorithm))
        return out


def check_model(model: TinyTransformer, layout: Layout) -> None:
    """Can `layout` split `model`? A ValueError naming the values if not (no processes
    needed: a planner can filter layouts with it)."""
    cfg, t = model.cfg, layout.tp
    pieces = layout.pp * layout.chunks
    if cfg.n_layers < pieces:
        raise ValueError(f"pp={layout.pp} stages × v={layout.chunks} chunks = {pieces} pieces "
                         f"need at least {pieces} blocks, the model has n_layers="
                         f"{cfg.n_layers}")
    for name, n in (("n_heads", cfg.n_heads), ("d_model", cfg.d_model)):
        if n % t:
            raise ValueError(f"tp={t} must divide {name}={n}: every TP rank holds {name}/tp")
    if layout.sequence_parallel and cfg.block_size % t:
        raise ValueError(f"sequence_parallel needs tp={t} to divide block_size="
                         f"{cfg.block_size}: every TP rank holds T/tp positions")
    if layout.sequence_parallel and t > 1 and layout.zero >= 2:
        raise ValueError(f"sequence_parallel with tp={t} and zero={layout.zero} is not "
                         f"offered: ZeRO-{layout.zero} reduces gradients during backward, "
                         f"before the sequence-parallel partial gradients are summed over "
                         f"TP; use zero=1 or sequence_parallel=False")
