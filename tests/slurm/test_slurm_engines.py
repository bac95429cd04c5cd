"""hpclab.connect(engines="slurm") on a real Slurm: engines in a batch job, a data-parallel
smoke test on them, the teardown, and the errors a student meets (request too large,
controller down, job stuck in the queue, walltime nearly over).

Run: `pytest tests/slurm -m slurm` (the `slurm` fixture starts a single-node Slurm).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch

import hpclab
from hpclab.cluster.errors import ClusterError, ClusterTimeout
from hpclab.cluster.slurm import SlurmLauncher, WalltimeWarning, reachable_ip

pytestmark = [pytest.mark.slurm, pytest.mark.unit_a, pytest.mark.cluster, pytest.mark.slow]

LR, STEPS, TOL = 0.1, 5, 1e-6


def queued(job_name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", job_name, "-o", "%i %T"], capture_output=True,
                         text=True, timeout=30, check=False)
    return out.stdout.splitlines()


def wait_gone(job_name: str, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := queued(job_name)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def engines_of_job(job_id: str) -> list[int]:
    """pids of ipengine processes still running inside Slurm job job_id."""
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("ipengine" in part for part in proc.info["cmdline"] or []) and \
                    proc.environ().get("SLURM_JOB_ID") == job_id:
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return pids


def data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(16, 1, generator=g)
    return x, y


def reference_training() -> list[float]:
    """One process, full batch, plain SGD: what every data-parallel rank must end with."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = data()
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()


def data_parallel(ctx, lr, steps):
    """Each rank: its shard of the batch, local gradients, all-reduce average, SGD step."""
    import torch.distributed as dist

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = data()
    shard = slice(ctx.rank, None, ctx.world_size)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x[shard]), y[shard]).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
            p.grad /= ctx.world_size
        opt.step()
    total = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(total)
    return {"params": torch.cat([p.detach().flatten() for p in model.parameters()]).tolist(),
            "sum": total.item(), "job": os.environ.get("SLURM_JOB_ID"),
            "host": ctx.host, "backend": ctx.backend}


def ddp_training(ctx, lr, steps):
    """The same training through hpclab's own DDP (bucketed ring all-reduce in backward)."""
    from hpclab.parallel import DistributedDataParallel

    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(3, 1), algorithm="ring")
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = data()
    shard = slice(ctx.rank, None, ctx.world_size)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x[shard]), y[shard]).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()


def test_two_engines_in_a_slurm_job_train_like_one_process(slurm):
    launcher = SlurmLauncher(partition="debug", time="2", warn_walltime_s=600)
    with hpclab.connect(2, engines=launcher, timeout=120) as cluster:
        out = cluster.run(data_parallel, LR, STEPS, timeout=120)
        ddp = cluster.run(ddp_training, LR, STEPS, timeout=120)
        jobs = launcher.jobs()
        with pytest.warns(WalltimeWarning, match="save a checkpoint"):
            message = launcher.check_walltime()   # 2 min walltime < 600 s threshold
    assert "ends in" in message
    assert [r["sum"] for r in out] == [3.0, 3.0]           # 1 + 2, through torch.distributed
    assert len({r["job"] for r in out}) == 1 and out[0]["job"] is not None
    assert jobs and jobs[0]["id"] == out[0]["job"] and jobs[0]["state"] == "RUNNING"
    ref = reference_training()
    for r in out:
        assert r["params"] == pytest.approx(ref, abs=TOL)
    for params in ddp:
        assert params == pytest.approx(ref, abs=TOL)
    # teardown: the job leaves the queue and none of its engines survive
    assert wait_gone(launcher.job_name) == []
    assert engines_of_job(out[0]["job"]) == []


def test_controller_listens_on_a_reachable_address_not_loopback(slurm):
    kwargs = SlurmLauncher(partition="debug").cluster_kwargs(2)
    ip = kwargs["controller_ip"]
    assert ip == reachable_ip() and not ip.startswith("127.") and ip != "*"
    assert kwargs["engine_launcher_class"] == "slurm"


def test_request_larger_than_partition_is_an_error_not_a_pending_job(slurm):
    too_big = SlurmLauncher(partition="debug", nodes=2)     # the partition has one node
    with pytest.raises(ClusterError) as err:
        hpclab.connect(2, engines=too_big, timeout=60)
    assert not isinstance(err.value, ClusterTimeout)
    assert "Requested node configuration is not available" in str(err.value)
    assert "sinfo" in str(err.value)
    assert queued(too_big.job_name) == []                   # nothing was submitted


def test_gpus_on_a_cpu_partition_name_the_missing_gpus(slurm):
    with pytest.raises(ClusterError, match="no GPUs"):
        hpclab.connect(2, engines="slurm", partition="debug", gpus_per_node=2, timeout=60)


def test_controller_down_is_translated(slurm, tmp_path, monkeypatch):
    # A client configured for a controller that is not running (a dead port): what users
    # see when slurmctld is down, without stopping the Slurm other tests use.
    from hpclab.cluster.net import free_port
    conf = Path(slurm).read_text().replace("SlurmctldPort=", f"SlurmctldPort={free_port()}#")
    (tmp_path / "slurm.conf").write_text(conf)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    with pytest.raises(ClusterError) as err:
        hpclab.connect(2, engines="slurm", partition="debug", timeout=60)
    text = str(err.value)
    assert "slurmctld" in text and "scontrol ping" in text and "does not answer" in text


def test_job_stuck_in_queue_times_out_with_the_reason_and_is_cancelled(slurm):
    stuck = SlurmLauncher(partition="debug", time="5", extra=["--begin=now+1hour"])
    with pytest.raises(ClusterTimeout) as err:
        hpclab.connect(2, engines=stuck, timeout=8)
    text = str(err.value)
    assert "PENDING" in text and "BeginTime" in text and stuck.job_name in text
    assert wait_gone(stuck.job_name) == []


def test_doctor_sees_the_running_slurm(slurm):
    from hpclab.cluster.doctor import check_slurm, check_smoke
    check = check_slurm()
    assert check.status == "PASS" and "debug" in check.detail, check.line()
    smoke = check_smoke("slurm", timeout=120, partition="debug", time="5")   # the admin's check
    assert smoke.status == "PASS" and "2 slurm engines" in smoke.detail, smoke.line()


def test_deploy_profile_encrypts_traffic_and_keeps_keys_private(slurm, tmp_path, monkeypatch):
    """course/deploy/ipyparallel/ as a student's profile: CurveZMQ on, key files 0600."""
    import json
    import shutil
    import stat
    root = Path(__file__).resolve().parents[2]
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    for f in (root / "course" / "deploy" / "ipyparallel").glob("*.py"):
        shutil.copy(f, profile)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    with hpclab.connect(2, engines="slurm", partition="debug", time="5", timeout=120) as c:
        sums = c.run(lambda ctx: ctx.rank)
        files = sorted((profile / "security").glob("ipcontroller-*.json"))
        facts = [(json.loads(f.read_text()), stat.S_IMODE(f.stat().st_mode)) for f in files]
    assert sums == [0, 1]
    assert len(facts) == 2                                   # client + engine connection files
    for info, mode in facts:
        assert mode == 0o600
        assert info.get("curve_serverkey")                   # encrypted transport is on


def test_engines_that_die_time_out_with_their_log(slurm):
    # PYTHONHOME pointing nowhere makes every engine's Python die at start-up; the job ends.
    broken = SlurmLauncher(partition="debug", time="5",
                           extra=["--export=ALL,PYTHONHOME=/nonexistent"])
    with pytest.raises(ClusterTimeout) as err:
        hpclab.connect(2, engines=broken, timeout=20)
    text = str(err.value)
    assert "no longer in the queue" in text and str(broken.log_path) in text
    assert "last lines" in text                         # the engine log's tail is quoted
    assert wait_gone(broken.job_name) == []
