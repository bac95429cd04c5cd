"""Activations: the tensors autograd saves in forward for backward, term by term.

Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"
(arXiv:2205.05198), section 4.1, count them per GPT layer for sequence s, micro-batch b,
hidden h, heads a, with 2-byte activations and 1-byte dropout masks:

    attention   2sbh (QKV input) + 4sbh (Q, K) + 2as²b (softmax) + as²b (its dropout mask)
                + 2as²b (dropout output) + 2sbh (V) + 2sbh (projection input) + sbh (mask)
                = 11sbh + 5as²b
    MLP         2sbh (fc1 input) + 8sbh (GELU input) + 8sbh (fc2 input) + sbh (mask) = 19sbh
    LayerNorms  2 · 2sbh = 4sbh
    one layer   sbh·(34 + 5as/h)                                            (§4.1)

Every term below is one tensor (one storage) and names the op that saves it, so the sum
can be checked against `torch.autograd.graph.saved_tensors_hooks` tensor by tensor
(hpclab.memory.measure). With e bytes per activation, 1 per mask, 4 per statistic:

    term                      saved by                    elements      region
    ln1.input                 LayerNorm                   sbh           sequence
    ln1.mean, ln1.rstd        LayerNorm (fp32)            sb each       sequence  (small)
    qkv.input                 qkv matmul                  sbh           sequence
    q·scale, kᵀ·scale, v      QKᵀ and ·V (math)           sbh·(1+2a_kv/a)  tensor
                              (flash, checkpoint: one qkv storage)
    scores.softmax            ·V (math only)              as²b          tensor
    scores.mask, .dropped     dropout (math + dropout)    as²b each     tensor
    attn.lse                  flash kernel: log-sum-exp   asb (fp32)    tensor    (small)
    proj.input                output projection           sbh           tensor
                              (flash: also its saved O, written as (b, s, a, d))
    attn.dropout_mask         dropout after attention     sbh (1 B)     sequence
    ln2.input, ln2 stats      LayerNorm                   sbh, 2·sb     sequence
    fc1.input                 fc1 (or gate/up) matmul     sbh           sequence
    gelu.input, fc2.input     GELU, fc2                   fb each       tensor
    (SwiGLU: gate, silu(gate), up, product: fb each)
    mlp.dropout_mask          dropout after the MLP       sbh (1 B)     sequence

GPT (math attention, dropout, GELU, f = 4h, e = 2) without the small terms sums to
sbh·(34 + 5as/h) exactly; the LayerNorm statistics the paper leaves out add 4·4sb.
With t-way tensor parallelism the "tensor" region is split t ways and the "sequence"
region replicated (§4.2.1): sbh·(10 + 24/t + 5as/(ht)); sequence parallelism splits it
too (§4.2.2): sbh/t·(34 + 5as/h).

Recomputation (section 5):
    none        all of the above
    selective   the attention core softmax(QKᵀ/√d + mask)V is recomputed: the score
                terms (and flash's lse) go, q, k, v stay: 34sbh per layer (§5, table 2)
    full        each block's input only: 2sbh per layer (sbh·e), everything else rebuilt

Outside the blocks (`outside_terms`): token ids (int64), the final norm, the head's
input and the log-softmax of the logits (sbv, which dominates for a large vocabulary),
the targets (int64) and a 4-byte total weight of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from .shapes import TransformerShape
from .states import FP32, Precision

RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True)
class Term:
    """One saved tensor: its name, the op that saves it, its elements and bytes each."""
    name: str
    saved_by: str
    elements: int
    bytes_each: int
    region: str = "tensor"   # "tensor": split by t; "sequence": split only under SP
    small: bool = False      # left out by the published formula

    @property
    def bytes(self) -> int:
        return self.elements * self.bytes_each

    def sharded(self, t: int, sp: bool) -> float:
        """Bytes on one of t tensor-parallel ranks (with sequence parallelism or not)."""
        return self.bytes / t if (self.region == "tensor" or sp) else self.bytes


def check_recompute(recompute: str) -> None:
    if recompute not in RECOMPUTE:
        raise ValueError(f"recompute must be one of {RECOMPUTE}, got {recompute!r}")


def _norm(name: str, shape: TransformerShape, sbh: int, sb: int, e: int) -> list[Term]:
    stats = ("mean", "rstd") if shape.norm == "layernorm" else ("rstd",)
    return ([Term(f"{name}.input", shape.norm, sbh, e, "sequence")]
            + [Term(f"{name}.{st}", shape.norm, sb, 4, "sequence", small=True)
               for st in stats])


def attention_terms(shape: TransformerShape, s: int, b: int, recompute: str = "none",
                    precision: Precision = FP32) -> list[Term]:
    """The attention half of a block: norm, q/k/v, the core, the output projection."""
    e, h, a = precision.activation_bytes, shape.hidden, shape.heads
    sb, sbh = s * b, s * b * h
    qkv = sb * shape.head_size * (a + 2 * shape.a_kv)
    terms = _norm("ln1", shape, sbh, sb, e) + [Term("qkv.input", "qkv matmul", sbh, e,
                                                    "sequence")]
    if recompute == "none" and shape.attention == "math":
        q, kv = sb * shape.head_size * a, sb * shape.head_size * shape.a_kv
        terms += [Term("q·scale", "QKᵀ matmul", q, e), Term("kᵀ·scale", "QKᵀ matmul", kv, e),
                  Term("v", "·V matmul", kv, e)]
    else:   # one storage: the qkv output, viewed by the flash kernel or the checkpoint
        terms.append(Term("q, k, v", "flash kernel" if recompute == "none"
                          else "checkpoint (inputs)", qkv, e))
    if recompute == "none" and shape.attention == "math":
        terms.append(Term("scores.softmax", "·V matmul", a * s * s * b, e))
        if shape.dropout:
            terms += [Term("scores.dropout_mask", "dropout", a * s * s * b, 1),
                      Term("scores.dropped", "·V matmul", a * s * s * b, e)]
    if recompute == "none" and shape.attention == "flash":
        terms.append(Term("attn.lse", "flash kernel", a * sb, 4, small=True))
    # flash writes O as (b, s, a, d): O is the projection's input, one storage with it
    terms.append(Term("proj.input", "output projection", sbh, e))
    if shape.dropout:
        terms.append(Term("attn.dropout_mask", "dropout", sbh, 1, "sequence"))
    return terms


def mlp_terms(shape: TransformerShape, s: int, b: int,
              precision: Precision = FP32) -> list[Term]:
    """The MLP half of a block: norm, fc1 (or gate and up), activation, fc2."""
    e, sb = precision.activation_bytes, s * b
    sbh, sbf = sb * shape.hidden, sb * shape.f
    terms = _norm("ln2", shape, sbh, sb, e) + [Term("fc1.input", "fc1 matmul", sbh, e,
                                                    "sequence")]
    if shape.mlp == "gelu":
        terms += [Term("gelu.input", "GELU", sbf, e), Term("fc2.input", "fc2 matmul", sbf, e)]
    else:
        terms += [Term("gate.output", "SiLU", sbf, e),
                  Term("silu.output", "gate·up product", sbf, e),
                  Term("up.output", "gate·up product", sbf, e),
                  Term("down.input", "down matmul", sbf, e)]
    if shape.dropout:
        terms.append(Term("mlp.dropout_mask", "dropout", sbh, 1, "sequence"))
    return terms


def layer_terms(shape: TransformerShape, s: int, b: int, recompute: str = "none",
                precision: Precision = FP32) -> list[Term]:
    """Every tensor one block keeps for backward under `recompute`."""
    check_recompute(recompute)
    _check_sb(s, b)
    if recompute == "full":
        return [Term("block.input", "checkpoint (inputs)", s * b * shape.hidden,
                     precision.activation_bytes, "sequence")]
    return (attention_terms(shape, s, b, recompute, precision)
            + mlp_terms(shape, s, b, precision))


def outside_terms(shape: TransformerShape, s: int, b: int, precision: Precision = FP32,
                  first: bool = True, last: bool = True) -> list[Term]:
    """Embeddings (first pipeline stage) and final norm, head and loss (last stage)."""
    _check_sb(s, b)
    e, sb = precision.activation_bytes, s * b
    terms = []
    if first:
        terms.append(Term("token ids", "embedding", sb, 8, "sequence", small=True))
        if shape.positions:
            terms.append(Term("position ids", "embedding", s, 8, "sequence", small=True))
        if shape.dropout:
            terms.append(Term("embedding.dropout_mask", "dropout", sb * shape.hidden, 1,
                              "sequence"))
    if last:
        terms += _norm("ln_f", shape, sb * shape.hidden, sb, e)
        terms += [Term("head.input", "head matmul", sb * shape.hidden, e, "sequence"),
                  Term("log_softmax", "cross-entropy", sb * shape.vocab, e),
                  Term("targets", "cross-entropy", sb, 8, "sequence", small=True),
                  Term("total_weight", "cross-entropy", 1, 4, "sequence", small=True)]
    return terms


def total(terms: list[Term], t: int = 1, sp: bool = False, small: bool = True) -> float:
    """Bytes of `terms` on one tensor-parallel rank; small=False: the published count."""
    return sum(term.sharded(t, sp) for term in terms if small or not term.small)


def layer_bytes(shape: TransformerShape, s: int, b: int, recompute: str = "none",
                precision: Precision = FP32, t: int = 1, sp: bool = False,
                small: bool = True) -> float:
    """Activation bytes of one block on one of t tensor-parallel ranks."""
    return total(layer_terms(shape, s, b, recompute, precision), t, sp, small)


def korthikanti_layer_bytes(s: int, b: int, h: int, a: int, t: int = 1, sp: bool = False,
                            recompute: str = "none") -> float:
    """The paper's closed forms (2-byte activations, GPT layer), for comparison:

        none          sbh·(34 + 5as/h)            (t = 1, §4.1)
                      sbh·(10 + 24/t + 5as/(ht))  (tensor parallel, §4.2.1)
                      sbh/t·(34 + 5as/h)          (tensor + sequence parallel, §4.2.2)
        selective     sbh·(10 + 24/t), or 34 sbh/t with sequence parallelism (§5, table 2)
        full          2sbh (and 2sbh/t with sequence parallelism)
    """
    check_recompute(recompute)
    sbh = s * b * h
    if recompute == "full":
        return 2 * sbh / (t if sp else 1)
    attn = 0 if recompute == "selective" else 5 * a * s / h
    if sp:
        return sbh / t * (34 + attn)
    return sbh * (10 + 24 / t + attn / t)


def _check_sb(s: int, b: int) -> None:
    if s < 1 or b < 1:
        raise ValueError(f"sequence length s and micro-batch b must be >= 1, got s={s}, b={b}")
