"""The prefetcher yields exactly the loader's batches and never leaves a thread behind."""

import threading
import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from hpclab.parallel.prefetch import Prefetcher

pytestmark = [pytest.mark.unit_d]


def _loader():
    data = TensorDataset(torch.arange(50.0).view(25, 2), torch.arange(25))
    return DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))


def _threads():
    return [t for t in threading.enumerate() if t.name == "hpclab-prefetch"]


@pytest.mark.parametrize("depth", [1, 3])
def test_same_batches_in_the_same_order(depth):
    ref = list(_loader())
    got = list(Prefetcher(_loader(), depth=depth))
    assert len(got) == len(ref) == 7
    for (a, b), (c, d) in zip(got, ref):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert not _threads()


def test_breaking_early_stops_the_thread():
    for i, _ in enumerate(Prefetcher(_loader(), depth=1)):
        if i == 1:
            break
    assert not _threads()


def test_loader_errors_reach_the_training_loop():
    def broken():
        yield torch.zeros(1)
        raise OSError("disk went away")
    with pytest.raises(OSError, match="disk went away"):
        list(Prefetcher(broken()))
    assert not _threads()


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth must be a positive int"):
        Prefetcher([], depth=0)
    with pytest.raises(ValueError, match="timeout"):
        Prefetcher([], timeout=0)


@pytest.mark.gpu
def test_batches_land_on_the_gpu():
    for x, y in Prefetcher(_loader(), device="cuda"):
        assert x.is_cuda and y.is_cuda


def test_data_bench_prints_every_variant(capsys):
    from hpclab.bench.data import main
    assert main(["--steps", "2", "--batch", "8", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "plain loop" in out and "worker processes" in out and "prefetch thread" in out


def test_breaking_in_the_last_batches_stops_the_thread():
    # the loader ends while the queue is full: putting the end marker must not block the
    # thread (it did: the loop then waited `timeout` s in join and left the thread behind)
    for _ in Prefetcher([1, 2], depth=1, timeout=2.0):
        time.sleep(0.3)     # let the thread fill the queue and reach the end of the loader
        break
    assert not _threads()
