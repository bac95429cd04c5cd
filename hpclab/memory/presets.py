"""Model shapes to feed the calculator: the course's tiny transformer, GPT-3, Llama 3.

Published shapes:
    GPT-3 175B     Brown et al. 2020, table 2.1: L = 96, h = 12288, a = 96, s_max = 2048;
                   v = 51200 as padded by Megatron-LM (Korthikanti et al. 2022, table 3)
    Llama 3        Llama Team 2024, "The Llama 3 Herd of Models", table 3; vocabulary
                   128256 from the released config.json files
                   8B:   L = 32,  h = 4096,  f = 14336, a = 32,  a_kv = 8
                   70B:  L = 80,  h = 8192,  f = 28672, a = 64,  a_kv = 8
                   405B: L = 126, h = 16384, f = 53248, a = 128, a_kv = 8

Llama's parameters are counted exactly (grouped-query attention, SwiGLU, RMSNorm, no
biases, untied head: 8.03B, 70.6B, 405.9B). Its activations use the same per-tensor terms
with SwiGLU's four f-wide tensors, GQA's narrower k and v, flash attention and no
dropout; RoPE is taken to save nothing per token (its cos/sin tables are shared).

`tiny_shape(cfg)` describes hpclab.problems' TinyTransformer: pre-norm GPT blocks with
learned positions and an untied head with a bias; torch's scaled_dot_product_attention
runs a flash kernel on CPU in fp32 (it keeps O and the log-sum-exp, not the softmax).
"""

from __future__ import annotations

from hpclab.problems.transformer import TransformerConfig

from .shapes import TransformerShape


def tiny_shape(cfg: TransformerConfig, attention: str = "flash") -> TransformerShape:
    """The TinyTransformer of `cfg`. attention="math" for a run under
    torch.nn.attention.sdpa_kernel(SDPBackend.MATH), which keeps the softmax."""
    if cfg.dropout:
        raise ValueError(f"the calculator follows GPT's dropout placement; the tiny "
                         f"transformer drops out scores and the MLP output only. Use "
                         f"dropout=0, got dropout={cfg.dropout}")
    return TransformerShape(layers=cfg.n_layers, hidden=cfg.d_model, heads=cfg.n_heads,
                            vocab=cfg.vocab_size, positions=cfg.block_size,
                            attention=attention, dropout=False,
                            name=f"tiny transformer ({cfg.n_layers} layers, d={cfg.d_model})")


GPT3_175B = TransformerShape(layers=96, hidden=12288, heads=96, vocab=51200, positions=2048,
                             name="GPT-3 175B")

_LLAMA = {"vocab": 128256, "kv_heads": 8, "mlp": "swiglu", "norm": "rmsnorm", "bias": False,
          "attention": "flash", "dropout": False}
LLAMA3_8B = TransformerShape(layers=32, hidden=4096, heads=32, ffn=14336, name="Llama 3 8B",
                             **_LLAMA)
LLAMA3_70B = TransformerShape(layers=80, hidden=8192, heads=64, ffn=28672,
                              name="Llama 3 70B", **_LLAMA)
LLAMA3_405B = TransformerShape(layers=126, hidden=16384, heads=128, ffn=53248,
                               name="Llama 3 405B", **_LLAMA)
