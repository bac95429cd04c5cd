"""Our DistributedSampler against torch.utils.data.DistributedSampler (the same index sets),
plus the properties data parallelism relies on and resumption mid-epoch."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DistributedSampler as TorchSampler

from hpclab.parallel import DistributedSampler

pytestmark = [pytest.mark.unit_d]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), p=st.integers(1, 6), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 10), epoch=st.integers(0, 3))
def test_same_indices_as_torch(n, p, shuffle, drop_last, seed, epoch):
    if drop_last and n < p:
        return
    data = list(range(n))
    for rank in range(p):
        ours = DistributedSampler(n, p, rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        ref = TorchSampler(data, num_replicas=p, rank=rank, shuffle=shuffle, seed=seed,
                           drop_last=drop_last)
        ours.set_epoch(epoch)
        ref.set_epoch(epoch)
        assert list(ours) == list(ref)
        assert len(ours) == len(ref)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), p=st.integers(1, 5), epoch=st.integers(0, 5))
def test_shards_are_disjoint_and_cover_the_epoch(n, p, epoch):
    shards = []
    for r in range(p):
        s = DistributedSampler(n, p, r, seed=3)
        s.set_epoch(epoch)
        shards.append(s.indices())
    if n % p == 0:
        flat = sorted(i for sh in shards for i in sh)
        assert flat == list(range(n))
    else:   # padding repeats a few indices, but nothing is missing
        assert set().union(*map(set, shards)) == set(range(n))


def test_local_batches_form_the_global_batch():
    """b-th local batches of the p ranks = b-th global batch of one process."""
    n, p, B = 96, 3, 12
    one = DistributedSampler(n, 1, 0, seed=5)
    global_batches = list(one.batches(B))
    local = [list(DistributedSampler(n, p, r, seed=5).batches(B // p)) for r in range(p)]
    for b, gb in enumerate(global_batches):
        together = [i for r in range(p) for i in local[r][b]]
        assert sorted(together) == sorted(gb)


def test_resume_mid_epoch_continues_with_the_next_sample():
    full = DistributedSampler(50, 2, 1, seed=7)
    full.set_epoch(2)
    expected = list(full.batches(4))
    part = DistributedSampler(50, 2, 1, seed=7)
    part.set_epoch(2)
    it = part.batches(4)
    first = [next(it), next(it)]
    state = part.state_dict()
    resumed = DistributedSampler(50, 2, 1, seed=0)
    resumed.load_state_dict(state)
    assert state["position"] == 8
    assert first + list(resumed.batches(4)) == expected


def test_new_world_size_restarts_the_epoch():
    s = DistributedSampler(50, 2, 0)
    s.position = 10
    t = DistributedSampler(50, 4, 0)
    t.load_state_dict(s.state_dict())
    assert t.position == 0 and t.epoch == s.epoch


@pytest.mark.parametrize("kwargs, word", [({"dataset": 0}, "at least 1"),
                                          ({"num_replicas": 0}, "num_replicas"),
                                          ({"rank": 3}, "rank"),
                                          ({"dataset": 2, "drop_last": True}, "drop_last")])
def test_bad_arguments(kwargs, word):
    args = {"dataset": 10, "num_replicas": 3, "rank": 0, **kwargs}
    with pytest.raises(ValueError, match=word):
        DistributedSampler(**args)


def test_accepts_a_dataset():
    ds = torch.utils.data.TensorDataset(torch.zeros(9, 1))
    assert len(DistributedSampler(ds, 2, 0)) == 5
