"""The launcher seam and connect()'s input checks: no engines are started here."""

from __future__ import annotations

import pytest

import hpclab
from hpclab.cluster import ClusterError, connect
from hpclab.cluster.info import ClusterInfo
from hpclab.cluster.launchers import EngineLauncher, LocalLauncher, get_launcher

pytestmark = [pytest.mark.unit_a]


def test_hpclab_connect_is_cluster_connect():
    assert hpclab.connect is connect
    assert hpclab.Cluster is hpclab.cluster.Cluster


def test_local_launcher_follows_the_protocol():
    launcher = get_launcher("local")
    assert isinstance(launcher, LocalLauncher)
    assert isinstance(launcher, EngineLauncher)
    assert launcher.remote is False
    assert launcher.cluster_kwargs(2)["engine_launcher_class"] == "local"
    assert "did not register" in launcher.diagnose(3.0)


@pytest.mark.parametrize("name", ["slurm", "mpi"])
def test_other_launchers_load_lazily_and_follow_the_protocol(name):
    launcher = get_launcher(name)
    assert isinstance(launcher, EngineLauncher)
    assert launcher.name == name
    assert isinstance(launcher.cluster_kwargs(2), dict)


def test_unknown_launcher_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"engines must be one of \['local', 'mpi', 'slurm'\]"):
        get_launcher("kubernetes")


def test_launcher_object_passes_through_but_not_with_kwargs():
    launcher = LocalLauncher(max_engines=3)
    assert get_launcher(launcher) is launcher
    with pytest.raises(ValueError, match="only be given with a launcher name"):
        get_launcher(launcher, partition="gpu")


def test_bad_launcher_kwargs_are_a_value_error():
    with pytest.raises(ValueError, match="bad keyword arguments for the 'local' launcher"):
        get_launcher("local", partition="gpu")


def test_local_preflight_refuses_absurd_sizes():
    with pytest.raises(ClusterError, match="n=500 local engines exceeds max_engines=64"):
        LocalLauncher().preflight(500)
    LocalLauncher().preflight(2)


@pytest.mark.parametrize("n", [0, -1, 2.5, "2", True])
def test_connect_rejects_bad_n(n):
    with pytest.raises(ValueError, match=r"n \(number of engines\) must be an int >= 1"):
        connect(n=n)


def test_connect_rejects_bad_env_n(monkeypatch):
    monkeypatch.setenv("HPCLAB_ENGINES", "0")
    with pytest.raises(ValueError, match="got 0"):
        connect()


@pytest.mark.parametrize("timeout", [0, -5, "60"])
def test_connect_rejects_bad_timeout(timeout):
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        connect(n=1, timeout=timeout)


def test_connect_rejects_unknown_engines_and_backend():
    with pytest.raises(ValueError, match="engines must be one of"):
        connect(n=1, engines="cloud")
    with pytest.raises(ValueError, match="backend must be one of"):
        connect(n=1, backend="mpi")


def test_attach_with_launcher_options_is_refused():
    with pytest.raises(ValueError, match="attaching .* uses the engines already running"):
        connect(profile="default", partition="gpu")


def test_attach_to_missing_cluster_says_how_to_start_one(tmp_path):
    with pytest.raises(ClusterError, match=r"(?s)could not attach.*ipcluster start"):
        connect(connection_file=str(tmp_path / "nope.json"), timeout=2)


def test_info_table_renders_text_and_html():
    rows = ClusterInfo([{"rank": 0, "host": "node<1>", "pid": 7, "device": "cpu", "cpus": 2,
                         "mem_total_gb": 3.14159, "rss_gb": None, "gpus": [],
                         "torch": "2.x", "status": "idle"}])
    text = repr(rows)
    assert text.splitlines()[0].split() == ["rank", "host", "pid", "device", "cpus",
                                            "mem_total_gb", "rss_gb", "gpus", "torch",
                                            "status"]
    assert "3.14" in text and "?" in text
    assert "node&lt;1&gt;" in rows._repr_html_()
    assert rows.column("pid") == [7]
