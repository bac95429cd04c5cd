"""Every way to run a model on p ranks: the planner's configurations.

A configuration (a `Layout`, the 3-D trainer's: hpclab.parallel.parallel_3d) factors the world size into data, tensor and pipeline
parallel degrees and picks how a step is cut and sharded:

    p = d · t · pp         d data-parallel replicas, t tensor ranks, pp pipeline stages
    m                      micro-batches per step and replica (b = B/(d·m) rows each)
    ZeRO stage             0 (plain DP), 1 (optimizer state sharded over the d replicas);
                           2 and 3 only without a pipeline (pp = 1)
    schedule               "gpipe", "1f1b", or "interleaved" (v model chunks per rank)

`configurations(world, shape, batch)` lists them all, each once, under the rules the
trainer enforces: t divides the heads a and the MLP width f, every stage gets a layer
(interleaved: every one of the pp·v pieces, and m a multiple of pp, as Megatron-LM), d
divides the batch B and m divides B/d. Without a pipeline there is one micro-batch and
no schedule to choose (more micro-batches would be gradient accumulation: slower, and a
memory trade hpclab.memory already shows); with one replica ZeRO shards nothing, so only
stage 0 is listed.

    from hpclab.memory import tiny_shape
    for layout in configurations(4, shape, batch=16):
        print(layout)
"""

from __future__ import annotations

from hpclab.parallel.parallel_3d import INTERLEAVED_CHUNKS, Layout

SCHEDULES = ("gpipe", "1f1b", "interleaved")
MICRO_BATCHES = (1, 2, 4, 8)
CHUNKS = INTERLEAVED_CHUNKS   # v: model chunks per rank of the interleaved schedule


def factorizations(world: int) -> list[tuple[int, int, int]]:
    """Every (d, t, pp) with d·t·pp = world, in order of d, then t."""
    if world < 1:
        raise ValueError(f"world must be >= 1, got {world}")
    return [(d, t, world // (d * t)) for d in range(1, world + 1) if world % d == 0
            for t in range(1, world // d + 1) if (world // d) % t == 0]


def configurations(world: int, shape, batch: int, micro_batches=MICRO_BATCHES,
                   zero_stages=(0, 1, 2, 3), schedules=SCHEDULES, chunks: int = CHUNKS,
                   sequence_parallel=(False,), seq: int | None = None) -> list[Layout]:
    """Every Layout for `world` ranks training `shape` (a TransformerShape) on global
    batches of `batch` sequences; sequence_parallel=(False, True) lists both where t > 1
    (seq, the sequence length, must then be divisible by t; not with ZeRO 2, 3, which the
    trainer refuses with it: parallel_3d.check_model)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    out = []
    for d, t, pp in factorizations(world):
        if shape.heads % t or shape.f % t or shape.hidden % t or pp > shape.layers \
                or batch % d:
            continue
        per_replica = batch // d
        if pp == 1:
            cuts = [(1, "1f1b")]
        else:
            cuts = [(m, s) for m in micro_batches if per_replica % m == 0 for s in schedules
                    if s != "interleaved"
                    or (m % pp == 0 and shape.layers >= pp * chunks)]
        zeros = [0] if d == 1 else [z for z in zero_stages if z <= 1 or pp == 1]
        sps = [sp for sp in sequence_parallel
               if not sp or (t > 1 and (seq is None or seq % t == 0))]
        # ZeRO-2/3 reduce during backward, before the sequence-parallel sums over TP
        out += [Layout(d, t, pp, m, z, s, sp) for m, s in cuts for z in zeros for sp in sps
                if not (sp and z >= 2)]
    return out
