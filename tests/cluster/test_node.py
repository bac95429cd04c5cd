"""node_report agrees with the operating system and torch (no engines needed)."""

from __future__ import annotations

import os
import socket

import psutil
import pytest
import torch

from hpclab.cluster.engine import describe
from hpclab.cluster.net import interface_of, outward_ip
from hpclab.cluster.node import nic_table, node_report

pytestmark = [pytest.mark.unit_a]


def test_node_report_matches_the_system():
    r = node_report()
    assert r["host"] == socket.gethostname()
    assert r["cores_logical"] == os.cpu_count()
    assert r["cores_usable"] == len(os.sched_getaffinity(0))
    assert abs(r["mem_total_gb"] - psutil.virtual_memory().total / 2**30) < 1e-6
    assert [n["name"] for n in r["nics"]] == sorted(psutil.net_if_addrs())
    assert len(r["gpus"]) == torch.cuda.device_count()
    assert any(n["loopback"] for n in r["nics"])
    table = nic_table(r)
    assert table.splitlines()[0].split() == ["name", "ipv4", "up", "speed", "mtu"]
    assert len(table.splitlines()) == len(r["nics"]) + 1


def test_outward_ip_belongs_to_an_interface_of_this_host():
    ip = outward_ip()
    socket.inet_aton(ip)                                # a valid IPv4 address
    if not ip.startswith("127."):
        assert interface_of(ip) is not None


def test_describe_reports_this_process():
    d = describe()
    assert d["pid"] == os.getpid() and d["torch"] == torch.__version__
    assert d["ip"] == outward_ip()
