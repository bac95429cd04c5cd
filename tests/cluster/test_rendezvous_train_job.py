"""train_job on this machine, started as srun would start it (SLURM_* variables, two
processes): a SIGUSR1 to one rank stops both at the same step with a checkpoint, the next
run resumes, and the parameters equal one process training the same global batches."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from hpclab.cluster.lab import train_job
from hpclab.cluster.net import free_port

pytestmark = [pytest.mark.unit_a, pytest.mark.cluster, pytest.mark.slow]

STEPS = 30


def start(tmp_path, port):
    procs = []
    for rank in range(2):
        env = {**os.environ, "SLURM_PROCID": str(rank), "SLURM_NTASKS": "2",
               "SLURM_LOCALID": str(rank), "SLURM_NODEID": "0",
               "SLURM_JOB_NODELIST": "localhost", "SLURM_STEP_TASKS_PER_NODE": "2",
               "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "hpclab.cluster.lab.train_job", "--steps", str(STEPS),
             "--ckpt", str(tmp_path / "ckpt"), "--out", str(tmp_path / "final.pt"),
             "--ckpt-every", "5", "--step-seconds", "0.1", "--timeout", "60"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def finish(procs) -> tuple[list[int], str]:
    out = [p.communicate(timeout=180)[0] for p in procs]
    return [p.returncode for p in procs], "".join(out)


def test_signal_checkpoint_resume_equals_one_process(tmp_path):
    procs = start(tmp_path, free_port())
    deadline = time.monotonic() + 120
    while not (tmp_path / "ckpt" / "ckpt-000005.pt").exists():
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        assert all(p.poll() is None for p in procs), finish(procs)[1]
        time.sleep(0.1)
    procs[1].send_signal(signal.SIGUSR1)          # only rank 1 is warned
    codes, text = finish(procs)
    assert codes == [train_job.EXIT_RESUMABLE] * 2, text
    stops = {rank: (int(at), why) for rank, at, why in
             re.findall(r"\[rank (\d)/2 \S+\] stopping at step (\d+) of 30 on (.+)", text)}
    assert stops["1"][1] == "SIGUSR1" and stops["0"][1] == "a peer signal", text
    step = stops["1"][0]
    assert stops["0"][0] == step, text          # both ranks stopped at the same step
    assert f"checkpoint ckpt-{step:06d}.pt written" in text, text
    assert not (tmp_path / "final.pt").exists()

    codes, text = finish(start(tmp_path, free_port()))
    assert codes == [0, 0], text
    assert f"resumed from ckpt-{step:06d}.pt at step {step}" in text, text
    got = torch.load(tmp_path / "final.pt", weights_only=True)
    expected = train_job.single_process(train_job.Config(steps=STEPS))
    for name in expected:
        torch.testing.assert_close(got[name], expected[name])
