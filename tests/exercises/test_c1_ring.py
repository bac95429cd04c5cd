"""Exercise C1 and hpclab/comm/ring.py are the same ring, and the C1 grader reads messages.

- The exercise's solution (its solution and given cells, run as they are) and
  `hpclab.comm.all_reduce(algorithm="ring")` send the same chunk, of the same size, to
  the same neighbour at every step, read from traces on 2, 3 and 4 ranks.

Wrong submissions of C1 (a step that calls torch.distributed.all_reduce on a chunk, a
blocking send before the receive) and an equivalent one are graded with the others':
wrong_submissions/c1_ring_allreduce.py, run by test_wrong_submissions.py.
"""

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
    """The exercise's imports, parameters, solution and given ring, as the student's kernel
    runs them."""
    nb = nbformat.read(SOURCE, as_version=4)
    return "\n\n".join(_cell(nb, gid) for gid in ("setup", "parameters", "ring_solution",
                                                   "ring_given"))


def _both_traces(ctx, code, n):
    namespace = {}
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

