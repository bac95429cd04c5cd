"""Tensor-parallel linear layers equal the single-process layer, forward and backward."""

import pytest
import torch
from torch import nn

from hpclab.cluster.spawn import run_local
from hpclab.parallel.tensor_parallel import ColumnParallelLinear, RowParallelLinear, split_sizes

pytestmark = [pytest.mark.unit_d]

TOL = {"rtol": 1e-10, "atol": 1e-12}   # float64: only summation order differs


def _reference(seed, d_in, d_hidden, d_out, batch):
    torch.manual_seed(seed)
    fc1, fc2 = nn.Linear(d_in, d_hidden).double(), nn.Linear(d_hidden, d_out).double()
    x = torch.randn(batch, d_in, dtype=torch.float64, requires_grad=True)
    y = fc2(torch.relu(fc1(x)))
    (y ** 2).sum().backward()
    return fc1, fc2, x, y


def _mlp_block(ctx, seed, d_in, d_hidden, d_out, batch):
    fc1, fc2, x_ref, y_ref = _reference(seed, d_in, d_hidden, d_out, batch)
    col = ColumnParallelLinear.from_linear(fc1, ctx, gather_output=False)
    row = RowParallelLinear.from_linear(fc2, ctx, input_is_parallel=True)
    x = x_ref.detach().clone().requires_grad_(True)
    y = row(torch.relu(col(x)))
    (y ** 2).sum().backward()
    rows = fc1.weight.grad.split(col.sizes, dim=0)[ctx.rank]
    cols = fc2.weight.grad.split(row.sizes, dim=1)[ctx.rank]
    torch.testing.assert_close(y, y_ref.detach(), **TOL)
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
    torch.testing.assert_close(col.weight.grad, rows, **TOL)
    torch.testing.assert_close(col.bias.grad, fc1.bias.grad.split(col.sizes)[ctx.rank], **TOL)
    torch.testing.assert_close(row.weight.grad, cols, **TOL)
    torch.testing.assert_close(row.bias.grad, fc2.bias.grad, **TOL)
    return True


def _gathered_and_scattered(ctx, seed, d_in, d_out, batch):
    torch.manual_seed(seed)
    full = nn.Linear(d_in, d_out).double()
    x_ref = torch.randn(batch, d_in, dtype=torch.float64, requires_grad=True)
    full(x_ref).sin().sum().backward()
    for layer in (ColumnParallelLinear.from_linear(full, ctx, gather_output=True),
                  RowParallelLinear.from_linear(full, ctx, input_is_parallel=False)):
        x = x_ref.detach().clone().requires_grad_(True)
        y = layer(x)
        y.sin().sum().backward()
        torch.testing.assert_close(y, full(x_ref).detach(), **TOL)
        torch.testing.assert_close(x.grad, x_ref.grad, **TOL)
    return True


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_column_then_row_parallel_mlp_block_equals_single_process(world_size):
    assert all(run_local(_mlp_block, world_size, 0, 5, 7, 4, 6))   # 7 hidden: uneven split


@pytest.mark.parametrize("world_size", [2, 3])
def test_gathered_column_and_scattered_row_layers(world_size):
    assert all(run_local(_gathered_and_scattered, world_size, 1, 6, 5, 3))


def test_split_sizes_cover_everything():
    assert split_sizes(7, 3) == [3, 2, 2] and sum(split_sizes(100, 7)) == 100


def test_too_few_features_for_the_ranks_is_an_error():
    class Ctx:
        rank, world_size, group = 0, 4, None
    with pytest.raises(ValueError, match="out_features"):
        ColumnParallelLinear(3, 2, Ctx())
    with pytest.raises(ValueError, match="in_features"):
        RowParallelLinear(2, 3, Ctx())
