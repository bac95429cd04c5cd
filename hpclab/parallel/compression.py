"""Gradient compression as DDP communication hooks, with error feedback.

Each hook has the signature of our DDP's comm hooks, `hook(state, bucket) -> averaged
flat gradient` (bucket: a buckets.GradBucket, as torch's hooks receive a GradBucket), and
replaces "all-reduce 4 bytes per gradient" by something cheaper on the wire:

    fp16      cast to half, all-reduce                       2 bytes / element
    int8      scale s = max|v|/127, q = round(v/s); all-gather q and s   1 byte / element
    top-k     keep the k largest |v|; all-gather (index, value)   8 bytes × k
    PowerSGD  M ≈ P̂ Qᵀ of rank r (Vogels et al. 2019):       4 bytes × r(rows + cols)
              (one flat matrix per bucket, or per tensor as torch's powerSGD_hook)

Error feedback (Seide et al. 2014; Karimireddy et al. 2019) makes lossy compression
converge like the uncompressed run: what compression dropped this step is added back the
next step, so nothing is lost, only delayed:

    v_t = g_t + e_{t−1}          (gradient plus last step's residual)
    ĝ_t = average(C(v_t))        (compressed, communicated, averaged)
    e_t = v_t − ĝ_t              (what the average did not carry)

State is kept per bucket, keyed by `bucket.index()`, which names the same bucket on every
rank and in every step.

    state = TopKState.for_ddp(ddp, ratio=0.01)     # the state communicates in ddp.group
    ddp.register_comm_hook(state, topk_hook)
    ... train ...
    state.bytes_sent   # bytes this rank has put on the wire so far

    # PowerSGD laid out like torch's powerSGD_hook: a matrix per tensor, biases averaged
    # as they are, 10 steps of plain averaging first (tests/scaling/test_powersgd_vs_torch.py)
    state = PowerSGDState.for_ddp(ddp, rank=2, per_tensor=True, start_iter=10)

Bytes on the wire are counted for ring collectives: an all-reduce of b bytes sends
2(p−1)/p·b per rank, an all-gather of b bytes per rank sends (p−1)·b.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from hpclab.parallel.buckets import GradBucket


def allreduce_bytes(payload: int, p: int) -> float:
    return 2 * (p - 1) / p * payload


def allgather_bytes(payload: int, p: int) -> float:
    return (p - 1) * payload


@dataclass
class CompressionState:
    """Per-bucket error-feedback residuals and a byte counter, shared by all hooks.
    `group` is the process group the hook communicates in (None: the default group)."""
    error_feedback: bool = True
    group: Any = None
    residuals: dict = field(default_factory=dict)   # bucket index -> e_{t−1}
    bytes_sent: float = 0.0

    @classmethod
    def for_ddp(cls, ddp, **kwargs):
        """A state for the hooks of `ddp`: it communicates in ddp's process group."""
        return cls(group=ddp.group, **kwargs)

    def add_residual(self, key: int, g: torch.Tensor) -> torch.Tensor:
        """v = g + e (the residual from this bucket's previous step)."""
        e = self.residuals.get(key)
        return g + e if (self.error_feedback and e is not None) else g.clone()

    def keep_residual(self, key: int, v: torch.Tensor, sent: torch.Tensor) -> None:
        if self.error_feedback:
            self.residuals[key] = v - sent


@dataclass
class TopKState(CompressionState):
    ratio: float = 0.01

    def __post_init__(self):
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")


@dataclass
class PowerSGDState(CompressionState):
    """PowerSGD's settings and memory. By default each bucket is one near-square matrix;
    with `per_tensor=True` each parameter of the bucket gets its own (shape[0] × rest)
    matrix and tensors too small to gain (biases) are averaged uncompressed, as torch's
    `powerSGD_hook` does. `start_iter` steps of plain averaging come first (torch's
    `start_powerSGD_iter`); `iter` counts the steps done (torch's name), advanced by the
    step's last bucket."""
    rank: int = 2
    seed: int = 0
    start_iter: int = 0
    per_tensor: bool = False
    min_compression_rate: float = 2.0  # per-tensor: compress if n·m > rate · r(n + m)
    iter: int = 0
    q_memory: dict = field(default_factory=dict)   # warm start: last step's Qs per bucket

    def __post_init__(self):
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank must be a positive int, got {self.rank!r}")
        if not isinstance(self.start_iter, int) or self.start_iter < 0:
            raise ValueError(f"start_iter must be an int >= 0, got {self.start_iter!r}")
        if self.min_compression_rate <= 0:
            raise ValueError(f"min_compression_rate must be > 0, got {self.min_compression_rate}")


def _world(group) -> int:
    return dist.get_world_size(group)


def _all_gather(t: torch.Tensor, group) -> list[torch.Tensor]:
    parts = [torch.empty_like(t) for _ in range(_world(group))]
    dist.all_gather(parts, t.contiguous(), group=group)
    return parts


def fp16_hook(state: CompressionState, bucket: GradBucket) -> torch.Tensor:
    """Average in half precision: ĝ = (Σ_i half(v_i)) / p."""
    key, group = bucket.index(), state.group
    p = _world(group)
    v = state.add_residual(key, bucket.buffer())
    h = v.to(torch.float16)
    dist.all_reduce(h, group=group)
    avg = h.to(v.dtype) / p
    state.keep_residual(key, v, avg)
    state.bytes_sent += allreduce_bytes(h.numel() * h.element_size(), p)
    return avg


def int8_hook(state: CompressionState, bucket: GradBucket) -> torch.Tensor:
    """Each rank sends q_i = round(v_i / s_i) in int8 and s_i = max|v_i|/127."""
    key, group = bucket.index(), state.group
    p = _world(group)
    v = state.add_residual(key, bucket.buffer())
    scale = (v.abs().max() / 127.0).clamp_min(torch.finfo(v.dtype).tiny).reshape(1)
    q = torch.round(v / scale).clamp_(-127, 127).to(torch.int8)
    qs, scales = _all_gather(q, group), _all_gather(scale.to(torch.float32), group)
    avg = sum(qi.to(v.dtype) * si.to(v.dtype) for qi, si in zip(qs, scales)) / p
    state.keep_residual(key, v, avg)
    state.bytes_sent += allgather_bytes(q.numel() + 4, p)
    return avg


def topk_hook(state: TopKState, bucket: GradBucket) -> torch.Tensor:
    """Keep the k = ⌈ratio·n⌉ largest |v_j|; send (j, v_j); average the sparse sum."""
    key, group = bucket.index(), state.group
    p = _world(group)
    v = state.add_residual(key, bucket.buffer())
    k = max(1, math.ceil(state.ratio * v.numel())) if v.numel() else 0
    idx = v.abs().topk(k).indices
    vals = v[idx]
    avg = torch.zeros_like(v)
    for idx_i, vals_i in zip(_all_gather(idx.to(torch.int32), group), _all_gather(vals, group)):
        avg.index_add_(0, idx_i.long(), vals_i)
    avg /= p
    state.keep_residual(key, v, avg)
    state.bytes_sent += allgather_bytes(k * (4 + vals.element_size()), p)
    return avg


def matrix_shape(n: int) -> tuple[int, int]:
    """A near-square (rows, cols) with rows·cols >= n, to view a flat bucket as a matrix."""
    rows = max(1, math.isqrt(max(n, 1)))
    return rows, max(1, math.ceil(n / rows))


def orthonormalize(P: torch.Tensor) -> torch.Tensor:
    """Columns of P made orthonormal (reduced QR); spans the same subspace."""
    return torch.linalg.qr(P, mode="reduced").Q


def _layout(state: PowerSGDState, bucket: GradBucket):
    """Where the matrices lie in the (padded) flat bucket: [(offset, rows, cols)], the
    uncompressed ranges [(offset, size)], and the padded length."""
    if not state.per_tensor:
        rows, cols = matrix_shape(bucket.numel)
        return [(0, rows, cols)], [], rows * cols
    matrices, plain, offset = [], [], 0
    for param in bucket.parameters():
        size = param.numel()
        rows = param.shape[0] if param.dim() else 1
        cols = size // rows if rows else 0
        r = min(state.rank, rows, cols)
        if rows * cols > state.min_compression_rate * r * (rows + cols):
            matrices.append((offset, rows, cols))
        elif size:
            plain.append((offset, size))
        offset += size
    return matrices, plain, offset


def _mean(tensors: list[torch.Tensor], state: CompressionState, group) -> list[torch.Tensor]:
    """Average a list of tensors over the group with one all-reduce of their concatenation."""
    if not tensors:
        return []
    p, flat = _world(group), torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, group=group)
    flat /= p
    state.bytes_sent += allreduce_bytes(flat.numel() * flat.element_size(), p)
    return [c.view_as(t) for c, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def powersgd_hook(state: PowerSGDState, bucket: GradBucket) -> torch.Tensor:
    """Rank-r PowerSGD with one power iteration per step and warm-started Q:

        M = v viewed as a (rows × cols) matrix       (or one matrix per tensor)
        P = M Q;   P ← mean_i P_i;   P̂ = orthonormalize(P)
        Q = Mᵀ P̂;  Q ← mean_i Q_i;   ĝ = P̂ Qᵀ

    Repeated on the same M this is subspace iteration: P̂ Qᵀ tends to M's best rank-r
    approximation (Eckart–Young), which the tests check against an SVD. ĝ = P̂ P̂ᵀ M̄ only
    depends on span(P̂), so normalising Q first (as torch does) changes nothing but rounding.
    """
    key, group = bucket.index(), state.group
    warm_up = state.iter < state.start_iter
    if bucket.is_last():
        state.iter += 1
    if warm_up:   # plain average
        return _mean([bucket.buffer().clone()], state, group)[0]
    v = state.add_residual(key, bucket.buffer())
    n = v.numel()
    matrices, plain, padded = _layout(state, bucket)
    v_pad = torch.nn.functional.pad(v, (0, padded - n))
    out = torch.empty_like(v_pad)
    for (o, s), avg in zip(plain, _mean([v_pad[o:o + s] for o, s in plain], state, group)):
        out[o:o + s] = avg
    Ms = [v_pad[o:o + rows * cols].view(rows, cols) for o, rows, cols in matrices]
    Qs = state.q_memory.get(key)
    if Qs is None:   # the same seed on every rank, so all ranks start from the same Q
        gen = torch.Generator().manual_seed(state.seed + key)
        Qs = [torch.randn(M.shape[1], min(state.rank, *M.shape), generator=gen, dtype=v.dtype)
              for M in Ms]
    Ps = [orthonormalize(P) for P in _mean([M @ Q for M, Q in zip(Ms, Qs)], state, group)]
    Qs = _mean([M.t() @ P for M, P in zip(Ms, Ps)], state, group)
    state.q_memory[key] = Qs
    for (o, rows, cols), P, Q in zip(matrices, Ps, Qs):
        out[o:o + rows * cols] = (P @ Q.t()).reshape(-1)
    avg = out[:n]
    state.keep_residual(key, v, avg)
    return avg
