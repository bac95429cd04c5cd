"""Flat layouts with padding (no process group): shards tile the buffer, views and pieces
cover every tensor exactly once, and the constructors refuse what they cannot shard."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hpclab.parallel.zero.shard import (
    FlatLayout,
    allocate_,
    bucket_by_size,
    check_params,
    free_,
    is_allocated,
)

pytestmark = [pytest.mark.unit_d]

shapes = st.lists(st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
                  min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes, p=st.integers(1, 7))
def test_layout_pads_to_equal_shards_and_round_trips(shapes, p):
    tensors = [torch.randn(s) for s in shapes]
    layout = FlatLayout.of(tensors, p)
    psi = sum(t.numel() for t in tensors)
    assert layout.numel == psi and layout.padded % p == 0
    assert psi <= layout.padded < psi + p
    flat = layout.flatten(tensors)
    assert torch.equal(flat[psi:], torch.zeros(layout.padded - psi))
    for t, v in zip(tensors, layout.views(flat)):
        assert torch.equal(t, v) and v.data_ptr() >= flat.data_ptr()
    # the shards tile the buffer; their pieces rebuild every tensor exactly
    rebuilt = [torch.full((t.numel(),), float("nan")) for t in tensors]
    for r in range(p):
        shard = flat[layout.shard_slice(r)]
        assert shard.numel() == layout.shard_numel
        for i, in_tensor, in_shard in layout.pieces(r):
            assert torch.isnan(rebuilt[i][in_tensor]).all(), "a piece was covered twice"
            rebuilt[i][in_tensor] = shard[in_shard]
    assert all(torch.equal(a, t.reshape(-1)) for a, t in zip(rebuilt, tensors))


def test_free_and_allocate_keep_views_valid():
    flat = torch.arange(6.0)
    view = flat[2:5].view(3, 1)
    free_(flat)
    assert not is_allocated(view) and view.shape == (3, 1)
    allocate_(flat)
    flat.copy_(torch.arange(6.0) * 2)
    assert torch.equal(view.reshape(-1), torch.tensor([4.0, 6.0, 8.0]))


def test_buckets_reverse_order_and_cap():
    params = [torch.zeros(n, requires_grad=True) for n in (10, 10, 30, 5)]
    assert bucket_by_size(params, cap_bytes=4 * 20) == [[3], [2], [1, 0]]
    assert bucket_by_size(params, cap_bytes=1e9) == [[3, 2, 1, 0]]
    with pytest.raises(ValueError, match="bucket cap must be > 0"):
        bucket_by_size(params, 0)


def test_errors_name_the_problem():
    a = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        check_params([], "ZeRO1")
    with pytest.raises(ValueError, match="same parameter twice"):
        check_params([a, a], "ZeRO1")
    with pytest.raises(ValueError, match="parameter-group dicts"):
        check_params([{"params": [a]}], "ZeRO1")
    with pytest.raises(ValueError, match="one dtype"):
        check_params([a, torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], "ZeRO1")
    with pytest.raises(ValueError, match="do not require grad"):
        check_params([a, torch.nn.Parameter(torch.zeros(2), requires_grad=False)], "ZeRO2")
    with pytest.raises(ValueError, match="world_size must be a positive int"):
        FlatLayout.of([a], 0)
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        FlatLayout.of([a], 2).shard_slice(2)


def test_stages_need_a_process_group():
    from hpclab.parallel.zero import ZeRO1
    with pytest.raises(RuntimeError, match="needs a process group"):
        ZeRO1([torch.nn.Parameter(torch.zeros(3))], torch.optim.SGD, lr=0.1)
