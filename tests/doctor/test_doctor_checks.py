"""`hpclab doctor`'s checks on this machine: each one PASS, FAIL (with a fix) or ABSENT, and
the exit status nonzero only for something configured and broken. Also the key-file
permission helpers (connection files must be owner-only)."""

from __future__ import annotations

import json
import socket
import stat
import sys

import psutil
import pytest
import torch

from hpclab.cluster import doctor
from hpclab.cluster.errors import ClusterError

pytestmark = [pytest.mark.unit_a]


@pytest.fixture
def profile(tmp_path, monkeypatch):
    """An empty ipyparallel profile in a private IPYTHONDIR (and Jupyter runtime dir)."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    prof = tmp_path / "ipython" / "profile_default"
    (prof / "security").mkdir(parents=True, mode=0o700)
    (tmp_path / "runtime").mkdir()
    return prof


@pytest.fixture
def no_slurm_no_gpu_tools(tmp_path, monkeypatch):
    """PATH without sbatch or nvidia-smi: a laptop, as far as the doctor can tell."""
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))


def write_key_file(path, mode):
    path.write_text(json.dumps({"key": "0123abcd", "url": "tcp://127.0.0.1:5555"}))
    path.chmod(mode)
    return path


def test_versions_match_the_running_python_and_torch():
    py, tc = doctor.check_python(), doctor.check_torch()
    assert py.status == "PASS" and sys.executable in py.detail
    assert tc.status == "PASS" and torch.__version__ in tc.detail


def test_cuda_and_nccl_follow_torch(no_slurm_no_gpu_tools):
    cuda, nccl = doctor.check_cuda(), doctor.check_nccl()
    expected = "PASS" if torch.cuda.is_available() else "ABSENT"
    assert cuda.status == expected and nccl.status == expected


def test_no_slurm_is_absent_not_failed(no_slurm_no_gpu_tools):
    check = doctor.check_slurm()
    assert check.status == "ABSENT" and "sbatch" in check.detail


def test_slurm_controller_down_fails_with_the_fix(tmp_path, monkeypatch):
    # A real Slurm client talking to a controller that is not running.
    from hpclab.cluster.net import free_port
    host = socket.gethostname().split(".")[0]
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"ClusterName=dead\nSlurmctldHost={host}\nSlurmctldPort={free_port()}\n"
                    "AuthType=auth/munge\nMpiDefault=none\n"
                    f"NodeName={host} CPUs=1 State=UNKNOWN\nPartitionName=p Nodes={host}\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    check = doctor.check_slurm()
    assert check.status == "FAIL", check.line()
    assert "scontrol ping" in check.fix and "fix:" in check.line()


def test_network_names_a_reachable_address():
    check = doctor.check_network()
    addresses = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    outward = [a for a in addresses if "." in a and not a.startswith("127.")]
    assert check.status == ("PASS" if outward else "ABSENT")
    if outward:
        ip = check.detail.split("controller would listen on ")[1].split(";")[0]
        assert ip in outward


def test_controller_on_every_interface_is_flagged(profile):
    assert doctor.check_ipyparallel(profile).status == "PASS"
    (profile / "ipcluster_config.py").write_text("c.Cluster.controller_ip = '*'\n")
    check = doctor.check_ipyparallel(profile)
    assert check.status == "FAIL" and "every interface" in check.detail
    assert "controller_ip" in check.fix


def test_readable_key_file_fails_and_fix_makes_it_private(profile):
    key = write_key_file(profile / "security" / "ipcontroller-x-client.json", 0o644)
    cluster_file = profile / "security" / "cluster-x.json"           # no key: not a secret
    cluster_file.write_text(json.dumps({"cluster": {"n": 2}}))
    cluster_file.chmod(0o644)
    check = doctor.check_permissions(profile, fix=False)
    assert check.status == "FAIL" and "chmod 600" in check.fix
    assert stat.S_IMODE(key.stat().st_mode) == 0o644                  # fix=False: untouched
    assert doctor.check_permissions(profile, fix=True).status == "PASS"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cluster_file.stat().st_mode) == 0o644


def test_kernel_connection_files_are_checked_too(profile, tmp_path):
    kernel = write_key_file(tmp_path / "runtime" / "kernel-1.json", 0o640)
    assert kernel in doctor.key_files(profile)
    assert doctor.secure_profile(profile, fix=True) == []
    assert stat.S_IMODE(kernel.stat().st_mode) == 0o600


def test_ensure_private(tmp_path):
    f = write_key_file(tmp_path / "c.json", 0o600)
    assert doctor.ensure_private(f) is False
    f.chmod(0o604)
    with pytest.raises(ClusterError, match="readable by others.*chmod 600"):
        doctor.ensure_private(f, fix=False)
    assert doctor.ensure_private(f) is True and stat.S_IMODE(f.stat().st_mode) == 0o600


def test_exit_status_means_something_configured_is_broken(profile, no_slurm_no_gpu_tools,
                                                          capsys):
    argv = ["--no-smoke", "--profile-dir", str(profile)]
    assert doctor.main(argv) == 0                       # absent Slurm/GPU: not a failure
    out = capsys.readouterr().out
    assert "ABSENT slurm" in out and "FAIL" not in out
    write_key_file(profile / "security" / "ipcontroller-y-engine.json", 0o644)
    assert doctor.main(argv) == 1
    out = capsys.readouterr().out
    assert "FAIL   permissions" in out and "fix:" in out and "broken: permissions" in out
    assert doctor.main(argv + ["--fix"]) == 0


def test_smoke_test_through_a_missing_scheduler_fails_with_the_fix(no_slurm_no_gpu_tools):
    check = doctor.check_smoke("slurm", timeout=30)
    assert check.status == "FAIL" and "not found on PATH" in check.detail + check.fix


def test_every_line_has_a_known_status(no_slurm_no_gpu_tools, profile):
    for check in doctor.run_checks(doctor_args(profile)):
        assert check.status in ("PASS", "FAIL", "ABSENT"), check
        assert check.line().startswith(check.status)


def doctor_args(profile):
    import argparse
    return argparse.Namespace(profile_dir=str(profile), fix=False, no_smoke=True,
                              engines="local", partition="", time="", timeout=60.0)


def test_cli_dispatches_to_doctor(no_slurm_no_gpu_tools, profile, capsys):
    from hpclab.cli import main
    assert main(["doctor", "--no-smoke", "--profile-dir", str(profile)]) == 0
    assert "PASS   python" in capsys.readouterr().out
