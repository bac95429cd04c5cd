"""Shared by the exercise tests: grade only the assignments that the selected tests need.

Autograding runs real kernels (seconds per notebook), so the module fixtures grade the
assignments named by the tests that this pytest run selected (`-k b2_adam` grades one),
and every assignment when the whole directory runs.

Exercises whose grader submits real jobs (SLURM_EXERCISES) are graded on the slurm tier's
single-node Slurm: when a selected slow test grades one, the `slurm` fixture of
tests/slurm/conftest.py starts it (`.ci/slurm/start`) and exports its SLURM_CONF, which
the notebooks' kernels inherit. If it cannot start, the session goes on without it and
those exercises' graders fail saying that there is no Slurm (they never pass unchecked).
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from hpclab import grading

_spec = importlib.util.spec_from_file_location(
    "hpclab_tests_slurm_conftest", Path(__file__).resolve().parents[1] / "slurm" / "conftest.py")
_slurm_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_slurm_conftest)
slurm = _slurm_conftest.slurm      # the slurm tier's fixture, shared, not copied

SLURM_EXERCISES = {"a1_slurm_job"}


@pytest.fixture(scope="session", autouse=True)
def _slurm_for_exercises(request):
    """Start the test Slurm when this run grades an exercise that submits jobs."""
    graded = {v for item in request.session.items if item.get_closest_marker("slow")
              and hasattr(item, "callspec") for v in item.callspec.params.values()}
    if graded & SLURM_EXERCISES:
        try:
            request.getfixturevalue("slurm")
        except pytest.fail.Exception as exc:
            warnings.warn(f"no test Slurm ({exc}); {sorted(SLURM_EXERCISES)} will fail "
                          "with the grader's 'no Slurm' message", stacklevel=1)


@pytest.fixture(scope="session")
def selected(request):
    """selected(argname): the values of parametrize argument `argname` among this run's tests."""
    def values(argname: str) -> set:
        return {item.callspec.params[argname] for item in request.session.items
                if hasattr(item, "callspec") and argname in item.callspec.params}
    return values


@pytest.fixture(scope="session")
def only():
    """only(folder, assignments, tmp): a copy of `folder` holding just those assignments."""
    def copy(folder: Path, assignments: set[str], tmp: Path) -> Path:
        out = tmp / folder.name
        out.mkdir(parents=True)
        for name in sorted(assignments):
            shutil.copytree(folder / name, out / name)
        return out
    return copy


@pytest.fixture(scope="session")
def autograde_split():
    """autograde_split(folder, keep=None, workers=2): grading.autograde of every sub-folder
    of `folder` (an assignment's or a student's), shared out over `workers` processes.

    nbgrader grades one notebook at a time in one process (it changes directory and keeps
    one gradebook), so each process grades its share in a course directory of its own and
    the Scores are put together; the executed notebooks of all shares land in `keep`.
    """
    def grade(folder: Path, keep: Path | None = None, workers: int = 2) -> list:
        parts = sorted(p for p in Path(folder).iterdir() if p.is_dir())
        shares = [parts[i::workers] for i in range(workers) if parts[i::workers]]
        roots = []
        for k, share in enumerate(shares):
            root = Path(folder).parent / f"{Path(folder).name}-share{k}" / Path(folder).name
            root.mkdir(parents=True)
            for part in share:
                (root / part.name).symlink_to(part.resolve(), target_is_directory=True)
            roots.append(root)
        keeps = [None if keep is None else Path(keep).parent / f"{Path(keep).name}-share{k}"
                 for k in range(len(roots))]
        with ProcessPoolExecutor(len(roots), mp_context=get_context("spawn")) as pool:
            jobs = [pool.submit(grading.autograde, root, keep=k) for root, k in zip(roots, keeps)]
            scores = [s for job in jobs for s in job.result()]
        if keep is not None:
            for k in keeps:
                shutil.copytree(k, keep, dirs_exist_ok=True)
        return scores
    return grade
