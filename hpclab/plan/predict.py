"""The planner's model: step time and memory per rank of one configuration.

The α–β–γ cost model (hpclab.comm.cost_model) prices every message; each layer's
measured compute time (layer_times.py, or FLOPs at a data-sheet peak, datasheet.py)
prices the arithmetic. With d replicas, t tensor ranks, p pipeline stages, m
micro-batches of b = B/(d·m) sequences of s tokens, L_i layers on stage i, hidden h and
e bytes per activation, one micro-batch's boundary activation is a = b·s·h·e bytes and

    T_stage = max_i [ L_i·(t_block(b, t) + T_TP) + [i = 0]·t_embed(b) + [i = p−1]·t_head(b) ]
    T_TP    = 4 · AR_t(a)          f and g of attention and MLP, forward and backward
              (sequence parallel: 4 · (AG_t(a) + RS_t(a)), the same bytes in the ring)
    T_pipe  = (v·m + p − 1) · (T_stage/v + 2·(2α + (a + 96)·β))   p > 1 (v = 1 but interleaved)
            = m · T_stage                                     p = 1

(t_block × 4/3 under full recomputation: the forward runs again in backward), so the
compute part is m·T_stage/(1 − bubble) with the schedule's bubble (p−1)/(m+p−1)
(GPipe, 1F1B) or (p−1)/(v·m+p−1) (interleaved), and each of the v·m + p − 1 slots waits
for one activation forward and one gradient back, each after its 96-byte header. Then the gradients of the rank's
Ψ_rank = Ψ/(t·p) parameters (hpclab.memory.rank_parameters), e_g bytes each, are
combined over the d replicas, and the optimizer steps what the rank owns:

    T_DP  = AR_d(Ψ_rank·e_g)                                     ZeRO 0
          = RS_d(Ψ_rank·e_g) + AG_d(Ψ_rank·e_θ)                  ZeRO 1, 2
          = RS_d(Ψ_rank·e_g) + 2·AG_d(Ψ_rank·e_θ)                ZeRO 3 (gathered twice)
          + AR_d(8 B) + ⌈log₂p⌉·(α + 8β)      the loss: over DP, and from the last stage
    T_opt = t_opt · Ψ_rank / (d if ZeRO ≥ 1 else 1)

    T_step = T_pipe + T_DP + T_opt

with the ring's collectives on n bytes over q ranks (cost_model.ring = RS + AG):

    RS_q(n) = (q−1)·(α₂ + (n/q)·β₂ + (n/q)·γ)      AG_q(n) = (q−1)·(α₂ + (n/q)·β₂)

Nothing is assumed to overlap (our trainer reduces after backward). When the p ranks
share c < p cores (local ranks of one CPU), a layer timed on one core alone takes
max(1, p_busy/c) times as long, with p_busy = p·(1 − bubble) ranks computing on average
(and all p in the optimizer step): a pipeline's idle stages leave their cores to the
busy ones.

Memory per rank is
hpclab.memory's calculator (per_rank.py: states with ZeRO over d, activations with the
schedule's micro-batches in flight: GPipe m, 1F1B min(m, p − i), interleaved its chunks)
at its fullest stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hpclab.comm.cost_model import Costs, predict
from hpclab.memory import (
    FP32,
    Parallelism,
    Precision,
    RankMemory,
    Training,
    TransformerShape,
    rank_memory,
    rank_parameters,
)

from .configs import CHUNKS, Layout

# pipeline_executor.py sends a header of 12 int64 before every activation and gradient
HEADER_BYTES = 12 * 8


class Compute(Protocol):
    """Seconds of forward + backward (layer_times.LayerTimes, datasheet.DatasheetCompute)."""
    def block(self, b: int, s: int, t: int) -> float: ...
    def embedding(self, b: int, s: int) -> float: ...
    def head(self, b: int, s: int, t: int) -> float: ...
    def optimizer(self, n_parameters: float) -> float: ...


@dataclass(frozen=True)
class Workload:
    """What a step trains: the model, B sequences of s tokens, precision and optimizer."""
    shape: TransformerShape
    batch: int                       # B, sequences per step
    seq: int                         # s
    precision: Precision = FP32
    optimizer: str = "adam"
    recompute: str = "none"


@dataclass
class Machine:
    """Compute, links and memory of the ranks. `costs` prices a group spanning `span`
    consecutive ranks (a callable), or every group alike (one Costs)."""
    compute: Compute
    costs: Costs | Callable[[int], Costs]
    memory_bytes: float | None = None      # None: no limit
    name: str = "this machine"
    cores: int | None = None               # c ranks' worth of compute; None: one per rank

    def link(self, span: int) -> Costs:
        return self.costs(span) if callable(self.costs) else self.costs


@dataclass(frozen=True)
class Prediction:
    """Seconds per step, by term, and the fullest rank's bytes."""
    compute: float          # the slots' compute, bubble included
    tp: float               # tensor-parallel collectives on the critical path
    pp: float               # activations and gradients between stages
    dp: float               # gradient all-reduce (ZeRO: reduce-scatter + all-gather)
    optimizer: float
    bubble: float           # idle fraction of the pipeline
    memory: RankMemory

    @property
    def step(self) -> float:
        return self.compute + self.tp + self.pp + self.dp + self.optimizer


def all_reduce(n: float, q: int, c: Costs) -> float:
    return predict("ring", n, q, c)


def reduce_scatter(n: float, q: int, c: Costs) -> float:
    return 0.0 if q == 1 else (q - 1) * c.exchange_add(n / q)


def all_gather(n: float, q: int, c: Costs) -> float:
    return 0.0 if q == 1 else (q - 1) * c.exchange(n / q)


def share(machine: Machine, busy: float) -> float:
    """How much slower a rank computes when `busy` ranks compute at once on c cores:
    max(1, busy/c) (a layer time is measured on one core alone)."""
    return 1.0 if machine.cores is None else max(1.0, busy / machine.cores)


def bubble_fraction(layout: Layout, chunks: int = CHUNKS) -> float:
    p, m = layout.pp, layout.micro_batches
    v = chunks if layout.schedule == "interleaved" else 1
    return (p - 1) / (v * m + p - 1)


def parallelism(layout: Layout, chunks: int = CHUNKS) -> Parallelism:
    """hpclab.memory's description of `layout`."""
    return Parallelism(dp=layout.dp, tp=layout.tp, pp=layout.pp, sp=layout.sequence_parallel,
                       zero=layout.zero, microbatches=layout.micro_batches,
                       schedule=layout.schedule, chunks=chunks)


def training(work: Workload, layout: Layout) -> Training:
    return Training(seq=work.seq, micro_batch=micro_batch(work, layout),
                    precision=work.precision, optimizer=work.optimizer,
                    recompute=work.recompute)


def micro_batch(work: Workload, layout: Layout) -> int:
    rows = work.batch // (layout.dp * layout.micro_batches)
    if rows < 1 or rows * layout.dp * layout.micro_batches != work.batch:
        raise ValueError(f"B={work.batch} does not split into d={layout.dp} replicas × "
                         f"m={layout.micro_batches} micro-batches of equal size")
    return rows


def _edge_stages(p: int) -> list[int]:
    """The stages that can be fullest: a middle stage has no more layers than stage 0
    (the first L mod p stages get the extra ones), no more micro-batches in flight (n_i
    falls with i in every schedule) and no embedding, so the first or the last (the head)."""
    return sorted({0, p - 1})


def memory(work: Workload, layout: Layout, chunks: int = CHUNKS) -> RankMemory:
    """The fullest pipeline stage's RankMemory (hpclab.memory.rank_memory)."""
    par, run = parallelism(layout, chunks), training(work, layout)
    stages = [rank_memory(work.shape, run, par, i) for i in _edge_stages(layout.pp)]
    return max(stages, key=lambda r: r.total)


def predict_layout(work: Workload, layout: Layout, machine: Machine,
                   chunks: int = CHUNKS) -> Prediction:
    """The terms of T_step for `layout` (module docstring)."""
    shape, s, e = work.shape, work.seq, work.precision.activation_bytes
    d, t, p, m = layout.dp, layout.tp, layout.pp, layout.micro_batches
    b, par = micro_batch(work, layout), parallelism(layout, chunks)
    par.check(shape)
    c = machine.compute
    a = b * s * shape.hidden * e
    tp_costs = machine.link(t)
    if layout.sequence_parallel:
        tp_layer = 4 * (all_gather(a, t, tp_costs) + reduce_scatter(a, t, tp_costs))
    else:
        tp_layer = 4 * all_reduce(a, t, tp_costs)
    # full recomputation runs each block's forward again in backward: t_f + t_b = 3·t_f
    # becomes 4·t_f (selective recomputes only the attention core, left out)
    block = c.block(b, s, t) * (4 / 3 if work.recompute == "full" else 1.0)
    stage_compute, stage_tp = max(
        (par.layers_on(shape, i) * block + (c.embedding(b, s) if i == 0 else 0.0)
         + (c.head(b, s, t) if i == p - 1 else 0.0), par.layers_on(shape, i) * tp_layer)
        for i in range(p))
    v = chunks if layout.schedule == "interleaved" else 1
    slots = v * m + p - 1 if p > 1 else m
    pp_costs = machine.link(d * t * p)
    hop = 2 * (pp_costs.send(HEADER_BYTES) + pp_costs.send(a)) if p > 1 else 0.0
    psi = max(rank_parameters(shape, par, i) for i in _edge_stages(p))
    per = work.precision
    grads = psi * (per.grad_bytes + per.accum_bytes)
    dp_costs = machine.link(d * t)
    if layout.zero == 0:
        dp = all_reduce(grads, d, dp_costs)
    else:
        gathers = 2 if layout.zero == 3 else 1
        dp = reduce_scatter(grads, d, dp_costs) + gathers * all_gather(psi * per.param_bytes,
                                                                       d, dp_costs)
    # the step's loss: broadcast from the last stage over PP, averaged over DP (8 bytes)
    dp += all_reduce(8, d, dp_costs) + (math.ceil(math.log2(p)) * machine.link(d * t * p)
                                        .send(8) if p > 1 else 0.0)
    owned = psi / d if layout.zero >= 1 else psi
    bubble = bubble_fraction(layout, chunks)
    return Prediction(compute=slots * stage_compute / v * share(machine, d * t * p * (1 - bubble)),
                      tp=slots * stage_tp / v, pp=slots * hop, dp=dp,
                      optimizer=c.optimizer(owned) * share(machine, d * t * p),
                      bubble=bubble,
                      memory=memory(work, layout, chunks))
