"""The cluster lab on the virtual cluster: the shipped sbatch scripts, submitted as a user
would, train across n1 and n2 and end with the parameters of one process training the
same global batches (the reference, hpclab.cluster.lab.train_job.single_process with
torch.optim.SGD); the job chain is interrupted by its time limit and still ends there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from hpclab.cluster.lab import train_job

pytestmark = [pytest.mark.slurm, pytest.mark.vcluster, pytest.mark.cluster, pytest.mark.unit_a]

LAB = Path(train_job.__file__).parent


def submit(script: str, cwd: Path, **env) -> int:
    """`sbatch <script>` from `cwd` with this Python's environment (the job inherits it)."""
    full = {**os.environ, **env,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["sbatch", "--parsable", str(LAB / script)], cwd=cwd, env=full,
                         capture_output=True, text=True, timeout=30, check=True)
    return int(out.stdout.strip().split(";")[0])


def wait_queue_empty(timeout: float) -> None:
    """Until no job is pending or running (a chain queues its next link before it ends)."""
    deadline = time.monotonic() + timeout
    queue = ""
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
        if not queue:
            return
        time.sleep(1)
    subprocess.run(["scancel", "--partition=debug"], timeout=10, check=False)
    raise TimeoutError(f"jobs still queued after {timeout:g} s: {queue}")


def outputs(cwd: Path, name: str) -> list[tuple[int, str]]:
    """(job id, output) of each job called `name`, in submission order."""
    found = [(int(p.stem.rsplit("-", 1)[1]), p.read_text()) for p in cwd.glob(f"{name}-*.out")]
    return sorted(found)


def assert_same_as_one_process(path: Path, steps: int) -> None:
    got = torch.load(path, weights_only=True)
    expected = train_job.single_process(train_job.Config(steps=steps))
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], msg=lambda m, n=name: f"{n}: {m}")


def rank_lines(text: str) -> dict[int, str]:
    """{rank: host} from train_job's `[rank r/p host] host h rank r of p ...` lines."""
    found = re.finditer(r"\] host (\S+) rank (\d+) of 4", text)
    return {int(m.group(2)): m.group(1) for m in found}


@pytest.mark.parametrize("script, launcher", [("srun.sbatch", "slurm"),
                                              ("torchrun.sbatch", "torchrun")])
def test_job_trains_on_both_nodes_like_one_process(vcluster, tmp_path, script, launcher):
    job = submit(script, tmp_path, STEPS="20", CKPT=str(tmp_path / "ckpt"),
                 OUT=str(tmp_path / "final.pt"))
    wait_queue_empty(120)
    [(job_id, text)] = outputs(tmp_path, f"lab-{script.split('.')[0]}")
    assert job_id == job
    assert rank_lines(text) == {0: "n1", 1: "n1", 2: "n2", 3: "n2"}, text
    assert f"via {launcher} master {vcluster.nodes[0]['ip']}:" in text
    assert "finished 20 steps" in text, text
    assert_same_as_one_process(tmp_path / "final.pt", 20)


CHAIN_STEPS = 100       # x 0.5 s: longer than a link lives before its warning (15..45 s)


def test_job_chain_survives_its_time_limit(vcluster, tmp_path):
    first = submit("chain.sbatch", tmp_path, STEPS=str(CHAIN_STEPS),
                   CKPT=str(tmp_path / "ckpt"), OUT=str(tmp_path / "final.pt"),
                   TRAIN_ARGS="--step-seconds 0.5")
    wait_queue_empty(300)
    links = outputs(tmp_path, "lab-chain")
    assert links[0][0] == first
    assert len(links) >= 2, links
    report = "\n".join(f"--- link {j}\n{t}" for j, t in links)
    for (job, text), (next_job, next_text) in pairwise(links):
        # warned by Slurm before the limit, checkpointed, queued the next link ...
        assert "USR1, the time limit is near" in text, report
        stop = re.search(r"stopping at step (\d+) of \d+ on SIGUSR1", text)
        assert stop, report
        assert f"checkpoint ckpt-{int(stop.group(1)):06d}.pt written" in text, report
        assert f"link {job}: checkpointed; link {next_job} resumes" in text, report
        # ... which resumed from exactly there
        assert f"resumed from ckpt-{int(stop.group(1)):06d}.pt at step {stop.group(1)}" \
            in next_text, report
    assert f"finished {CHAIN_STEPS} steps" in links[-1][1], report
    assert_same_as_one_process(tmp_path / "final.pt", CHAIN_STEPS)
