"""`hpclab vcluster up / status / down`: the nodes come up idle in Slurm with their own
hostnames, addresses and shaped links, and `down` leaves nothing of ours behind (no
namespace, link, process or file). Bad requests fail before anything is made.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from hpclab.cluster import vcluster as vc
from hpclab.cluster.vcluster_net import VClusterError, netns_list

pytestmark = [pytest.mark.slurm, pytest.mark.vcluster, pytest.mark.unit_a]

ROOT = Path(__file__).resolve().parents[2]


def ours_left(state: Path) -> list[str]:
    """Everything of a virtual cluster that exists now: namespaces, links, daemons, files."""
    left = [f"netns {n}" for n in netns_list() if n.startswith(vc.PREFIX)]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, check=False, text=True).stdout
    left += [f"link {line.split()[0]}" for line in links.splitlines()
             if line.startswith(vc.PREFIX)]
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(state) in part for part in proc.info["cmdline"] or []):
            left.append(f"process {proc.pid} {' '.join(proc.info['cmdline'])}")
    if state.exists():
        left.append(f"directory {state}")
    return left


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpclab", "vcluster", *args],
                          capture_output=True, check=False, text=True, timeout=timeout, cwd=ROOT)


def test_up_status_down_through_the_cli_leaves_nothing(tmp_path):
    state = tmp_path / "vc"
    try:
        up = cli("up", "--nodes", "2", "--cpus-per-node", "2", "--link", "1gbit",
                 "--state-dir", str(state))
        assert up.returncode == 0, up.stderr
        status = cli("status", "--state-dir", str(state))
        assert status.returncode == 0, status.stderr
        rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()
                if re.fullmatch(r"n\d+", line.split()[0] if line.split() else "")}
        assert set(rows) == {"n1", "n2"}
        assert rows["n1"][1:] == ["10.79.0.1", "hpcvc-n1", "1Gbit", "idle"]
        assert rows["n2"][1:] == ["10.79.0.2", "hpcvc-n2", "1Gbit", "idle"]
        env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
        srun = subprocess.run(["srun", "-N2", "--ntasks-per-node=1", "sh", "-c",
                               "echo $(hostname) $SLURM_NODEID"], capture_output=True, check=False,
                              text=True, timeout=60, env=env)
        assert sorted(srun.stdout.split("\n")[:2]) == ["n1 0", "n2 1"], srun.stderr
        with pytest.raises(VClusterError, match="already recorded"):
            vc.up(state_dir=state)
    finally:
        down = cli("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert ours_left(state) == []


@pytest.mark.parametrize("kwargs, words", [
    ({"nodes": 0}, "nodes must be"), ({"cpus_per_node": 0}, "cpus_per_node must be"),
    ({"link": "fast"}, "link must be a rate"), ({"subnet": "10.79.0.0/16"}, "must be a /24"),
])
def test_bad_requests_fail_before_anything_is_made(tmp_path, kwargs, words):
    state = tmp_path / "vc"
    with pytest.raises((ValueError, VClusterError), match=words):
        vc.up(state_dir=state, **kwargs)
    assert ours_left(state) == []


def test_a_subnet_this_machine_routes_is_refused(tmp_path):
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, check=False,
                            text=True).stdout.split("\n")
    used = next(line.split()[0] for line in routes if line and not line.startswith("default"))
    subnet = str(ipaddress.IPv4Network(used, strict=False).supernet(new_prefix=24)
                 if ipaddress.IPv4Network(used, strict=False).prefixlen > 24
                 else next(ipaddress.IPv4Network(used, strict=False).subnets(new_prefix=24)))
    with pytest.raises(VClusterError, match="overlaps this machine's route"):
        vc.up(state_dir=tmp_path / "vc", subnet=subnet)
    assert ours_left(tmp_path / "vc") == []


def test_without_root_the_error_says_so(tmp_path):
    # a real unprivileged process (nobody), not a patched geteuid
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from hpclab.cluster import vcluster; vcluster.preflight()")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-c", code], capture_output=True, check=False, text=True,
                         timeout=120, cwd="/")
    assert out.returncode != 0
    assert "needs root" in out.stderr and "sudo" in out.stderr
