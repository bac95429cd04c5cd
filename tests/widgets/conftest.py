"""Real training runs whose StepRecords the widget tests feed to the widgets.

`train_records(steps)` trains a small MLP on sklearn's digits with torch.optim.SGD in this
process and times forward, backward and the optimizer step; `dp_records(world, steps)`
does the same data-parallel on `world` forked ranks (gloo all-reduce of the gradients), so
each rank's records carry a real communication time.
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.distributed as dist
from sklearn.datasets import load_digits

from hpclab.metrics import StepRecord


def _data():
    X, y = load_digits(return_X_y=True)
    return torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)


def _train(steps: int, rank: int = 0, world: int = 1, batch: int = 32, comm=None):
    torch.manual_seed(0)
    X, y = _data()
    Xv, yv = X[-200:], y[-200:]
    X, y = X[rank:-200:world], y[rank:-200:world]
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    records = []
    for step in range(steps):
        i = (step * batch) % (len(X) - batch)
        t0 = time.perf_counter()
        loss = loss_fn(model(X[i:i + batch]), y[i:i + batch])
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        if comm is not None:
            comm(model)
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        extra = {}
        if step % 5 == 4:
            with torch.no_grad():
                extra["val_loss"] = loss_fn(model(Xv), yv).item()
        records.append(StepRecord(step=step, loss=loss.item(), rank=rank, world_size=world,
                                  samples=batch, t_step=t4 - t0, t_forward=t1 - t0,
                                  t_backward=t2 - t1, t_comm=t3 - t2, t_optim=t4 - t3,
                                  time=time.time(), lr=0.1, extra=extra))
    return records


def _allreduce_grads(model):
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_size()


def _dp_worker(ctx, steps):
    return [r.to_dict() for r in _train(steps, ctx.rank, ctx.world_size, comm=_allreduce_grads)]


@pytest.fixture(scope="session")
def train_records():
    return lambda steps=30: _train(steps)


@pytest.fixture(scope="session")
def dp_records():
    from hpclab.cluster.spawn import run_local

    def make(world=2, steps=20):
        per_rank = run_local(_dp_worker, world, steps, timeout=60)
        return [[StepRecord.from_dict(d) for d in rank] for rank in per_rank]
    return make
