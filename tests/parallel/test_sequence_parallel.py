"""Sequence parallel (Korthikanti et al. 2022) on top of tensor parallel.

- a TP+SP block equals the single-process Block, forward and backward (this rank's
  positions of the output and input gradient; every parameter's gradient gathered);
- from our comm traces (algorithm="ring"): a TP block communicates with all-reduces
  only, a TP+SP block with all-gathers and reduce-scatters only, and both send the same
  bytes (Megatron's regather: two more all-gathers);
- the activation bytes each rank keeps for backward are hpclab.memory's calculator's
  (Korthikanti §4.2), for TP, TP+SP and TP+SP with Megatron's regather;
- the whole tiny transformer with TP and with TP+SP blocks trains the same loss curve
  as single-process training (AdamW, float64) and ends with the same weights.
"""

import copy

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from hpclab import comm
from hpclab.cluster.spawn import run_local
from hpclab.memory import FP32, layer_terms, tiny_shape
from hpclab.memory.activations import total
from hpclab.memory.measure import SavedTensors
from hpclab.parallel.sequence_parallel import all_reduce_sequence_parallel_grads
from hpclab.parallel.tensor_parallel import gather_parameters
from hpclab.parallel.tp_transformer import ParallelBlock, ParallelTransformer
from hpclab.problems.transformer import Block, lm_loss, tiny_transformer
from hpclab.train import train_step

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]   # run_local: process groups


def _sp_block(ctx, tp, algorithm, regather):
    block, x, y = tp.reference(lambda: Block(tp.config()), seed=2)
    parallel = ParallelBlock(block, ctx, sequence_parallel=True, algorithm=algorithm,
                             regather=regather)
    tp.check_against(parallel, ctx, block, x, y, sequence_parallel=True)
    return True


@pytest.mark.parametrize("world_size, algorithm, regather", [
    (2, "torch", False), (4, "torch", False), (2, "ring", False), (4, "ring", False),
    (2, "torch", True), (4, "ring", True)])
def test_tp_sp_block_equals_single_process(world_size, algorithm, regather, tp):
    assert all(run_local(_sp_block, world_size, tp, algorithm, regather))


def _traffic(ctx, tp, sequence_parallel, regather=False):
    """(collective → number of calls, bytes this rank sent) of one forward + backward."""
    block, x, _ = tp.reference(lambda: Block(tp.config()), seed=3)
    parallel = ParallelBlock(block, ctx, sequence_parallel=sequence_parallel, algorithm="ring",
                             regather=regather)
    if sequence_parallel:
        x = x.detach().chunk(ctx.world_size, dim=1)[ctx.rank]
    x = x.detach().clone().requires_grad_(True)
    with comm.tracing() as trace:
        parallel(x).sin().sum().backward()
    calls = {}
    for m in trace.messages:
        calls.setdefault(m.collective, set()).add(m.call)
    return {c: len(n) for c, n in calls.items()}, sum(m.nbytes for m in trace.messages)


@pytest.mark.parametrize("world_size", [2, 4])
def test_sp_replaces_each_all_reduce_by_all_gather_and_reduce_scatter_of_equal_bytes(
        world_size, tp):
    tp_only = run_local(_traffic, world_size, tp, False)
    with_sp = run_local(_traffic, world_size, tp, True)
    regather = run_local(_traffic, world_size, tp, True, True)
    # ring: (t−1)/t of the (B, T, C) float64 activation per all-gather or reduce-scatter
    n = tp.B * tp.T * tp.config().d_model * 8 * (world_size - 1) // world_size
    for r in range(world_size):
        # two g (attention, MLP) forward, two f backward
        assert tp_only[r][0] == {"all_reduce": 4}, tp_only[r]
        # g → all-gather forward, reduce-scatter backward; ḡ the reverse
        assert with_sp[r][0] == {"all_gather": 4, "reduce_scatter": 4}, with_sp[r]
        assert with_sp[r][1] == tp_only[r][1] == 8 * n, (with_sp[r], tp_only[r])
        # Megatron's memory saving: the two column-parallel inputs gathered again
        assert regather[r] == ({"all_gather": 6, "reduce_scatter": 4}, 10 * n), regather[r]


def _saved_bytes(ctx, tp, sequence_parallel, regather):
    cfg = tp.config(n_heads=2 * ctx.world_size)
    block = Block(cfg)
    parallel = ParallelBlock(block, ctx, sequence_parallel=sequence_parallel,
                             regather=regather)
    x = torch.randn(tp.B, tp.T, cfg.d_model)
    if sequence_parallel:   # a copy: a view would hold the whole input's storage
        x = x.chunk(ctx.world_size, dim=1)[ctx.rank].clone()
    x.requires_grad_(True)
    with sdpa_kernel(SDPBackend.MATH), SavedTensors(exclude=parallel.parameters()) as saved:
        y = parallel(x)
    y.sum().backward()
    return saved.bytes


@pytest.mark.parametrize("world_size", [2, 4])
def test_activation_memory_per_rank_is_the_calculators(world_size, tp):
    """Korthikanti's §4.2: TP splits the attention and MLP insides t ways, SP also the
    LayerNorm/residual region; our textbook SP keeps the two gathered linear inputs whole,
    regather (Megatron) splits them too. Float32, math attention, on each rank; 2 heads
    per rank (with one, v is a view that keeps the whole fused qkv output alive)."""
    cfg = tp.config(n_heads=2 * world_size)
    terms = layer_terms(tiny_shape(cfg, "math"), tp.T, tp.B, precision=FP32)
    t = world_size
    inputs = sum(term.bytes for term in terms if term.name in ("qkv.input", "fc1.input"))
    expected = {(False, False): total(terms, t, sp=False),
                (True, False): total(terms, t, sp=True) + inputs * (1 - 1 / t),
                (True, True): total(terms, t, sp=True)}
    for (sp, regather), want in expected.items():
        got = run_local(_saved_bytes, world_size, tp, sp, regather)
        assert got == [want] * world_size, (sp, regather, got, want)
    assert expected[True, True] < expected[True, False] < expected[False, False]


STEPS = 5


def _batches():
    g = torch.Generator().manual_seed(7)
    return [(torch.randint(0, 11, (4, 8), generator=g),
             torch.randint(0, 11, (4, 8), generator=g)) for _ in range(STEPS)]


def _train(model, batches, after_backward=None):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return [train_step(model, opt, b, lm_loss, step=s, after_backward=after_backward).loss
            for s, b in enumerate(batches)]


def _train_parallel(ctx, sequence_parallel, regather):
    model = tiny_transformer(11, block_size=8, d_model=16, n_heads=4).double()
    reference = copy.deepcopy(model)
    ref_losses = _train(reference, _batches())
    parallel = ParallelTransformer(model, ctx, sequence_parallel=sequence_parallel,
                                   regather=regather)
    losses = _train(parallel, _batches(),
                    lambda m: all_reduce_sequence_parallel_grads(m, ctx))
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses),
                               rtol=1e-9, atol=0)
    final = gather_parameters(parallel, ctx)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(final[name], p.detach(), rtol=1e-8, atol=1e-10, msg=name)
    model.load_state_dict(final)     # the gathered parameters are TinyTransformer's
    return losses


@pytest.mark.parametrize("sequence_parallel, regather", [(False, False), (True, False),
                                                         (True, True)],
                         ids=["tp", "tp+sp", "tp+sp+regather"])
def test_tiny_transformer_trains_the_single_process_loss_curve(sequence_parallel, regather):
    curves = run_local(_train_parallel, 2, sequence_parallel, regather)
    assert curves[0] == curves[1] and curves[0][-1] < curves[0][0]
