"""The course text does not teach the errors found in review (fast, no kernel).

Reads every notebook under notebooks/ cell by cell and course/notes/*.md and the syllabus
paragraph by paragraph, and fails on a wrong formula or figure. Where a wrong form may be
*quoted* to be taken apart (the seed articles' mistakes), the same cell or paragraph must
say so: a pattern then comes with the words that have to stand next to it.
"""

import re
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.notebooks]

REPO = Path(__file__).resolve().parents[2]


def _chunks():
    """(where, text) for every notebook cell and every markdown paragraph of the course."""
    for path in sorted((REPO / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            yield f"{path.relative_to(REPO)} cell {i}", cell.source
    for path in [*sorted((REPO / "course" / "notes").glob("*.md")), REPO / "course" / "syllabus.md"]:
        for i, para in enumerate(path.read_text().split("\n\n")):
            yield f"{path.relative_to(REPO)} paragraph {i}", para


CHUNKS = list(_chunks())

# (what is wrong, regex that finds it, regex that must then stand in the same chunk or None)
RULES = [
    ("Young's interval is a time; k steps = τ / T_step",
     r"k\s*≈\s*√\(2", None),
    ("row-parallel is Y = X₁W₁ + X₂W₂, not [X_1, X_2][W_1; W_2]^T",
     r"\[X_1,\s*X_2\]\s*\[W_1;\s*W_2\]\^", None),
    ("B3's network has 84,480 weights (85,002 parameters)",
     r"86\s*(\\,|\s|,)?\s*000\$?\s*weights", None),
    ("the Amdahl data in D2b are an example, not a class's measurement",
     r"speed-ups a class measured", None),
    ("NVLink's 600/900 GB/s are bidirectional totals: say so",
     r"NVLink[^\n]*\b(600|900) GB/s", r"total|bidirectional|both ways"),
    ("NVLink's latency is quoted as ~1 µs in the course's one table",
     r"NVLink[^\n]*~2 µs", None),
    ("the mixed-forms Adam (factor 0.32) is a different mistake from seed 002's (316)",
     r"accidental warm-up|≈\s*0\.32|0\.32\\,\\eta", r"(?i)different mistake|mixed"),
    ("seed 002's double correction makes the first step 316× too large, not smaller",
     r"(?i)widely copied", r"316"),
    ("`Adam(hvd.size())` passes the world size as the learning rate: quote it as an error",
     r"Adam\(hvd\.size\(\)\)", r"(?i)seed"),
    ("Horovod is Uber's, not Facebook's",
     r"Facebook", r"Uber"),
    ("θ + η∇J is gradient ascent",
     r"θ\s*(←|\\leftarrow|=)\s*θ\s*\+\s*η|\\theta\s*\+\s*\\eta\s*\\nabla", r"(?i)ascent"),
    ("'N×T + N/8' is the seed's timing model, quoted only to be taken apart",
     r"N\s*(×|\\times)\s*T\s*\+\s*N\s*/\s*8", r"(?i)seed"),
    ("D2b's parameter server is the central asynchronous kind: name it apart from C1's",
     r"(?i)the real thing: a parameter server", None),
    ("one all-reduce is not one message: a ring pays 2(p−1)α + 2(p−1)/p·nβ",
     r"(?i)all-reduce of n bytes costs about\s*\$?α\s*\+\s*β\s*n", None),
    ("there is no lecture C2: the collectives are lecture C1",
     r"\blecture C2\b", None),
]


@pytest.mark.parametrize(("what", "wrong", "needs"), RULES, ids=[r[0][:40] for r in RULES])
def test_course_text_avoids(what, wrong, needs):
    bad = [where for where, text in CHUNKS if re.search(wrong, text)
           and (needs is None or not re.search(needs, text))]
    assert bad == [], f"{what}: {bad}"


@pytest.mark.parametrize("path", ["notebooks/lectures/B2_optimizers.ipynb",
                                  "notebooks/exercises/source/b2_adam/b2_adam.ipynb",
                                  "course/notes/unit-b.md"])
def test_seed_002_adam_is_shown_with_its_own_factor(path):
    """Where the double correction is taught, seed 002's formula and its 316 are shown."""
    text = "\n".join(t for where, t in CHUNKS if where.startswith(path))
    assert "316" in text, f"{path}: show seed 002's first step, 316 × η"
    assert re.search(r"(1 − β₁ᵗ\)√\(1 − β₂ᵗ\)|\(1-\\beta_1\^t\)\\sqrt\{1-\\beta_2\^t\})", text), \
        f"{path}: show seed 002's own formula η/((1 − β₁ᵗ)√(1 − β₂ᵗ)) · m̂/√v̂"


def test_the_rules_catch_the_errors_they_name():
    """Each rule fires on the wrong text it was written for (so none is dead)."""
    samples = {
        RULES[0][1]: "Young: k ≈ √(2 · checkpoint cost · mean time between failures)",
        RULES[1][1]: r"row-parallel $Y = [X_1, X_2][W_1; W_2]^\top$-style",
        RULES[2][1]: r"$\approx 86\,000$ weights",
        RULES[4][1]: "| NVLink 3 | 600 GB/s |",
        RULES[6][1]: "an accidental warm-up of 1000 steps",
        RULES[9][1]: "Horovod (Facebook)",
        RULES[10][1]: "θ ← θ + η ∇J",
        RULES[11][1]: "T = N×T + N/8",
        RULES[13][1]: "One all-reduce of n bytes costs about α + β n (lecture C2)",
        RULES[14][1]: "as in lecture C2",
    }
    for pattern, text in samples.items():
        assert re.search(pattern, text), (pattern, text)
