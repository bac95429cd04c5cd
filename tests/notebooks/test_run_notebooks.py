"""Every notebook under notebooks/ runs top to bottom with small sizes (HPCLAB_SMALL=1).

Run: `pytest tests/notebooks -m notebooks --durations=0` (the durations are the suite's
time budget; aim under 15 minutes on 2 cores). Notebooks are discovered by glob, so a
lecture that lands is tested without touching this file. Each notebook runs in a fresh
kernel, in a scratch working directory, with its own MPLCONFIGDIR and IPYTHONDIR, and gets
at most NOTEBOOK_TIMEOUT_S; each executed lecture is exported to static HTML (what
students without a cluster account read) and must carry its figures. The exercises (exercises/source/ and exercises/release/) are
executed top to bottom by tests/exercises through nbgrader's autograder instead — the
sources with no failing cell, the student copies with only their test cells failing — so
that the suite does not pay for running them twice.

Measured: all 10 lectures and demos plus tests/exercises took 15.3 min with the 2 cores
shared by ~8 concurrent test runs (load average 11-15); the exercises' share ~5 min.
"""

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

pytestmark = [pytest.mark.notebooks, pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK_TIMEOUT_S = 600
UNIT = {"a": pytest.mark.unit_a, "b": pytest.mark.unit_b, "c": pytest.mark.unit_c,
        "d": pytest.mark.unit_d}


def _has_code(path):
    return any(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)


def notebooks_to_run():
    # a page without code cells (START_HERE.ipynb) has nothing to run: no kernel for it
    found = [p for p in sorted(ROOT.rglob("*.ipynb"))
             if ".ipynb_checkpoints" not in p.parts and "exercises" not in p.parts
             and _has_code(p)]
    params = []
    for p in found:
        unit = UNIT.get(p.stem[0].lower())
        params.append(pytest.param(p, id=str(p.relative_to(ROOT)),
                                   marks=[unit] if unit else []))
    return params


def test_notebooks_are_found():
    assert notebooks_to_run(), f"no notebooks under {ROOT}"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
@pytest.mark.parametrize("path", notebooks_to_run())
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAB_SMALL", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=NOTEBOOK_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    start = time.monotonic()
    client.execute()  # raises CellExecutionError naming the cell and the traceback
    print(f"{path.relative_to(ROOT)}: {time.monotonic() - start:.1f} s")
    if "lectures" in path.parts:
        # students without a cluster account read the exported HTML: its figures must be in
        html, _ = HTMLExporter().from_notebook_node(nb)
        (tmp_path / f"{path.stem}.html").write_text(html)
        assert html.count("data:image/png;base64") >= 1, \
            f"{path.name}: the exported HTML carries no figure"
