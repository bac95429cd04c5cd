"""Bytes per GPU: model states and activations under data, tensor, sequence and pipeline
parallelism, with ZeRO stage 0–3.

A rank of a job with N_d-way data parallelism, t-way tensor parallelism and p pipeline
stages holds the parameters of L_i = L/p layers (the first L mod p stages one more when p
does not divide L), plus the embeddings on the first stage and the head on the last,
their matrices split t ways:

    Ψ_rank = L_i·(Ψ_matrices/t + Ψ_vectors) + [first] Ψ_embed/t + [last] Ψ_head/t

ZeRO (Rajbhandari et al. 2020, section 5, figure 1) then partitions across the N_d
data-parallel ranks, with K the optimizer's bytes per parameter (states.py):

    stage 0 (DP)           (e_θ + e_g + K)·Ψ_rank
    stage 1 (P_os)         (e_θ + e_g)·Ψ_rank + K·Ψ_rank/N_d
    stage 2 (P_os+g)       e_θ·Ψ_rank + (e_g + K)·Ψ_rank/N_d
    stage 3 (P_os+g+p)     (e_θ + e_g + K)·Ψ_rank/N_d

(Ψ = 7.5B, N_d = 64, K = 12: 120, 31.4, 16.6, 1.9 GB.) An fp32 gradient-accumulation
buffer counts as gradient: kept whole at stage 1, sharded from stage 2. Not counted:
ZeRO-3's all-gathered working copy of the layer being computed, communication buckets,
temporary buffers, the allocator's fragmentation and the CUDA context.

Activations (activations.py) on stage i are one micro-batch's worth of its layers times
the micro-batches in flight (Huang et al. 2019, GPipe; Narayanan et al. 2021, 1F1B;
Korthikanti et al. 2022, section 4.2.3):

    A_i = n_i · [ L_i·A_layer(t, sp) + outside terms of stage i ]
    n_i = m                (GPipe: all m forwards before the backwards)
    n_i = min(m, p − i)    (1F1B: stage i runs p − i warm-up forwards)

so with 1F1B (m >= p) the first stage holds p·(L/p) = L layers' worth — as much as one
GPU without pipelining would. Interleaved 1F1B (v chunks of L_i/v layers per rank, m a
multiple of p; pipeline_interleaved.py) counts chunks in flight instead:

    A_i = n_i·(L_i/v)·A_layer(t, sp) + n_i,0·[first] + n_i,v−1·[last]
    n_i = min(v·m, 2(p − i − 1) + (v − 1)·p + 1)   chunks (m = p: all v·m)

with n_i,c the micro-batches of chunk c among those n_i (micro-batches go through in
groups of p per chunk: n_i,c = p·⌊n_i/(pv)⌋ + min(p, max(0, n_i mod pv − c·p))), i.e. the
outside terms counted at the step that holds the most chunks. The first stage holds
(v·p + p − 1)·L/(p·v) = L·(1 + (p − 1)/(p·v)) layers' worth, a little more than 1F1B's L
(Korthikanti et al. 2022, section 4.2.3; Narayanan et al. 2021, section 2.2).

On top of what is stored, the backward of one layer needs working memory W (counted once
per rank, our estimate, checked on CUDA in tests/memory): under recomputation the layer
rebuilt, A_layer(none) − A_layer(recompute), and the gradients alive at the activation
function, the f-wide one arriving and the one it produces, with the residual stream's:

    W = A_layer(none) − A_layer(recompute) + (2·f·sb/t + sbh/(t if sp else 1))·e

    from hpclab.memory import LLAMA3_70B, MIXED, Parallelism, Training, stage_memories
    for r in stage_memories(LLAMA3_70B, Training(seq=8192, precision=MIXED),
                            Parallelism(dp=8, tp=8, pp=4, sp=True, zero=1, microbatches=8)):
        print(r.stage, r.total / 1e9)
"""

from __future__ import annotations

from dataclasses import dataclass

from .activations import check_recompute, layer_bytes, outside_terms, total
from .shapes import TransformerShape
from .states import MIXED, Precision, bytes_per_parameter, check_optimizer

SCHEDULES = ("1f1b", "gpipe", "interleaved")


@dataclass(frozen=True)
class Training:
    """What one step processes and how: s, b, precision, optimizer, recomputation."""
    seq: int = 2048               # s
    micro_batch: int = 1          # b
    precision: Precision = MIXED
    optimizer: str = "adam"       # a key of states.MOMENTS
    recompute: str = "none"       # one of activations.RECOMPUTE

    def __post_init__(self):
        if self.seq < 1 or self.micro_batch < 1:
            raise ValueError(f"seq and micro_batch must be >= 1, got seq={self.seq}, "
                             f"micro_batch={self.micro_batch}")
        check_optimizer(self.optimizer)
        check_recompute(self.recompute)


@dataclass(frozen=True)
class Parallelism:
    """N_d-way data (with a ZeRO stage), t-way tensor (+ sequence), p-stage pipeline."""
    dp: int = 1                   # N_d
    tp: int = 1                   # t
    pp: int = 1                   # p
    sp: bool = False              # sequence parallelism in the tensor-parallel group
    zero: int = 0                 # ZeRO stage 0 (plain data parallel) to 3
    microbatches: int = 1         # m, per step and pipeline
    schedule: str = "1f1b"        # "1f1b", "gpipe" or "interleaved"
    chunks: int = 2               # v, model chunks per rank (interleaved only)

    def __post_init__(self):
        for field in ("dp", "tp", "pp", "microbatches", "chunks"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.zero not in (0, 1, 2, 3):
            raise ValueError(f"zero (the ZeRO stage) must be 0, 1, 2 or 3, got {self.zero}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule == "interleaved" and self.microbatches % self.pp:
            raise ValueError(f"the interleaved schedule needs microbatches to be a multiple "
                             f"of pp (as Megatron-LM), got microbatches={self.microbatches}, "
                             f"pp={self.pp}")

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp

    def check(self, shape: TransformerShape) -> None:
        """The degrees must split the model: p <= L stages, t divides the a heads."""
        if self.pp > shape.layers:
            raise ValueError(f"pp={self.pp} pipeline stages need at least as many layers, "
                             f"the model has {shape.layers}")
        if self.schedule == "interleaved" and self.pp * self.chunks > shape.layers:
            raise ValueError(f"pp={self.pp} stages × chunks={self.chunks} need at least "
                             f"{self.pp * self.chunks} layers, the model has {shape.layers}")
        if shape.heads % self.tp:
            raise ValueError(f"tp={self.tp} must divide the {shape.heads} attention heads")

    def layers_on(self, shape: TransformerShape, stage: int) -> int:
        """L_i: L/p layers, the first L mod p stages one more when p does not divide L."""
        return shape.layers // self.pp + (1 if stage < shape.layers % self.pp else 0)

    def in_flight(self, stage: int) -> int:
        """n_i: micro-batches whose activations stage i holds at its peak (interleaved:
        model chunks, each 1/v of the stage)."""
        m, p, v = self.microbatches, self.pp, self.chunks
        if self.schedule == "gpipe":
            return m
        if self.schedule == "interleaved":
            return v * m if m == p else min(v * m, 2 * (p - stage - 1) + (v - 1) * p + 1)
        return min(m, p - stage)

    def in_flight_of_chunk(self, stage: int, chunk: int) -> int:
        """n_i,c: the micro-batches of chunk c among the n_i chunks in flight (1F1B and
        GPipe: chunk 0 is the stage, n_i)."""
        n = self.in_flight(stage)
        if self.schedule != "interleaved":
            return n
        p, v = self.pp, self.chunks
        return p * (n // (p * v)) + min(p, max(0, n % (p * v) - chunk * p))


@dataclass(frozen=True)
class RankMemory:
    """Bytes on one rank of pipeline stage `stage` (all its DP and TP ranks alike)."""
    stage: int
    parameters: float
    gradients: float
    optimizer: float
    activations: float        # stored for backward: A_i
    working: float = 0.0      # one layer's backward: W

    @property
    def total(self) -> float:
        return (self.parameters + self.gradients + self.optimizer + self.activations
                + self.working)

    def parts(self) -> dict[str, float]:
        """The four bars of the explorer (activations include the working memory W)."""
        return {"parameters": self.parameters, "gradients": self.gradients,
                "optimizer": self.optimizer, "activations": self.activations + self.working}


def rank_parameters(shape: TransformerShape, par: Parallelism, stage: int = 0) -> float:
    """Ψ_rank: the parameters one rank of `stage` owns before ZeRO."""
    par.check(shape)
    _check_stage(par, stage)
    t = par.tp
    psi = par.layers_on(shape, stage) * (shape.layer_matrices() / t + shape.layer_vectors())
    if stage == 0:
        psi += shape.embedding_parameters() / t
    if stage == par.pp - 1:
        psi += shape.head_parameters() / t
    return psi


def zero_states(psi: float, optimizer: str, precision: Precision, dp: int,
                zero: int) -> tuple[float, float, float]:
    """(parameters, gradients, optimizer) bytes per rank for Ψ_rank under ZeRO `zero`."""
    per = bytes_per_parameter(optimizer, precision)
    p, g, o = per.parameters * psi, per.gradients * psi, per.optimizer * psi
    return (p / dp if zero >= 3 else p, g / dp if zero >= 2 else g, o / dp if zero >= 1 else o)


def rank_activations(shape: TransformerShape, run: Training, par: Parallelism,
                     stage: int = 0) -> float:
    """A_i: activation bytes at the peak of stage i (one of its t tensor ranks)."""
    par.check(shape)
    _check_stage(par, stage)
    s, b, e = run.seq, run.micro_batch, run.precision
    layers = par.layers_on(shape, stage) * layer_bytes(shape, s, b, run.recompute, e,
                                                       par.tp, par.sp)
    first, last = stage == 0, stage == par.pp - 1
    if par.schedule != "interleaved":
        outside = total(outside_terms(shape, s, b, e, first=first, last=last), par.tp, par.sp)
        return par.in_flight(stage) * (layers + outside)
    v = par.chunks
    embed = total(outside_terms(shape, s, b, e, first=first, last=False), par.tp, par.sp)
    head = total(outside_terms(shape, s, b, e, first=False, last=last), par.tp, par.sp)
    return (par.in_flight(stage) * layers / v + par.in_flight_of_chunk(stage, 0) * embed
            + par.in_flight_of_chunk(stage, v - 1) * head)


def backward_working(shape: TransformerShape, run: Training, par: Parallelism) -> float:
    """W: one layer's backward, the layer rebuilt under recomputation and the gradients
    alive at its activation function."""
    s, b, e, t = run.seq, run.micro_batch, run.precision, par.tp
    rebuilt = (layer_bytes(shape, s, b, "none", e, t, par.sp)
               - layer_bytes(shape, s, b, run.recompute, e, t, par.sp))
    grads = (2 * shape.f * s * b / t + s * b * shape.hidden / (t if par.sp else 1))
    return rebuilt + grads * e.activation_bytes


def rank_memory(shape: TransformerShape, run: Training, par: Parallelism,
                stage: int = 0) -> RankMemory:
    """Parameters, gradients, optimizer state and activations on one rank of `stage`."""
    psi = rank_parameters(shape, par, stage)
    p, g, o = zero_states(psi, run.optimizer, run.precision, par.dp, par.zero)
    return RankMemory(stage, p, g, o, rank_activations(shape, run, par, stage),
                      backward_working(shape, run, par))


def stage_memories(shape: TransformerShape, run: Training,
                   par: Parallelism) -> list[RankMemory]:
    """One RankMemory per pipeline stage, first to last."""
    return [rank_memory(shape, run, par, i) for i in range(par.pp)]


def _check_stage(par: Parallelism, stage: int) -> None:
    if not 0 <= stage < par.pp:
        raise ValueError(f"stage must be in 0..{par.pp - 1} for pp={par.pp}, got {stage}")

