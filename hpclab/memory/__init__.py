"""Where the bytes of training go: a memory calculator, checked against real models.

    from hpclab.memory import (LLAMA3_8B, MIXED, Parallelism, Training, state_bytes,
                               stage_memories)
    state_bytes(7e9, "adam", MIXED).total / 1e9                 # 112.0 GB of model states
    run = Training(seq=4096, micro_batch=1, precision=MIXED, recompute="selective")
    for r in stage_memories(LLAMA3_8B, run, Parallelism(dp=8, zero=3)):
        print(r.parts(), r.total / 1e9)                         # bytes on one GPU

One idea per file, formulas and sources in each docstring (the lecture's symbols: Ψ
parameters, s sequence, b micro-batch, h hidden, a heads, L layers, v vocabulary, N_d
data-parallel degree, t tensor-parallel degree, p pipeline stages, m micro-batches):

    states.py        parameters, gradients, optimizer state per parameter (Precision)
    shapes.py        TransformerShape and its parameter count Ψ
    activations.py   saved activations per tensor, under recomputation none/selective/full
    per_rank.py      per GPU: ZeRO 0-3, tensor/sequence/pipeline parallel, GPipe vs 1F1B
    presets.py       the tiny transformer, GPT-3 175B, Llama 3 8B/70B/405B
    measure.py       bytes a real model holds (saved-tensor hooks, storages, CUDA peak)
    recompute_cost.py  the time recomputation costs on the tiny transformer
    explorer.py      the memory explorer's state (the widget is hpclab.widgets)
"""

from .activations import (
    RECOMPUTE,
    Term,
    korthikanti_layer_bytes,
    layer_bytes,
    layer_terms,
    outside_terms,
)
from .per_rank import (
    SCHEDULES,
    Parallelism,
    RankMemory,
    Training,
    rank_activations,
    rank_memory,
    rank_parameters,
    stage_memories,
    zero_states,
)
from .presets import GPT3_175B, LLAMA3_8B, LLAMA3_70B, LLAMA3_405B, tiny_shape
from .shapes import TransformerShape
from .states import (
    BF16,
    FP32,
    MIXED,
    MIXED_FP32_GRADS,
    MOMENTS,
    PRECISIONS,
    Precision,
    StateBytes,
    bytes_per_parameter,
    state_bytes,
)

GB = 1e9   # decimal gigabytes, as the ZeRO paper and GPU data sheets count

__all__ = [
    "BF16",
    "FP32",
    "GB",
    "GPT3_175B",
    "LLAMA3_8B",
    "LLAMA3_70B",
    "LLAMA3_405B",
    "MIXED",
    "MIXED_FP32_GRADS",
    "MOMENTS",
    "PRECISIONS",
    "RECOMPUTE",
    "SCHEDULES",
    "Parallelism",
    "Precision",
    "RankMemory",
    "StateBytes",
    "Term",
    "Training",
    "TransformerShape",
    "bytes_per_parameter",
    "korthikanti_layer_bytes",
    "layer_bytes",
    "layer_terms",
    "outside_terms",
    "rank_activations",
    "rank_memory",
    "rank_parameters",
    "stage_memories",
    "state_bytes",
    "tiny_shape",
    "zero_states",
]
