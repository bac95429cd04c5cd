"""A loss that goes non-finite on one rank only stops every rank at once, with one error.

The data holds one NaN sample; the sampler's shards are disjoint, so in the first epoch
only one rank's batch holds it. Every rank runs the Trainer's loop (worker.train_rank:
hpclab.train.train_step with our DDP) in a real gloo group. Every rank must raise
NonFiniteLossError at the step where that batch comes, with the same message (the step
and the last finite loss of the global batch) — not a timeout or a peer's broken
connection, which is what a rank raising alone would leave its peers with.
"""

import pytest
import torch

from hpclab.cluster.spawn import run_local
from hpclab.parallel import DistributedSampler, TrainerConfig
from hpclab.parallel.worker import RankJob, train_rank
from hpclab.train import NonFiniteLossError

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]

torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)   # import dynamo before fork

N, LOCAL_BATCH, BAD_RANK, BAD_STEP = 48, 4, 1, 3


def model_fn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def bad_index(world_size: int) -> int:
    """A sample that only rank BAD_RANK sees in the first epoch, in its step BAD_STEP."""
    sampler = DistributedSampler(N, world_size, BAD_RANK, seed=0)
    return list(sampler.batches(LOCAL_BATCH))[BAD_STEP - 1][0]


def make_data_fn(world_size: int):
    def data_fn():
        g = torch.Generator().manual_seed(3)
        X, Y = torch.randn(N, 5, generator=g), torch.randint(0, 3, (N,), generator=g)
        X[bad_index(world_size)] = float("nan")
        return X, Y
    return data_fn


def optimizer_fn(params):
    return torch.optim.SGD(params, lr=0.1)


def train_until_nan(ctx, accumulation):
    cfg = TrainerConfig(batch_size=LOCAL_BATCH * ctx.world_size, accumulation=accumulation,
                        algorithm="ring", stop_check_every=100)
    spec = RankJob(model_fn, make_data_fn(ctx.world_size), optimizer_fn, cfg, steps=10)
    try:
        train_rank(ctx, spec)
    except NonFiniteLossError as exc:
        return exc.step, str(exc)
    return None


@pytest.mark.parametrize("world_size, accumulation", [(2, 1), (3, 1), (2, 2)])
def test_every_rank_raises_the_same_error_at_the_same_step(world_size, accumulation):
    results = run_local(train_until_nan, world_size, accumulation, timeout=60)
    assert None not in results, f"a rank trained on past the NaN: {results}"
    steps, messages = zip(*results)
    assert set(steps) == {BAD_STEP}, steps
    assert len(set(messages)) == 1, messages
    assert f"at step {BAD_STEP}" in messages[0] and "last finite loss: none" not in messages[0]
