"""The planner's configurations: exactly the factorizations dp·tp·pp = p the trainer can
run, each once (against a brute-force list built from the rules, not from the code)."""

import itertools

import pytest

from hpclab.memory import GPT3_175B, TransformerShape
from hpclab.plan import Layout, configurations, factorizations

pytestmark = [pytest.mark.unit_d]

MICRO = (1, 2, 4, 8)


def brute_force(world, shape, batch):
    """Every (dp, tp, pp, m, zero, schedule) in range, kept when it obeys the rules."""
    out = set()
    for dp, tp, pp, m, zero, schedule in itertools.product(
            range(1, world + 1), range(1, world + 1), range(1, world + 1), MICRO,
            range(4), ("gpipe", "1f1b", "interleaved")):
        if dp * tp * pp != world or batch % dp or shape.heads % tp or shape.hidden % tp \
                or shape.f % tp or pp > shape.layers:
            continue
        if pp == 1 and (m != 1 or schedule != "1f1b"):
            continue                     # no pipeline: one micro-batch, no schedule
        if pp > 1 and ((batch // dp) % m or zero >= 2):
            continue
        if schedule == "interleaved" and (m % pp or shape.layers < 2 * pp):
            continue
        if dp == 1 and zero:
            continue                     # ZeRO over one replica shards nothing
        out.add((dp, tp, pp, m, zero, schedule))
    return out


SHAPES = [TransformerShape(layers=4, hidden=64, heads=4, vocab=64),
          TransformerShape(layers=2, hidden=48, heads=6, vocab=10),
          TransformerShape(layers=8, hidden=64, heads=8, vocab=10, ffn=96)]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 6, 8, 12])
@pytest.mark.parametrize("shape", SHAPES, ids=["L4a4", "L2a6", "L8a8f96"])
@pytest.mark.parametrize("batch", [16, 12])
def test_configurations_are_exactly_the_brute_force_list(world, shape, batch):
    listed = configurations(world, shape, batch)
    keys = [(x.dp, x.tp, x.pp, x.micro_batches, x.zero, x.schedule) for x in listed]
    assert len(keys) == len(set(keys)), "a configuration listed twice"
    assert set(keys) == brute_force(world, shape, batch)
    assert all(isinstance(x, Layout) and x.world_size == world for x in listed)


@pytest.mark.parametrize("world", [1, 2, 6, 12, 64, 96])
def test_factorizations_are_all_ordered_triples(world):
    triples = factorizations(world)
    assert sorted(triples) == sorted((d, t, p) for d in range(1, world + 1)
                                     for t in range(1, world + 1)
                                     for p in range(1, world + 1) if d * t * p == world)


def test_sequence_parallel_variants_only_with_tensor_parallelism():
    shape = SHAPES[0]
    both = configurations(4, shape, 16, sequence_parallel=(False, True), seq=64)
    plain = configurations(4, shape, 16)
    sp = [x for x in both if x.sequence_parallel]
    assert len(both) == len(plain) + len(sp)
    assert sp and all(x.tp > 1 and x.zero <= 1 for x in sp)
    assert not [x for x in configurations(4, shape, 16, sequence_parallel=(True,), seq=63)
                if x.sequence_parallel]


def test_published_shape_has_megatrons_configuration():
    # GPT-3 175B on 1024 GPUs as Megatron-LM splits it: tensor 8 within a node, pipeline 16
    layouts = configurations(1024, GPT3_175B, 1536, micro_batches=(1, 2, 4, 8, 16, 32))
    assert Layout(dp=8, tp=8, pp=16, micro_batches=32, zero=1, schedule="1f1b") in layouts
