"""run_local: forked ranks in a gloo group, results by rank, errors naming the rank."""

import os
import socket

import pytest
import torch
import torch.distributed as dist

from hpclab.cluster.spawn import SpawnError, run_local

pytestmark = [pytest.mark.unit_c]


def _rank_and_sum(ctx):
    t = torch.tensor([ctx.rank + 1.0])
    dist.all_reduce(t)
    return ctx.rank, ctx.world_size, t.item()


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_results_come_back_by_rank(world_size):
    total = world_size * (world_size + 1) / 2
    assert run_local(_rank_and_sum, world_size) == [(r, world_size, total)
                                                    for r in range(world_size)]


def _send_nothing(ctx):
    return ctx.rank


def test_ranks_that_send_nothing_wait_for_a_slow_peer_to_connect():
    # a rank with no messages to send (an empty shard) used to leave while a slower rank
    # was still connecting its gloo mesh: "Connection closed by peer" on that rank
    # (about 1 run in 75 under load before the fix; 0 in 600 after)
    for _ in range(25):
        assert run_local(_send_nothing, 3) == [0, 1, 2]


def _raise_on_rank_1(ctx):
    if ctx.rank == 1:
        raise KeyError("no such shard")
    return ctx.rank


def test_a_raising_rank_is_named():
    with pytest.raises(SpawnError, match=r"rank 1 on .* failed: KeyError: 'no such shard'"):
        run_local(_raise_on_rank_1, 2, timeout=20)


def _die_on_rank_0(ctx):
    if ctx.rank == 0:
        os._exit(3)
    dist.barrier()


def test_a_dying_rank_is_named_with_its_exit_code():
    with pytest.raises(SpawnError, match=r"rank 0 on .* died \(exit code 3\)"):
        run_local(_die_on_rank_0, 2, timeout=20)


@pytest.mark.parametrize("world_size, timeout, message", [
    (0, 5, "world_size must be a positive int, got 0"),
    ("2", 5, "world_size must be a positive int, got '2'"),
    (2, 0, "timeout must be > 0 seconds, got 0"),
])
def test_bad_arguments_are_named(world_size, timeout, message):
    with pytest.raises(ValueError, match=message):
        run_local(_send_nothing, world_size, timeout=timeout)


def test_a_group_that_fails_to_form_is_retried_with_a_fresh_port(monkeypatch):
    # the first attempt hands rank 0 a socket its TCPStore cannot listen on (UDP): the
    # rendezvous fails before fn runs, and run_local tries again with a fresh socket
    from hpclab.cluster import spawn

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    given = [udp]
    real = spawn._listening_socket
    monkeypatch.setattr(spawn, "_listening_socket", lambda: given.pop() if given else real())
    assert run_local(_rank_and_sum, 2, timeout=20) == [(0, 2, 3.0), (1, 2, 3.0)]
    assert not given, "the failing socket was never tried"


def _die_on_rank_2_then_rank_0_fails(ctx):
    if ctx.rank == 2:
        os._exit(1)
    t = torch.ones(1)
    dist.all_reduce(t)      # rank 0 and 1: "Connection closed by peer" (or a timeout)
    return t.item()


def test_a_dead_rank_is_named_as_the_cause_when_a_peer_fails_after_it():
    with pytest.raises(SpawnError, match=r"^rank 2 on .* died \(exit code 1\)"):
        run_local(_die_on_rank_2_then_rank_0_fails, 3, timeout=20)
