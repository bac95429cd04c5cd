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
    assert "2 local processes (run_local" in out and "fitted α-β-γ model: α =" in out
    rows = [line.split() for line in out.splitlines() if len(line.split()) == 10]
    for size in ("4 KiB", "64 KiB", "1 MiB"):
        for algorithm in ALGORITHMS["all_reduce"]:
            matches = [r for r in rows if r[:3] == [*size.split(), algorithm]]
            assert len(matches) == 1, (size, algorithm)
            measured, abg, priced = (float(matches[0][i]) for i in (3, 4, 6))
            assert measured > 0 and abg > 0 and priced > 0, matches[0]
    assert "best algorithm per size" in out and "ring at 4 KiB within 3x" in out
    assert "model (measured costs) within ±25%" in out and "one fitted α, β, γ" in out
    assert plot.stat().st_size > 10_000


def test_saved_measurements_rebuild_the_tables(tmp_path, capsys):
    """--save writes the raw tables; the model priced from them matches the printed one."""
    import json
    saved = tmp_path / "comm.json"
    assert bench.main(["--quick", "--out", str(tmp_path / "c.png"), "--save", str(saved)]) == 0
    printed = {(int(r[0]) * 1024 ** (["B", "KiB", "MiB"].index(r[1])), r[2]): float(r[6])
               for r in (line.split() for line in capsys.readouterr().out.splitlines())
               if len(r) == 10 and r[1] in ("B", "KiB", "MiB")}
    raw = json.loads(saved.read_text())
    results = {k: {int(n): v for n, v in raw[k].items()}
               for k in ("ping_pong", "exchange", "reduce", "times", "parts")}
    for n, parts in results["parts"].items():
        results["parts"][n] = {kind: {int(m): t for m, t in table.items()}
                               for kind, table in parts.items()}
        assert sorted(results["parts"][n]["exchange"]) == [n // 2, n]    # p = 2: n, n/2
    assert sorted(results["times"]) == [4096, 65536, 1 << 20]
    rows = bench.table(results, bench.fit(results), raw["p"])
    assert {r["algorithm"] for r in rows} == set(ALGORITHMS["all_reduce"])
    for r in rows:
        assert printed[r["bytes"], r["algorithm"]] == pytest.approx(r["model_ms"], abs=5e-4)


def test_bench_rejects_one_engine():
    with pytest.raises(SystemExit):
        bench.main(["--engines", "1", "--quick"])


@pytest.mark.parametrize("n,p,expected", [(1024, 2, [1024, 512]), (1024, 4, [1024, 512, 256]),
                                          (1200, 3, [1200, 600, 400]),
                                          (1 << 20, 8, [1 << 20, 1 << 19, 1 << 18, 1 << 17]),
                                          (64 << 20, 2, [64 << 20, 32 << 20, 2 << 20])])
def test_part_sizes_are_the_messages_the_algorithms_send(n, p, expected):
    assert bench.part_sizes(n, p) == expected
