"""The data-parallel Trainer on real ipyparallel engines: live metrics, stop, faults.

One cluster of 2 engines for the module (engines take seconds to start). The fault test
SIGKILLs an engine mid-training and checks: the notebook gets a RankError naming the rank
and host within the timeout, the checkpoints written before are intact, and fresh engines
resume from the last one.
"""

import os
import signal
import time

import pytest
import torch

import hpclab
from hpclab.cluster import RankError
from hpclab.parallel import Trainer, TrainerConfig, latest_checkpoint, load_checkpoint

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster, pytest.mark.slow]

TIMEOUT = 20.0   # process-group timeout: the longest any rank may wait for a dead peer


def model_fn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))


def data_fn():
    g = torch.Generator().manual_seed(0)
    return torch.randn(256, 8, generator=g), torch.randint(0, 3, (256,), generator=g)


def optimizer_fn(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


@pytest.fixture(scope="module")
def cluster():
    with hpclab.connect(n=2, timeout=TIMEOUT) as c:
        yield c


def test_live_records_stop_and_history(cluster, tmp_path):
    trainer = Trainer(cluster, model_fn, data_fn, optimizer_fn,
                      TrainerConfig(batch_size=16, algorithm="ring", stop_check_every=5,
                                    checkpoint_dir=str(tmp_path)))
    job = trainer.fit(steps=1_000_000)          # "forever": only stop() ends it
    live = []
    job.subscribe(live.append)
    deadline = time.monotonic() + 60
    while len({r.rank for r in live if r.step >= 20}) < 2:   # both ranks streaming
        assert time.monotonic() < deadline, f"no live records from both ranks: {job}"
        time.sleep(0.05)
    assert not job.done(), "records must arrive while training runs"
    job.stop()
    history = job.wait(timeout=60)
    assert job.stopped
    last = max(r.step for r in history)
    assert sorted(r.step for r in history if r.rank == 0) == list(range(1, last + 1))
    assert {r.rank for r in history} == {0, 1}
    rec = history[-1]
    assert rec.samples == 8 and rec.world_size == 2 and rec.t_step > 0
    assert rec.t_forward + rec.t_backward + rec.t_comm + rec.t_optim <= rec.t_step * 1.01
    # stop() checkpoints the step at which the ranks agreed to stop
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == last
    lat = sorted(job.latencies)
    assert lat[len(lat) // 2] < 0.5, f"median live latency {lat[len(lat) // 2]:.3f} s"


def test_killed_engine_is_named_and_fresh_engines_resume(cluster, tmp_path):
    cfg = TrainerConfig(batch_size=16, algorithm="ring", checkpoint_dir=str(tmp_path),
                        checkpoint_every=10)
    job = Trainer(cluster, model_fn, data_fn, optimizer_fn, cfg).fit(steps=1_000_000)
    deadline = time.monotonic() + 60
    while latest_checkpoint(tmp_path) is None or job.latest_step() < 25:
        assert time.monotonic() < deadline, f"no checkpoint yet: {job}"
        time.sleep(0.05)
    victim = cluster.ranks[1]
    os.kill(victim.pid, signal.SIGKILL)
    t_kill = time.monotonic()
    with pytest.raises(RankError) as err:
        job.wait(timeout=TIMEOUT + 30)
    waited = time.monotonic() - t_kill
    assert err.value.rank == 1 and err.value.host == victim.host
    assert "rank 1" in str(err.value) and victim.host in str(err.value)
    assert waited < TIMEOUT + 15, f"the notebook waited {waited:.1f} s for the error"
    saved = load_checkpoint(latest_checkpoint(tmp_path))["step"]
    assert saved >= 10 and saved % 10 == 0

    cluster.close()                     # what the error suggests: fresh engines
    with hpclab.connect(n=2, timeout=TIMEOUT) as fresh:
        job2 = Trainer(fresh, model_fn, data_fn, optimizer_fn, cfg).fit(steps=saved + 5,
                                                                        resume="latest")
        history = job2.wait(timeout=120)
    assert sorted({r.step for r in history}) == list(range(saved + 1, saved + 6))
