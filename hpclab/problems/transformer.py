"""A tiny character-level transformer (decoder only, GPT style): the course's "bigger"
workload, small enough for a laptop CPU, big enough to show tokens/s and scaling.

    train, val, tok = text_loaders(block_size=64, batch_size=32)
    model = tiny_transformer(tok.vocab_size)              # 2 layers, d = 64, 4 heads
    logits = model(x)                                     # (B, T, vocab)
    loss = lm_loss(logits, y)                             # next-character cross-entropy
    print(generate(model, tok, "Once upon", 100))

Each block is pre-norm:  h ← h + Attn(LN(h));  h ← h + MLP(LN(h)), with causal
self-attention softmax(QKᵀ/√d_head + mask) V, so position t only sees positions ≤ t.

`recompute` trades compute for activation memory (hpclab.memory counts the bytes):
"none" keeps what autograd saves; "selective" recomputes the attention core
softmax(QKᵀ/√d_head + mask) V in backward, keeping only q, k, v; "full" keeps only each
block's input and runs the whole block again in backward (torch.utils.checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

RECOMPUTE = ("none", "selective", "full")


@dataclass
class TransformerConfig:
    vocab_size: int
    block_size: int = 64     # longest context the model sees
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.0
    recompute: str = "none"  # activation recomputation: one of RECOMPUTE

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "d_model", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model="
                             f"{self.d_model}, n_heads={self.n_heads}")
        if self.recompute not in RECOMPUTE:
            raise ValueError(f"recompute must be one of {RECOMPUTE}, got {self.recompute!r}")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.selective = cfg.recompute == "selective"
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, d_head): each head attends on its own slice.
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
                   for t in (q, k, v))
        if self.selective and torch.is_grad_enabled():
            y = checkpoint(self._core, q, k, v, use_reentrant=False)
        else:
            y = self._core(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def _core(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                              dropout_p=self.dropout if self.training else 0.0)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model),
                                 nn.Dropout(cfg.dropout))
        self.full = cfg.recompute == "full"

    def forward(self, h):
        if self.full and torch.is_grad_enabled():
            return checkpoint(self._forward, h, use_reentrant=False)
        return self._forward(h)

    def _forward(self, h):
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class TinyTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.Sequential(*[Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) with T <= block_size → logits (B, T, vocab_size)."""
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.cfg.block_size}")
        pos = torch.arange(T, device=idx.device)
        h = self.blocks(self.tok_emb(idx) + self.pos_emb(pos))
        return self.head(self.ln_f(h))


def tiny_transformer(vocab_size: int, seed: int | None = 0, **config) -> TinyTransformer:
    """The standard small model (2 layers, d=64, 4 heads unless overridden), seeded so
    every rank of a data-parallel job starts from the same weights."""
    cfg = TransformerConfig(vocab_size=vocab_size, **config)
    if seed is None:
        return TinyTransformer(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyTransformer(cfg)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over all B·T positions."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def generate(model: TinyTransformer, tokenizer, prompt: str, n_new: int = 100,
             temperature: float = 1.0, seed: int = 0) -> str:
    """Sample n_new characters after prompt (the last block_size characters as context)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    idx = tokenizer.encode(prompt)[None].to(device)
    for _ in range(n_new):
        logits = model(idx[:, -model.cfg.block_size:])[:, -1] / temperature
        probs = torch.softmax(logits.float().cpu(), dim=-1)
        nxt = torch.multinomial(probs, 1, generator=g).to(device)
        idx = torch.cat([idx, nxt], dim=1)
    model.train(was_training)
    return tokenizer.decode(idx[0].tolist())
