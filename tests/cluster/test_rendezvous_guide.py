"""The lab guide shows the shipped sbatch scripts unchanged, and they are the ones the
virtual-cluster tests submit (tests/vcluster/test_cluster_lab.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hpclab.cluster.lab import train_job

pytestmark = [pytest.mark.unit_a]

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "course" / "library" / "cluster-lab.md"
LAB = Path(train_job.__file__).parent
SCRIPTS = sorted(p.name for p in LAB.glob("*.sbatch"))


def guide_blocks() -> dict[str, str]:
    """{path: code} for every block the guide marks `<!-- file: path -->`."""
    text = GUIDE.read_text()
    return {m.group(1): m.group(2) for m in re.finditer(
        r"<!-- file: (\S+) -->\n```\w*\n(.*?)```\n", text, flags=re.DOTALL)}


def test_guide_shows_every_script_unchanged():
    blocks = guide_blocks()
    assert SCRIPTS == ["chain.sbatch", "srun.sbatch", "torchrun.sbatch"]
    assert sorted(blocks) == [f"hpclab/cluster/lab/{name}" for name in SCRIPTS]
    for path, code in blocks.items():
        assert code == (ROOT / path).read_text(), f"{GUIDE.name} shows an old copy of {path}"


def test_the_tests_submit_the_scripts_the_guide_shows():
    tests = (ROOT / "tests" / "vcluster" / "test_cluster_lab.py").read_text()
    submitted = set(re.findall(r'"(\w+\.sbatch)"', tests))
    assert submitted == set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_valid_bash(name):
    subprocess.run(["bash", "-n", str(LAB / name)], check=True, timeout=10)


def test_train_job_takes_the_options_the_scripts_pass(capsys):
    with pytest.raises(SystemExit):
        train_job.main(["--help"])
    help_text = capsys.readouterr().out
    passed = set()
    for name in SCRIPTS:
        text = (LAB / name).read_text()
        passed |= set(re.findall(r"(--[a-z-]+) \"\$", text.split("train_job", 1)[1]))
    assert passed == {"--steps", "--ckpt", "--out"}
    for option in passed | {"--step-seconds"}:      # chain.sbatch's TRAIN_ARGS
        assert option in help_text, option
