"""Notebooks are stored clean and lectures can be presented (fast, no kernel).

- every notebook under notebooks/ is stored without outputs or execution counts, so diffs
  stay readable (strip with `jupyter nbconvert --clear-output --inplace NB`);
- every lecture starts with a markdown title cell, has a code cell tagged `parameters`
  that reads HPCLAB_SMALL, and carries slide metadata (jupyterlab-rise) with valid types.
"""

from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.notebooks]

ROOT = Path(__file__).resolve().parents[2] / "notebooks"
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}
UNIT = {"a": pytest.mark.unit_a, "b": pytest.mark.unit_b, "c": pytest.mark.unit_c,
        "d": pytest.mark.unit_d}


def _params(paths):
    return [pytest.param(p, id=str(p.relative_to(ROOT)),
                         marks=[UNIT[p.stem[0].lower()]] if p.stem[0].lower() in UNIT else [])
            for p in paths]


ALL = sorted(p for p in ROOT.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
LECTURES = sorted((ROOT / "lectures").glob("*.ipynb"))


@pytest.mark.parametrize("path", _params(ALL))
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.outputs or c.execution_count is not None)]
    assert dirty == [], (f"{path.name}: cells {dirty} hold outputs; run "
                         f"`jupyter nbconvert --clear-output --inplace {path}`")


@pytest.mark.parametrize("path", _params(LECTURES))
def test_lecture_has_title_parameters_and_slides(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("#"), \
        f"{path.name}: the first cell should be a markdown title"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0].cell_type == "code", \
        f"{path.name}: needs exactly one code cell tagged 'parameters'"
    assert "HPCLAB_SMALL" in params[0].source, \
        f"{path.name}: the parameters cell should choose small sizes from HPCLAB_SMALL"
    types = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    bad = sorted({t for t in types if t is not None and t not in SLIDE_TYPES})
    assert not bad, f"{path.name}: unknown slide types {bad}"
    assert types[0] == "slide", f"{path.name}: the title cell should start a slide"
    assert types.count("slide") >= 2, f"{path.name}: a lecture needs at least two slides"
    untagged = sum(t is None for t in types)
    assert untagged <= len(types) // 2, \
        f"{path.name}: {untagged} of {len(types)} cells carry no slide metadata"
