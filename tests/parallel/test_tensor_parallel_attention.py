"""Tensor-parallel attention and block equal the single-process modules with the same
weights, forward and backward (outputs, input gradient, every parameter's gradient
gathered from the ranks), on t = 2 and 4 ranks; and the errors for bad splits."""

import pytest
from torch import nn

from hpclab.cluster.spawn import run_local
from hpclab.parallel.tp_transformer import ParallelBlock, ParallelSelfAttention, parallel_mlp
from hpclab.problems.transformer import Block, CausalSelfAttention

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]   # run_local: process groups


def _attention_and_block(ctx, tp, recompute, algorithm="torch"):
    cfg = tp.config(recompute=recompute)
    attn, x, y = tp.reference(lambda: CausalSelfAttention(cfg), seed=0)
    parallel = ParallelSelfAttention.from_attention(attn, ctx, algorithm=algorithm)
    tp.check_against(parallel, ctx, attn, x, y, sequence_parallel=False)
    block, x, y = tp.reference(lambda: Block(cfg), seed=1)
    parallel = ParallelBlock(block, ctx, algorithm=algorithm)
    tp.check_against(parallel, ctx, block, x, y, sequence_parallel=False)
    return True


@pytest.mark.parametrize("world_size, algorithm", [(2, "torch"), (4, "torch"), (2, "ring")])
def test_tp_attention_and_block_equal_single_process(world_size, algorithm, tp):
    # "torch": gloo's collectives; "ring": the course's, message by message
    assert all(run_local(_attention_and_block, world_size, tp, "none", algorithm))


def test_tp_block_with_recomputation_equals_single_process(tp):
    # selective: the attention core again in backward; full: the whole block (its
    # collectives run again in backward, on every rank alike)
    assert all(run_local(_attention_and_block, 2, tp, "selective"))
    assert all(run_local(_attention_and_block, 2, tp, "full"))


class _Ctx:
    def __init__(self, world_size):
        self.rank, self.world_size, self.group = 0, world_size, None


def test_heads_or_hidden_not_divisible_by_t_is_a_clear_error(tp):
    with pytest.raises(ValueError, match=r"n_heads \(4\) must be divisible .* t=3"):
        ParallelSelfAttention(16, 4, _Ctx(3))
    with pytest.raises(ValueError, match=r"d_model \(18\) must be divisible .* t=4"):
        ParallelSelfAttention(18, 8, _Ctx(4))
    with pytest.raises(ValueError, match=r"n_heads \(6\) must be divisible .* t=4"):
        ParallelBlock(Block(tp.config(d_model=12, n_heads=6)), _Ctx(4))
    mlp = nn.Sequential(nn.Linear(8, 10), nn.GELU(), nn.Linear(10, 8), nn.Dropout(0.0))
    with pytest.raises(ValueError, match=r"hidden size \(10\) must be divisible .* t=4"):
        parallel_mlp(mlp, _Ctx(4))
