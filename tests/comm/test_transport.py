"""Scratch buffers kept from one collective call to the next (hpclab.comm._transport).

The pool must hand the same memory back on the next call (that is the point: no page
faults while a message lands), never hand one buffer to two users at once, stay within
its bound, keep threads apart, and drop a buffer a failed collective may still receive
into. The collectives' results are checked against torch.distributed.all_reduce.
"""

import threading
import time

import pytest
import torch
import torch.distributed as dist

from hpclab.cluster.spawn import run_local
from hpclab.comm import CommError, _transport, all_reduce
from hpclab.comm._transport import Inbox
from hpclab.comm.p2p import Comm

pytestmark = [pytest.mark.unit_c]


@pytest.fixture(autouse=True)
def empty_pool():
    _transport.pool().clear()
    yield
    _transport.pool().clear()


def test_a_given_buffer_comes_back_and_is_never_shared():
    x = torch.zeros(10)
    a = _transport.take(100, like=x)
    b = _transport.take(100, like=x)             # a is still in use: a new buffer
    assert a.data_ptr() != b.data_ptr() and a.numel() == b.numel() == 100
    _transport.give(a)
    again = _transport.take(60, like=x)          # the smallest free buffer that fits
    assert again.data_ptr() == a.data_ptr()
    assert _transport.take(60, like=x.double()).dtype == torch.float64   # dtype is respected
    assert _transport.pooled_bytes() == 0


def test_the_pool_stays_within_its_bound(monkeypatch):
    monkeypatch.setattr(_transport, "POOL_BYTES", 1000)
    x = torch.zeros(1)
    for _ in range(5):
        _transport.give(_transport.take(100, like=x))    # 400 bytes each, one at a time: reused
    assert _transport.pooled_bytes() == 400
    buffers = [_transport.take(100, like=x) for _ in range(4)]
    for b in buffers:
        _transport.give(b)
    assert _transport.pooled_bytes() == 800           # a third 400-byte buffer would not fit


def test_threads_have_their_own_pools():
    _transport.give(_transport.take(100, like=torch.zeros(1)))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_transport.pooled_bytes()))
    thread.start()
    thread.join()
    assert seen == [0] and _transport.pooled_bytes() == 400


def reuse_on_rank(ctx, numel, algorithm):
    _transport.pool().clear()
    results, pointers = [], []
    for call in range(3):
        x = torch.arange(numel, dtype=torch.float32) * (ctx.rank + 1) + call
        expected = x.clone()
        dist.all_reduce(expected)
        all_reduce(x, algorithm=algorithm)
        results.append(torch.equal(x, expected))
        pointers.append(sorted(b.data_ptr() for b in _transport.pool()))
    return results, pointers, _transport.pooled_bytes()


@pytest.mark.parametrize("algorithm", ["ring", "recursive_doubling", "tree",
                                       "parameter_server"])
def test_collectives_reuse_their_slots_from_call_to_call(algorithm):
    """After the first call the pool holds the slots, and later calls use the same ones."""
    out = run_local(reuse_on_rank, 3, 300_000, algorithm, timeout=120)
    for rank, (results, pointers, pooled) in enumerate(out):
        assert all(results), f"rank {rank}: {algorithm} differs from dist.all_reduce"
        if pooled:   # a rank that only sends (a tree leaf) needs no slots
            assert pointers[0] == pointers[1] == pointers[2], (rank, pointers)
    assert any(pooled for *_, pooled in out), "no rank kept its slots"


def failing_inbox_on_rank(ctx):
    _transport.pool().clear()
    if ctx.rank == 1:        # waits for a message rank 0 never sends
        comm = Comm.of(timeout=1.0, collective="test", algorithm="inbox")
        try:
            with Inbox(comm, 0, [1000, 1000], torch.zeros(1), steps=[0, 0], phase="test") \
                    as inbox:
                inbox.next()
        except CommError:    # a timeout (or, on a very slow machine, rank 0 leaving)
            return "failed", _transport.pooled_bytes()
    time.sleep(3.0)          # rank 0 stays (silent) until rank 1's wait has timed out
    return "idle", _transport.pooled_bytes()


def test_a_failed_receive_does_not_return_its_slots():
    """After a timeout the receive is still posted into the slot: it must not be reused."""
    out = run_local(failing_inbox_on_rank, 2, timeout=60)
    assert out[1] == ("failed", 0)
