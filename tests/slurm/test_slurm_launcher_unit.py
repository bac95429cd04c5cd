"""SlurmLauncher without a scheduler: the batch script it writes, its validation, its
reading of Slurm's durations and messages (fast; no daemons needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpclab.cluster.errors import ClusterError
from hpclab.cluster.slurm import SlurmLauncher
from hpclab.cluster.slurm_diagnostics import explain_slurm_error, parse_slurm_time, slurm_command

pytestmark = [pytest.mark.unit_a]


@given(st.integers(0, 30), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_parse_slurm_time_matches_timedelta(d, h, m, s):
    expected = timedelta(days=d, hours=h, minutes=m, seconds=s).total_seconds()
    assert parse_slurm_time(f"{d}-{h:02d}:{m:02d}:{s:02d}") == expected
    if d == 0:
        assert parse_slurm_time(f"{h}:{m:02d}:{s:02d}") == expected
        if h == 0:
            assert parse_slurm_time(f"{m}:{s:02d}") == expected     # squeue's "9:50"


def test_parse_slurm_time_special_values():
    assert parse_slurm_time("30") == 30 * 60          # a bare number is minutes (sbatch -t 30)
    assert parse_slurm_time("UNLIMITED") is None
    assert parse_slurm_time("2-5") == 2 * 86400 + 5 * 3600   # days-hours


def test_batch_script_requests_what_was_asked():
    launcher = SlurmLauncher(nodes=2, gpus_per_node=4, partition="gpu", time="01:30:00",
                             account="course42", cpus_per_task=8)
    script = launcher.batch_template(8)
    for line in ["--nodes=2", "--ntasks=8", "--ntasks-per-node=4", "--gpus-per-node=4",
                 "--partition=gpu", "--time=01:30:00", "--account=course42",
                 "--cpus-per-task=8", f"--job-name={launcher.job_name}",
                 f"--output={launcher.log_path}", "--export=ALL"]:
        assert f"#SBATCH {line}\n" in script
    assert script.startswith("#!/bin/sh\n")
    # ipyparallel fills this in
    assert script.rstrip().endswith("srun --export=ALL {program_and_args}")


def test_cluster_kwargs_keep_the_batch_file_out_of_the_notebook_directory(tmp_path):
    launcher = SlurmLauncher(log_dir=str(tmp_path / "logs"), controller_ip="10.0.0.5")
    kwargs = launcher.cluster_kwargs(2)
    conf = kwargs["config"].SlurmEngineSetLauncher
    assert conf.batch_file_name == str(tmp_path / "logs" / f"{launcher.job_name}.sbatch")
    assert kwargs["controller_ip"] == kwargs["controller_location"] == "10.0.0.5"
    assert (tmp_path / "logs").stat().st_mode & 0o077 == 0          # logs: owner only


@pytest.mark.parametrize("kwargs, match", [
    ({"nodes": 0}, "nodes must be a positive int, got 0"),
    ({"gpus_per_node": -1}, "gpus_per_node must be an int >= 0, got -1"),
    ({"time": "1h"}, "time must be a Slurm duration"),
    ({"partition": "gpu; rm -rf ~"}, "partition must be a plain Slurm name"),
])
def test_bad_requests_name_the_value_and_the_rule(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SlurmLauncher(**kwargs)


def test_engines_must_spread_evenly_and_one_per_gpu():
    with pytest.raises(ValueError, match="n=3 engines cannot be spread evenly over nodes=2"):
        SlurmLauncher(nodes=2).tasks_per_node(3)
    with pytest.raises(ValueError, match="one engine per GPU"):
        SlurmLauncher(nodes=1, gpus_per_node=2).tasks_per_node(4)
    assert SlurmLauncher(nodes=2, gpus_per_node=4).tasks_per_node(8) == 4


def test_slurm_messages_are_translated():
    text = explain_slurm_error("sbatch: error: Batch job submission failed: Unable to contact "
                               "slurm controller (connect failure)")
    assert "slurmctld" in text and "scontrol ping" in text and "(Slurm said:" in text
    assert "sinfo" in explain_slurm_error("allocation failure: Requested node configuration "
                                          "is not available")
    assert explain_slurm_error("something new").startswith("Slurm refused the request")


def test_missing_slurm_commands_are_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match="not a Slurm submit host"):
        slurm_command(["sbatch", "--version"])
