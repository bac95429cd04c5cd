"""Exercise C1 and hpclab/comm/ring.py are the same ring, and the C1 grader reads messages.

- The exercise's solution (its solution and given cells, run as they are) and
  `hpclab.comm.all_reduce(algorithm="ring")` send the same chunk, of the same size, to
  the same neighbour at every step, read from traces on 2, 3 and 4 ranks.
- A submission that gets the right sums without the ring's messages (its steps call
  torch.distributed.all_reduce on a chunk) does not get full marks from the autograder:
  the result test passes, the message test does not.
"""

import json

import nbformat
import pytest
import torch

from hpclab import comm, grading
from hpclab.cluster.spawn import run_local

pytestmark = [pytest.mark.unit_c]

NOTEBOOK = "c1_ring_allreduce/c1_ring_allreduce.ipynb"
SOURCE = grading.EXERCISES / "source" / NOTEBOOK


def _cell(nb, grade_id: str) -> str:
    return next(c.source for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _solution_code() -> str:
    """The exercise's imports, solution and given ring, as the student's kernel runs them."""
    nb = nbformat.read(SOURCE, as_version=4)
    return "\n\n".join(_cell(nb, gid) for gid in ("setup", "ring_solution", "ring_given"))


def _both_traces(ctx, code, n):
    namespace = {"TIMEOUT": 30}
    exec(compile(code, str(SOURCE), "exec"), namespace)  # noqa: S102 (the exercise cells)
    with comm.tracing() as exercise:
        namespace["ring_all_reduce"](ctx, torch.ones(n))
    with comm.tracing() as library:
        comm.all_reduce(torch.ones(n), algorithm="ring")

    def steps(trace):
        return [(m.step, m.phase, m.src, m.dst, m.chunk, m.nbytes) for m in trace.messages]
    return steps(exercise), steps(library)


@pytest.mark.parametrize("p,n", [(2, 7), (3, 10), (4, 13), (4, 2)])
def test_exercise_and_library_send_the_same_chunks(p, n):
    for rank, (exercise, library) in enumerate(run_local(_both_traces, p, _solution_code(), n,
                                                          timeout=60)):
        assert exercise == library, f"rank {rank} of {p}: exercise {exercise}, ring.py {library}"
        assert len(library) == 2 * (p - 1) or n < p


CHEAT = '''def reduce_scatter_step(comm, chunks, s):
    if s == 0:                               # the right sums, none of the ring's messages
        for chunk in chunks:
            dist.all_reduce(chunk)


def all_gather_step(comm, chunks, s):
    pass
'''


@pytest.mark.notebooks
@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_all_reduce_inside_the_steps_does_not_get_full_marks(tmp_path, monkeypatch):
    nb = nbformat.read(grading.EXERCISES / "release" / NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "ring_solution":
            cell.source = CHEAT
    submission = tmp_path / "c1_ring_allreduce"
    submission.mkdir()
    nbformat.write(nb, submission / "c1_ring_allreduce.ipynb")
    for name, value in (("HPCLAB_SMALL", "1"), ("OMP_NUM_THREADS", "1"),
                        ("MPLCONFIGDIR", str(tmp_path / "mpl")),
                        ("IPYTHONDIR", str(tmp_path / "ipython"))):
        monkeypatch.setenv(name, value)
    [score] = grading.autograde(submission, keep=tmp_path / "graded")
    assert score.score == 3 and score.max_score == 5, score   # the sums' 3 points only
    graded = json.loads((tmp_path / "graded" / "c1_ring_allreduce" /
                         "c1_ring_allreduce.ipynb").read_text())
    failing = [c["metadata"]["nbgrader"]["grade_id"] for c in graded["cells"]
               if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failing == ["test_ring_messages"], failing
