"""The A1 grader's Slurm helpers (hpclab/exercise_checks.py) without a kernel (fast).

- `sbatch_options` reads a batch script as sbatch does: options only up to the first
  command, several per line, long and short forms;
- without a Slurm the grader says so and fails: `require_slurm` raises, naming what is
  missing, and `sbatch_test_only` / `run_batch_job` never pass a script unchecked.
The real Slurm runs of the A1 grader are in test_autograde / test_wrong_submissions.
"""

import shutil

import pytest

from hpclab import exercise_checks as checks

pytestmark = [pytest.mark.unit_a]


def test_options_are_read_as_sbatch_reads_them():
    script = ("#!/bin/bash\n"
              "#SBATCH --job-name=a1 --ntasks 2\n"
              "#SBATCH -t 5 -o a1-%j.out   # a comment after the options\n"
              "# an ordinary comment\n"
              "#SBATCH -c2 --exclusive\n"
              "\n"
              "srun python -m a1_hello\n"
              "#SBATCH --ntasks=7\n")      # after the first command: ignored by sbatch
    assert checks.sbatch_options(script) == {
        "job-name": "a1", "ntasks": "2", "time": "5", "output": "a1-%j.out",
        "cpus-per-task": "2", "exclusive": ""}


def test_a_line_that_is_no_option_is_an_error():
    with pytest.raises(ValueError, match="is not an option"):
        checks.sbatch_options("#!/bin/bash\n#SBATCH ntasks=2\n")


def test_without_sbatch_the_grader_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # no sbatch on it
    assert "`sbatch` is not on PATH" in checks.slurm_missing()
    with pytest.raises(AssertionError, match="NOT submitted"):
        checks.sbatch_test_only(tmp_path / "job.sh")
    with pytest.raises(AssertionError, match="no Slurm to check"):
        checks.run_batch_job(tmp_path / "job.sh")


def test_without_a_configuration_the_grader_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "missing.conf"))
    why = checks.slurm_missing()
    assert ("no Slurm configuration at" in why if shutil.which("sbatch")
            else "`sbatch` is not on PATH" in why), why
    with pytest.raises(AssertionError, match="NOT submitted"):
        checks.require_slurm()
