"""The all-reduce visualiser replays real traces recorded on local process groups."""

from __future__ import annotations

import pytest

from hpclab.comm.cost_model import Params, predict
from hpclab.widgets import AllReduceVisualiser
from hpclab.widgets.allreduce import SUB
from hpclab.widgets.allreduce_state import Replay, record_trace

pytestmark = [pytest.mark.unit_c, pytest.mark.cluster]

PARAMS = Params(alpha=3e-6, beta=2e-10, gamma=1e-10)


@pytest.mark.parametrize("p", [3, 4])
@pytest.mark.parametrize("algorithm", ["ring", "halving_doubling", "naive", "tree"])
def test_replay_completes_and_costs_match_the_model(algorithm, p):
    msgs, nbytes = record_trace(algorithm, p)
    replay = Replay(msgs, p, nbytes)
    assert replay.holdings(0)[1][0] == {1}                 # each rank starts with its own
    assert replay.complete(), "after the last step every piece sums all ranks"
    if algorithm != "tree":   # the tree's formula is a critical-path estimate, not a sum
        for n in (4096, 16 << 20):
            assert replay.total_cost(PARAMS, n) == pytest.approx(
                predict(algorithm, n, p, PARAMS), rel=1e-9)


def test_ring_moves_one_piece_per_rank_per_step():
    msgs, nbytes = record_trace("ring", 4)
    replay = Replay(msgs, 4, nbytes)
    assert len(replay) == 2 * (4 - 1) and replay.n_pieces == 4
    for moves in replay.steps:
        assert sorted(m.src for m in moves) == [0, 1, 2, 3]
        assert all(len(m.pieces) == 1 and m.dst == (m.src + 1) % 4 for m in moves)


def test_widget_steps_and_switches_algorithm():
    viz = AllReduceVisualiser(world_size=3, algorithms=("ring", "naive"))
    assert viz.step == 0 and viz.frame.max == len(viz.replay) * SUB
    viz.forward.click()
    viz.forward.click()
    assert viz.step == 2
    viz.back.click()
    assert viz.step == 1
    viz.algorithm.value = "naive"
    assert viz.step == 0 and set(viz.replays) == {"ring", "naive"}
    assert viz.wait_drawn() and viz.error is None
    assert viz.image.value[:4] == b"\x89PNG" and viz.frames_drawn >= 2
    assert viz.snapshot(frame=SUB + 2).data[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="unknown algorithms"):
        AllReduceVisualiser(world_size=3, algorithms=("magic",))
