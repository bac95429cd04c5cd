"""Per-rank bytes: ZeRO, tensor and pipeline parallel, GPipe against 1F1B and interleaved
1F1B (its chunks in flight those of the schedule's lists), and errors."""

from __future__ import annotations

import pytest

from hpclab.memory import (
    FP32,
    GPT3_175B,
    LLAMA3_8B,
    MIXED,
    Parallelism,
    Training,
    TransformerShape,
    layer_bytes,
    outside_terms,
    rank_memory,
    rank_parameters,
    stage_memories,
)
from hpclab.memory.activations import total
from hpclab.parallel.pipeline_interleaved import interleaved_1f1b
from hpclab.parallel.pipeline_schedule import peak_in_flight

pytestmark = [pytest.mark.unit_d]

RUN = Training(seq=2048, micro_batch=1, precision=MIXED, optimizer="adam")


def test_one_gpu_is_the_sum_of_states_and_activations():
    r = rank_memory(GPT3_175B, RUN, Parallelism())
    psi = GPT3_175B.parameters
    assert (r.parameters, r.gradients, r.optimizer) == (2 * psi, 2 * psi, 12 * psi)
    acts = (96 * layer_bytes(GPT3_175B, 2048, 1, "none", MIXED)
            + total(outside_terms(GPT3_175B, 2048, 1, MIXED)))
    assert r.activations == pytest.approx(acts)
    h, sb = 12288, 2048
    assert r.working == 2 * (2 * 4 * h * sb + h * sb)    # gradients at the GELU, e = 2
    assert r.total == pytest.approx(16 * psi + acts + r.working)
    full = rank_memory(GPT3_175B, Training(seq=2048, precision=MIXED, recompute="full"),
                       Parallelism())
    rebuilt = (layer_bytes(GPT3_175B, 2048, 1, "none", MIXED)
               - layer_bytes(GPT3_175B, 2048, 1, "full", MIXED))
    assert full.working == pytest.approx(r.working + rebuilt)   # one layer rebuilt


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_zero_stages_shard_what_the_paper_says(zero):
    base = rank_memory(LLAMA3_8B, RUN, Parallelism(dp=8))
    r = rank_memory(LLAMA3_8B, RUN, Parallelism(dp=8, zero=zero))
    assert r.optimizer == pytest.approx(base.optimizer / (8 if zero >= 1 else 1))
    assert r.gradients == pytest.approx(base.gradients / (8 if zero >= 2 else 1))
    assert r.parameters == pytest.approx(base.parameters / (8 if zero >= 3 else 1))
    assert r.activations == base.activations          # ZeRO does not touch activations


def test_tensor_parallel_splits_matrices_and_pipeline_splits_layers():
    shape = TransformerShape(layers=8, hidden=256, heads=8, vocab=1000, positions=128)
    one = rank_parameters(shape, Parallelism())
    assert one == shape.parameters
    tp = rank_parameters(shape, Parallelism(tp=4))
    assert tp == pytest.approx(8 * (shape.layer_matrices() / 4 + shape.layer_vectors())
                               + (shape.embedding_parameters() + shape.head_parameters()) / 4)
    stages = [rank_parameters(shape, Parallelism(pp=4), i) for i in range(4)]
    assert sum(stages) == shape.parameters
    assert stages[1] == stages[2] == 2 * shape.layer_parameters()
    uneven = [Parallelism(pp=3).layers_on(shape, i) for i in range(3)]
    assert uneven == [3, 3, 2]


def test_1f1b_keeps_at_most_p_microbatches_gpipe_all_m():
    shape = TransformerShape(layers=8, hidden=256, heads=8, vocab=1000)
    run = Training(seq=512, micro_batch=2, precision=MIXED)
    per_layer = layer_bytes(shape, 512, 2, "none", MIXED)
    gpipe = stage_memories(shape, run, Parallelism(pp=4, microbatches=16, schedule="gpipe"))
    f1b = stage_memories(shape, run, Parallelism(pp=4, microbatches=16, schedule="1f1b"))
    # middle stages (no embeddings or head): 2 layers times the micro-batches in flight
    assert gpipe[1].activations == pytest.approx(16 * 2 * per_layer)
    assert [r.activations for r in f1b[1:3]] == pytest.approx([3 * 2 * per_layer,
                                                              2 * 2 * per_layer])
    # 1F1B's first stage holds p micro-batches of L/p layers: L layers' worth
    first_blocks = f1b[0].activations - 4 * total(outside_terms(shape, 512, 2, MIXED,
                                                                last=False))
    assert first_blocks == pytest.approx(8 * per_layer)
    few = stage_memories(shape, run, Parallelism(pp=4, microbatches=2))
    assert few[1].activations == pytest.approx(2 * 2 * per_layer)   # min(m, p - i)


def _held_at_peak(actions, v):
    """Per chunk, the micro-batches held when the list first holds the most chunks."""
    held, best, at_peak = set(), -1, None
    for a in actions:
        if a.kind == "F":
            held.add((a.micro, a.chunk))
        else:
            held.discard((a.micro, a.chunk))
        if len(held) > best:
            best, at_peak = len(held), [sum(c == k for _, c in held) for k in range(v)]
    return at_peak


@pytest.mark.parametrize("v", [2, 3])
def test_interleaved_counts_the_chunks_of_the_schedule(v):
    for p in range(1, 6):
        for m in (p, 2 * p, 3 * p):
            par = Parallelism(pp=p, microbatches=m, schedule="interleaved", chunks=v)
            for r in range(p):
                actions = interleaved_1f1b(p, m, r, v)
                assert par.in_flight(r) == peak_in_flight(actions), (p, m, r)
                assert [par.in_flight_of_chunk(r, c) for c in range(v)] == \
                    _held_at_peak(actions, v), (p, m, r)


def test_interleaved_first_stage_holds_a_little_more_than_1f1b():
    """Korthikanti et al. 2022, 4.2.3: L·(1 + (p − 1)/(p·v)) layers' worth on stage 0."""
    shape = TransformerShape(layers=16, hidden=256, heads=8, vocab=1000)
    run = Training(seq=512, micro_batch=2, precision=MIXED)
    per_layer = layer_bytes(shape, 512, 2, "none", MIXED)
    embed = total(outside_terms(shape, 512, 2, MIXED, last=False))
    p, v, m = 4, 2, 8
    first = stage_memories(shape, run, Parallelism(pp=p, microbatches=m,
                                                   schedule="interleaved", chunks=v))[0]
    assert first.activations - (2 * p - 1) * embed == pytest.approx(
        16 * (1 + (p - 1) / (p * v)) * per_layer)
    f1b = stage_memories(shape, run, Parallelism(pp=p, microbatches=m))[0]
    assert first.activations > f1b.activations
    with pytest.raises(ValueError, match="needs microbatches to be a multiple of pp"):
        Parallelism(pp=4, microbatches=6, schedule="interleaved")
    six = TransformerShape(layers=6, hidden=256, heads=8, vocab=1000)
    with pytest.raises(ValueError, match="chunks=2 need at least 8 layers, the model has 6"):
        rank_memory(six, run, Parallelism(pp=4, microbatches=4, schedule="interleaved"))


def test_selective_and_full_recomputation_shrink_activations():
    acts = {rc: rank_memory(LLAMA3_8B, Training(seq=8192, precision=MIXED, recompute=rc),
                            Parallelism()).activations for rc in ("none", "selective", "full")}
    assert acts["full"] < acts["selective"] <= acts["none"]


def test_errors_name_the_value():
    with pytest.raises(ValueError, match="zero .* got 4"):
        Parallelism(zero=4)
    with pytest.raises(ValueError, match="schedule must be one of .* got 'zb'"):
        Parallelism(schedule="zb")
    with pytest.raises(ValueError, match="dp must be >= 1, got 0"):
        Parallelism(dp=0)
    with pytest.raises(ValueError, match="tp=3 must divide the 32 attention heads"):
        rank_memory(LLAMA3_8B, RUN, Parallelism(tp=3))
    with pytest.raises(ValueError, match="pp=64 pipeline stages"):
        rank_memory(LLAMA3_8B, RUN, Parallelism(pp=64))
    with pytest.raises(ValueError, match="stage must be in 0..1"):
        rank_memory(LLAMA3_8B, RUN, Parallelism(pp=2), stage=2)
    with pytest.raises(ValueError, match="optimizer must be one of .* got 'lion'"):
        Training(optimizer="lion")
    with pytest.raises(ValueError, match="recompute must be one of .* got 'some'"):
        Training(recompute="some")
    with pytest.raises(ValueError, match="seq and micro_batch must be >= 1"):
        Training(seq=0)
    with pytest.raises(ValueError, match="hidden must be divisible by heads"):
        TransformerShape(layers=1, hidden=100, heads=3, vocab=10)
    with pytest.raises(ValueError, match="mlp must be one of"):
        TransformerShape(layers=1, hidden=64, heads=4, vocab=10, mlp="relu")
    with pytest.raises(ValueError, match="activation_bytes must be 1, 2, 4 or 8"):
        type(FP32)(activation_bytes=3)
