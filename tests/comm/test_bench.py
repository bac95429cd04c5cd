"""`hpclab bench comm --quick` runs end to end on 2 real processes and prints every row:
the table's content (timings) is not asserted, its completeness is."""

import pytest

from hpclab.bench import comm as bench
from hpclab.comm import ALGORITHMS

pytestmark = [pytest.mark.unit_c]


def test_quick_bench_prints_every_row(tmp_path, capsys):
    plot = tmp_path / "comm.png"
    assert bench.main(["--quick", "--engines", "2", "--out", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "2 local processes (run_local" in out and "fitted model: α =" in out
    rows = [line.split() for line in out.splitlines() if len(line.split()) == 8]
    for size in ("4 KiB", "64 KiB", "1 MiB"):
        for algorithm in ALGORITHMS["all_reduce"]:
            matches = [r for r in rows if r[:3] == [*size.split(), algorithm]]
            assert len(matches) == 1, (size, algorithm)
            float(matches[0][3]), float(matches[0][4])     # measured and model ms
    assert "best algorithm per size" in out and "ring at 4 KiB within 3x" in out
    assert plot.stat().st_size > 10_000


def test_bench_rejects_one_engine():
    with pytest.raises(SystemExit):
        bench.main(["--engines", "1", "--quick"])
