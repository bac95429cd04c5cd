"""Bad arguments raise ValueError naming the value and the choices; a silent or dead peer
raises CommTimeout / CommError naming this rank, its host, the peer and the step, within
the timeout, on real gloo process groups."""

import os
import socket
import time

import pytest
import torch

from hpclab import comm
from hpclab.cluster.spawn import SpawnError, run_local

pytestmark = [pytest.mark.unit_c]


def test_unknown_algorithm_lists_the_valid_ones():
    with pytest.raises(ValueError, match="butterfly") as err:
        comm.all_reduce(torch.ones(3), algorithm="butterfly")
    for name in comm.ALGORITHMS["all_reduce"]:
        assert repr(name) in str(err.value)


def test_algorithm_not_offered_by_a_collective():
    with pytest.raises(ValueError, match="broadcast has no algorithm 'ring'") as err:
        comm.broadcast(torch.ones(3), algorithm="ring")
    assert "['naive', 'tree', 'torch']" in str(err.value)
    with pytest.raises(ValueError, match="reduce_scatter has no algorithm 'tree'"):
        comm.reduce_scatter(torch.ones(1), torch.ones(2), algorithm="tree")


def test_bad_ops_and_options():
    with pytest.raises(ValueError, match=r"op must be one of \['sum', 'avg', 'max'\], got 'min'"):
        comm.all_reduce(torch.ones(3), op="min")
    with pytest.raises(ValueError, match="op='avg' needs a floating-point tensor"):
        comm.all_reduce(torch.ones(3, dtype=torch.int64), op="avg")
    with pytest.raises(ValueError, match=r"needs the group's measured costs: run costs = "
                                         r"hpclab.comm.calibrate\(group\)"):
        comm.all_reduce(torch.ones(3), algorithm="auto")
    with pytest.raises(TypeError, match="tensor must be a torch.Tensor, got list"):
        comm.all_reduce([1.0, 2.0])


def test_without_a_process_group_says_how_to_start_one():
    with pytest.raises(RuntimeError, match="init_process_group"):
        comm.all_reduce(torch.ones(3))


def _bad_arguments(ctx):
    messages = []
    for call in (lambda: comm.all_reduce(torch.ones(2), timeout=0),
                 lambda: comm.broadcast(torch.ones(2), src=ctx.world_size),
                 lambda: comm.all_gather(torch.empty(3), torch.ones(2)),
                 lambda: comm.reduce_scatter(torch.empty(2), [torch.ones(2)])):
        try:
            call()
        except ValueError as exc:
            messages.append(str(exc))
    return messages


def test_bad_arguments_inside_a_group():
    messages = run_local(_bad_arguments, 2)[0]
    assert messages == ["timeout must be > 0 seconds, got 0",
                        "src must be a rank in 0..1, got 2",
                        ("output must have p·n = 4 elements of dtype torch.float32, got 3 "
                         "of torch.float32"),
                        "input must be a list of p = 2 tensors, got 1"]


def _silent_peer(ctx, algorithm):
    if ctx.rank == 1:
        time.sleep(2.5)          # never joins the collective
        return None
    start = time.monotonic()
    try:
        comm.all_reduce(torch.ones(8), algorithm=algorithm, timeout=1.0)
    except comm.CommTimeout as err:
        return (err.rank, err.host, err.peer, err.step, err.phase, str(err),
                time.monotonic() - start)
    return "no error"


@pytest.mark.parametrize("algorithm", ["ring", "naive", "torch"])
def test_silent_peer_times_out_with_names(algorithm):
    rank, host, peer, step, phase, message, waited = run_local(_silent_peer, 2, algorithm,
                                                                timeout=30)[0]
    assert (rank, host) == (0, socket.gethostname())
    assert waited < 3.5, f"waited {waited:.1f} s for a 1 s timeout"
    assert f"rank 0 on host {host}" in message and "no answer within 1 s" in message
    if algorithm != "torch":
        assert (peer, step) == (1, 0)
        assert f"rank 1 at step 0 ({phase})" in message


def _dying_peer(ctx, report):
    if ctx.rank == 2:
        time.sleep(0.3)
        # gone mid-collective while the others wait. Exit status 0, so that run_local's
        # supervisor does not SIGTERM the others before they notice: what is tested here
        # is that the peers notice on their own, fast, and name the dead rank.
        os._exit(0)
    start = time.monotonic()
    try:
        comm.all_reduce(torch.ones(1000), algorithm="ring", timeout=30)
    except comm.CommError as err:
        if ctx.rank != 0:
            return err.peer      # only rank 0 fails the run, after writing its report
        with open(report, "w") as f:
            f.write(f"{err.peer}|{time.monotonic() - start}|{err}")
        raise


def test_dead_peer_fails_fast_naming_it(tmp_path):
    report = tmp_path / "rank0.txt"
    with pytest.raises(SpawnError, match="rank"):
        run_local(_dying_peer, 3, str(report), timeout=40)
    for _ in range(50):              # rank 0 writes its report as it fails
        if report.exists() and report.read_text():
            break
        time.sleep(0.1)
    peer, waited, message = report.read_text().split("|", 2)
    assert peer == "2" and float(waited) < 10, (peer, waited)
    assert "rank 0 on host" in message and "receive from rank 2" in message
    assert "probably died" in message
