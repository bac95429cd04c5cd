"""A transformer's shape, and its parameter count Ψ from it.

    L layers, hidden size h, a attention heads (a_kv of them for keys and values: grouped-
    query attention when a_kv < a), MLP width f (4h for GPT), vocabulary v.

Parameters of one block (GPT-2/3: LayerNorm, biases, a GELU MLP; Llama: RMSNorm, no
biases, a SwiGLU MLP with three matrices), with d = h/a the head size:

    attention    h·(a + 2 a_kv)·d  +  (a·d)·h             q, k, v and output projections
    MLP          2·h·f  (GELU)   or   3·h·f  (SwiGLU)
    biases       (a + 2 a_kv)·d + h  +  f + h             (GELU with bias only)
    norms        2·2h (LayerNorm: weight and bias)   or   2·h (RMSNorm)

For GPT (a_kv = a, f = 4h, with biases) one block holds 12h² + 13h parameters, the count
behind Narayanan et al. 2021 ("Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM"): P = 12Lh²·(1 + 13/(12h) + (v + s)/(12Lh)). Outside the blocks: token embeddings v·h, learned
position embeddings s_max·h (none with RoPE), a final norm, and the output head v·h
(+ v with a bias) unless it shares the embedding matrix.

    from hpclab.memory import LLAMA3_8B
    LLAMA3_8B.parameters / 1e9           # 8.03
"""

from __future__ import annotations

from dataclasses import dataclass

MLPS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")
ATTENTIONS = ("math", "flash")


@dataclass(frozen=True)
class TransformerShape:
    """A decoder-only transformer. Defaults give a GPT block (Korthikanti et al. 2022)."""
    layers: int                  # L
    hidden: int                  # h
    heads: int                   # a
    vocab: int                   # v
    ffn: int | None = None       # f, the MLP width; None: 4h
    kv_heads: int | None = None  # a_kv; None: a (no grouped-query attention)
    mlp: str = "gelu"            # "gelu" (2 matrices) or "swiglu" (3)
    norm: str = "layernorm"      # "layernorm" or "rmsnorm"
    bias: bool = True            # biases in the linear layers
    positions: int = 0           # learned position embeddings (s_max); 0 with RoPE
    tied_embeddings: bool = False
    attention: str = "math"      # "math" keeps the softmax; "flash" recomputes it
    dropout: bool = True         # GPT's dropout: scores, after attention, after MLP
    name: str = "custom"

    def __post_init__(self):
        for field in ("layers", "hidden", "heads", "vocab"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden must be divisible by heads, got hidden={self.hidden}, "
                             f"heads={self.heads}")
        if self.ffn is not None and self.ffn < 1:
            raise ValueError(f"ffn must be >= 1 (or None for 4h), got {self.ffn}")
        if self.kv_heads is not None and (self.kv_heads < 1 or self.heads % self.kv_heads):
            raise ValueError(f"kv_heads must divide heads={self.heads}, got {self.kv_heads}")
        for field, allowed in (("mlp", MLPS), ("norm", NORMS), ("attention", ATTENTIONS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field} must be one of {allowed}, got "
                                 f"{getattr(self, field)!r}")
        if self.positions < 0:
            raise ValueError(f"positions must be >= 0, got {self.positions}")

    @property
    def f(self) -> int:
        return 4 * self.hidden if self.ffn is None else self.ffn

    @property
    def a_kv(self) -> int:
        return self.heads if self.kv_heads is None else self.kv_heads

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    # -- parameters, split into matrices (sharded by tensor parallelism) and the rest ----
    def layer_matrices(self) -> int:
        h, d, f = self.hidden, self.head_size, self.f
        attention = h * (self.heads + 2 * self.a_kv) * d + self.heads * d * h
        return attention + (3 if self.mlp == "swiglu" else 2) * h * f

    def layer_vectors(self) -> int:
        """Biases and norm weights of one block (replicated under tensor parallelism,
        except the biases of column-parallel layers; counted replicated here)."""
        h, d, f = self.hidden, self.head_size, self.f
        norms = 2 * (2 * h if self.norm == "layernorm" else h)
        biases = ((self.heads + 2 * self.a_kv) * d + h + f + h) if self.bias else 0
        return norms + biases

    def layer_parameters(self) -> int:
        return self.layer_matrices() + self.layer_vectors()

    def embedding_parameters(self) -> int:
        """Token (v·h) and position (s_max·h) embeddings: on the first pipeline stage."""
        return self.vocab * self.hidden + self.positions * self.hidden

    def head_parameters(self) -> int:
        """Final norm and output head: on the last pipeline stage (the head counted
        there even when tied, since the last stage needs its own copy of the matrix)."""
        norm = 2 * self.hidden if self.norm == "layernorm" else self.hidden
        head = self.vocab * self.hidden + (self.vocab if self.bias else 0)
        return norm + head

    @property
    def parameters(self) -> int:
        """Ψ: all parameters (a tied head counted once)."""
        head = self.head_parameters()
        if self.tied_embeddings:
            head -= self.vocab * self.hidden
        return self.layers * self.layer_parameters() + self.embedding_parameters() + head
