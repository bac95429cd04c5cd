"""Each layer's compute time, measured on this machine at the shard sizes a configuration
gives: the γ-like term of the planner (what the α–β–γ model leaves out).

A configuration (d, t, pp, m) runs micro-batches of b = B/(d·m) sequences of s tokens,
and on each of the t tensor ranks a block holds a/t heads and f/t MLP units. So the
planner needs, for every (b, t) some configuration uses,

    t_block(b, t)    forward + backward of one block's shard: LN, QKV (3h/t columns),
                     attention over a/t heads, the output projection (h/t rows), LN,
                     W₁ (f/t columns), GELU, W₂ (f/t rows); no collectives (those are
                     priced by the cost model)
    t_embed(b)       token + position embeddings, forward + backward
    t_head(b)        final LayerNorm, output head and cross-entropy, forward + backward
                     (replicated under tensor parallelism, as tp_transformer.py does)
    t_opt            the optimizer step, per parameter (Adam: a few passes over θ, g, m, v)

`measure_layer_times(cfg, shards)` times them in this process on one thread, as each of
the trainer's ranks computes (run_local gives every rank one thread); the predictor
scales them when the ranks share fewer cores (predict.share). world > 1 times them on
that many forked ranks at once instead, under whatever sharing that brings, and keeps
the slowest rank's. Each figure is the fastest of `repeats` runs after a warm-up: a
layer takes milliseconds, and on a shared machine other users only ever add time (the
rule of hpclab.comm.measure), so the minimum is the repeatable figure.

    times = measure_layer_times(cfg, shards={(4, 1), (4, 2), (2, 1)})
    times.block(4, 64, 2)          # seconds, b = 4 rows of s = 64 tokens, t = 2
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from hpclab.cluster.spawn import run_local
from hpclab.optim import Adam
from hpclab.problems.transformer import TransformerConfig, lm_loss

REPEATS = 15


class BlockShard(nn.Module):
    """One tensor rank's share of a pre-norm block, h ← h + Attn(LN(h)); h ← h + MLP(LN(h)),
    with a/t heads and f/t MLP units (the compute of tp_transformer.ParallelBlock on one
    rank, without its all-reduces)."""

    def __init__(self, d_model: int, n_heads: int, t: int, ffn: int | None = None):
        super().__init__()
        ffn = 4 * d_model if ffn is None else ffn
        if n_heads % t or d_model % t or ffn % t:
            raise ValueError(f"t={t} must divide n_heads={n_heads}, d_model={d_model} and "
                             f"ffn={ffn}")
        self.heads, self.d_head = n_heads // t, d_model // n_heads
        width = self.heads * self.d_head
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * width), nn.Linear(width, d_model)
        self.fc1, self.fc2 = nn.Linear(d_model, ffn // t), nn.Linear(ffn // t, d_model)

    def forward(self, h):
        B, T, _ = h.shape
        q, k, v = (z.view(B, T, self.heads, self.d_head).transpose(1, 2)
                   for z in self.qkv(self.ln1(h)).chunk(3, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.proj(y.transpose(1, 2).reshape(B, T, -1))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


@dataclass
class LayerTimes:
    """Measured seconds, forward + backward: blocks[(b, t)], embed[b], head[b]; and the
    optimizer's seconds per parameter. The Compute the predictor reads (predict.py)."""
    seq: int
    blocks: dict = field(default_factory=dict)
    embed: dict = field(default_factory=dict)
    head_times: dict = field(default_factory=dict)
    optimizer_per_parameter: float = 0.0
    where: str = "this machine"

    def block(self, b: int, s: int, t: int) -> float:
        return self._get(self.blocks, (b, t), s, "block shard (b, t)")

    def embedding(self, b: int, s: int) -> float:
        return self._get(self.embed, b, s, "embedding at b")

    def head(self, b: int, s: int, t: int) -> float:
        return self._get(self.head_times, b, s, "head at b")

    def optimizer(self, n_parameters: float) -> float:
        return self.optimizer_per_parameter * n_parameters

    def _get(self, table: dict, key, s: int, what: str) -> float:
        if s != self.seq:
            raise ValueError(f"layer times were measured at s={self.seq} tokens, asked for "
                             f"s={s}: measure again at this sequence length")
        if key not in table:
            raise KeyError(f"no measured time for the {what} = {key}; measured: "
                           f"{sorted(table)}. Pass it in `shards` to measure_layer_times")
        return table[key]


def _best_time(fn, repeats: int) -> float:
    fn()                                            # warm-up: first call allocates
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _forward_backward(module, x: torch.Tensor, loss_of, repeats: int) -> float:
    """Seconds of loss_of(module(x)).backward() (x a leaf: its gradient too, as a
    stage's input that is another stage's output)."""
    def run():
        loss_of(module(x)).backward()
    return _best_time(run, repeats)


class _Embedding(nn.Module):
    def __init__(self, vocab: int, s: int, C: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, C), nn.Embedding(s, C)

    def forward(self, ids):
        return self.tok(ids) + self.pos(torch.arange(ids.shape[1]))


def time_layers(cfg: TransformerConfig, shards, repeats: int = REPEATS,
                seed: int = 0) -> dict:
    """On this process: {("block", b, t): s, ("embed", b): s, ("head", b): s,
    ("adam", n): s} for the (b, t) in `shards`, the fastest of `repeats` runs."""
    torch.manual_seed(seed)
    s, C, out = cfg.block_size, cfg.d_model, {}
    embedding = _Embedding(cfg.vocab_size, s, C)
    head = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, cfg.vocab_size))
    for b in sorted({b for b, _ in shards}):
        ids = torch.randint(0, cfg.vocab_size, (b, s))
        x = torch.randn(b, s, C, requires_grad=True)
        out["embed", b] = _forward_backward(embedding, ids, torch.sum, repeats)
        out["head", b] = _forward_backward(head, x, partial(lm_loss, targets=ids), repeats)
    for b, t in sorted(set(shards)):
        x = torch.randn(b, s, C, requires_grad=True)
        out["block", b, t] = _forward_backward(BlockShard(C, cfg.n_heads, t), x, torch.sum,
                                               repeats)
    n = 1 << 18   # 256 Ki parameters: long enough to time, in cache like the tiny model's
    theta = nn.Parameter(torch.randn(n))
    theta.grad = torch.randn(n)
    opt = Adam([theta], lr=1e-3)
    out["adam", n] = _best_time(opt.step, repeats)
    return out


def _on_rank(ctx, cfg, shards, repeats):
    return time_layers(cfg, shards, repeats, seed=ctx.rank)


def measure_layer_times(cfg: TransformerConfig, shards, world: int = 1,
                        repeats: int = REPEATS, timeout: float = 300.0) -> LayerTimes:
    """LayerTimes for the (b, t) in `shards`, timed on `world` ranks at once (the
    slowest rank's); world=1 times in this process."""
    shards = sorted(set(shards))
    if world == 1:   # one thread, as each of run_local's ranks computes
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            ranks = [time_layers(cfg, shards, repeats)]
        finally:
            torch.set_num_threads(threads)
    else:
        ranks = run_local(_on_rank, world, cfg, shards, repeats, timeout=timeout)
    slowest = {key: max(r[key] for r in ranks) for key in ranks[0]}
    times = LayerTimes(seq=cfg.block_size, where=f"{world} rank(s) of this machine")
    for key, seconds in slowest.items():
        if key[0] == "block":
            times.blocks[key[1], key[2]] = seconds
        elif key[0] == "embed":
            times.embed[key[1]] = seconds
        elif key[0] == "head":
            times.head_times[key[1]] = seconds
        else:
            times.optimizer_per_parameter = seconds / key[1]
    return times
