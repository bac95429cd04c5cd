"""The tiny transformer, tensor parallel over the t ranks of a group (Megatron-LM §3),
optionally sequence parallel between the TP regions (Korthikanti et al. 2022).

    ctx = ...                                       # a DistContext (run_local, cluster.run)
    model = tiny_transformer(vocab, n_heads=4)       # the single-process model, same seed
    tp = ParallelTransformer(model, ctx, sequence_parallel=True)
    loss = lm_loss(tp(x), y); loss.backward()        # every rank: the same x, the same loss
    all_reduce_sequence_parallel_grads(tp, ctx)      # (sequence parallel only)
    full = gather_parameters(tp, ctx, grads=True)    # == the single-process gradients

The modules keep the single-process parameter names (blocks.0.attn.qkv.weight, …), so
`gather_parameters(tp, ctx)` is a state dict TinyTransformer loads.

Attention with a heads split over t ranks (rank i holds heads i·a/t … (i+1)·a/t − 1):

    column-parallel QKV:  [Q_i K_i V_i] = X [W_Q,i W_K,i W_V,i]ᵀ     (a/t heads, no comm)
    per head:             Y_h = softmax(Q_h K_hᵀ/√d_head + mask) V_h  (heads independent)
    row-parallel output:  Z = Σ_i Y_i W_O,iᵀ + b_O                     (g: one all-reduce)

and the MLP the same way (column-parallel W₁ with a GELU on the local 4C/t units,
row-parallel W₂). So each block costs two all-reduces forward (g of attention and MLP)
and two backward (f before each column-parallel layer); with sequence parallel each
becomes an all-gather + reduce-scatter pair of the same bytes (sequence_parallel.py).

The fused qkv weight of the single-process model is (3C, C) = [W_Q; W_K; W_V]: rank i
takes rows i·C/t … of each third, so its local fused weight is (3C/t, C) (`tp_shard`
records the 3 blocks and `gather_parameters` puts them back).

Dropout: the residual-stream dropout acts on replicated activations without sequence
parallel (every rank of the group must draw the same mask: the same seed), on this
rank's positions with it; attention dropout acts on this rank's heads. Only dropout=0
equals the single-process model exactly.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from hpclab.parallel.sequence_parallel import (
    gather_sequence,
    mark_sequence_parallel,
    scatter_to_sequence,
)
from hpclab.parallel.tensor_parallel import (
    ALGORITHM,
    ColumnParallelLinear,
    RowParallelLinear,
    mark_shard,
)
from hpclab.problems.transformer import Block, CausalSelfAttention, TinyTransformer


def _check_divisible(name: str, n: int, t: int) -> None:
    if n % t:
        raise ValueError(f"{name} ({n}) must be divisible by the tensor-parallel size "
                         f"t={t}: every rank holds {name}/t of them; choose t among the "
                         f"divisors of {n}")


class ParallelSelfAttention(nn.Module):
    """Causal self-attention with a/t heads on this rank."""

    def __init__(self, d_model: int, n_heads: int, ctx, dropout: float = 0.0,
                 selective: bool = False, sequence_parallel: bool = False,
                 algorithm: str = ALGORITHM, dtype=None, device=None, regather: bool = False):
        super().__init__()
        t = ctx.world_size
        _check_divisible("n_heads", n_heads, t)
        _check_divisible("d_model", d_model, t)
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, "
                             f"n_heads={n_heads}")
        self.ctx, self.dropout, self.selective = ctx, dropout, selective
        self.local_heads, self.d_head = n_heads // t, d_model // n_heads
        kw = {"sequence_parallel": sequence_parallel, "algorithm": algorithm,
              "dtype": dtype, "device": device}
        self.qkv = ColumnParallelLinear(d_model, 3 * d_model, ctx, gather_output=False,
                                        regather=regather, **kw)
        local = [d_model // t] * t
        mark_shard(self.qkv.weight, 0, local, pieces=3)
        mark_shard(self.qkv.bias, 0, local, pieces=3)
        self.proj = RowParallelLinear(d_model, d_model, ctx, input_is_parallel=True, **kw)

    @classmethod
    def from_attention(cls, attn: CausalSelfAttention, ctx, **kwargs):
        C = attn.proj.in_features
        layer = cls(C, attn.n_heads, ctx, dropout=attn.dropout, selective=attn.selective,
                    dtype=attn.proj.weight.dtype, device=attn.proj.weight.device, **kwargs)
        t, r = ctx.world_size, ctx.rank
        with torch.no_grad():
            w = attn.qkv.weight.view(3, C, C).chunk(t, dim=1)[r]      # (3, C/t, C)
            layer.qkv.weight.copy_(w.reshape(3 * C // t, C))
            layer.qkv.bias.copy_(attn.qkv.bias.view(3, C).chunk(t, dim=1)[r].reshape(-1))
            layer.proj.weight.copy_(attn.proj.weight.chunk(t, dim=1)[r])
            layer.proj.bias.copy_(attn.proj.bias)
        return layer

    def forward(self, x):
        qkv = self.qkv(x)                          # (B, T, 3C/t): T whole, also with SP
        B, T, _ = qkv.shape
        width = self.local_heads * self.d_head
        q, k, v = (z.view(B, T, self.local_heads, self.d_head).transpose(1, 2)
                   for z in qkv.split(width, dim=2))
        if self.selective and torch.is_grad_enabled():
            y = checkpoint(self._core, q, k, v, use_reentrant=False)
        else:
            y = self._core(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, T, width))

    def _core(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                              dropout_p=self.dropout if self.training else 0.0)


def parallel_mlp(mlp: nn.Sequential, ctx, regather: bool = False, **kwargs) -> nn.Sequential:
    """Block.mlp = (W₁, GELU, W₂, dropout) with column-parallel W₁ (4C/t hidden units on
    this rank) and row-parallel W₂; the same layout, so parameter names match Block's."""
    fc1, gelu, fc2, drop = mlp
    _check_divisible("the MLP's hidden size", fc1.out_features, ctx.world_size)
    return nn.Sequential(
        ColumnParallelLinear.from_linear(fc1, ctx, gather_output=False, regather=regather,
                                         **kwargs),
        copy.deepcopy(gelu),
        RowParallelLinear.from_linear(fc2, ctx, input_is_parallel=True, **kwargs),
        copy.deepcopy(drop))


class ParallelBlock(Block):
    """Pre-norm block h ← h + Attn(LN(h)); h ← h + MLP(LN(h)) with TP attention and MLP:
    Block's forward (and its recomputation) over parallel layers.
    With sequence_parallel, h is this rank's (B, T/t, C) and the LayerNorms are partial;
    regather: the column-parallel layers keep only h's slice (sequence_parallel.py)."""

    def __init__(self, block: Block, ctx, sequence_parallel: bool = False,
                 algorithm: str = ALGORITHM, regather: bool = False):
        nn.Module.__init__(self)        # Block's layers are built from `block`, not a config
        kw = {"sequence_parallel": sequence_parallel, "algorithm": algorithm,
              "regather": regather}
        self.ln1, self.ln2 = copy.deepcopy(block.ln1), copy.deepcopy(block.ln2)
        if sequence_parallel:
            mark_sequence_parallel(self.ln1)
            mark_sequence_parallel(self.ln2)
        self.attn = ParallelSelfAttention.from_attention(block.attn, ctx, **kw)
        self.mlp = parallel_mlp(block.mlp, ctx, **kw)
        self.full = block.full


class ParallelTransformer(nn.Module):
    """TinyTransformer with ParallelBlocks; embeddings, final LayerNorm and head are
    replicated (every rank computes them whole, and gets their whole gradient)."""

    def __init__(self, model: TinyTransformer, ctx, sequence_parallel: bool = False,
                 algorithm: str = ALGORITHM, regather: bool = False):
        super().__init__()
        self.cfg, self.ctx = model.cfg, ctx
        self.sequence_parallel, self.algorithm = sequence_parallel, algorithm
        if sequence_parallel:
            _check_divisible("block_size", model.cfg.block_size, ctx.world_size)
        self.tok_emb, self.pos_emb = copy.deepcopy(model.tok_emb), copy.deepcopy(model.pos_emb)
        self.blocks = nn.Sequential(*[ParallelBlock(b, ctx, sequence_parallel, algorithm,
                                                    regather) for b in model.blocks])
        self.ln_f, self.head = copy.deepcopy(model.ln_f), copy.deepcopy(model.head)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T), the same on every rank → logits (B, T, vocab), replicated."""
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.cfg.block_size}")
        h = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        if self.sequence_parallel:
            h = scatter_to_sequence(h, self.ctx, self.algorithm)
        h = self.blocks(h)
        if self.sequence_parallel:
            h = gather_sequence(h, self.ctx, self.algorithm)
        return self.head(self.ln_f(h))
