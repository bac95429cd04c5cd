"""`hpclab bench optim` runs end to end at a tiny size (no timing is asserted)."""

import pytest

from hpclab.bench import optim as bench

pytestmark = [pytest.mark.unit_b]


def test_bench_rows_and_table(capsys):
    assert bench.main(["--sizes", "2e4", "--repeats", "1", "--steps", "1", "--no-compiled"]) == 0
    out = capsys.readouterr().out
    for name in ("SGD", "Adam", "AdamW"):
        for variant in ("ours loop", "ours foreach", "torch loop", "torch foreach",
                        "torch fused"):
            assert f"| {name} | " in out and f"| {variant} |" in out
    assert "vs torch foreach" in out and "stream bandwidth" in out


def test_bench_rows_are_consistent():
    cfg = bench.Config(sizes=[10_000], repeats=2, steps=1, optimizers=["Adam"],
                       compiled=False)
    rows = bench.run(cfg)
    assert len(rows) == 5
    by = {r["variant"]: r for r in rows}
    assert by["ours foreach"]["ratio"] == pytest.approx(
        by["ours foreach"]["min_ms"] / by["torch foreach"]["min_ms"])
    assert all(r["min_ms"] > 0 and r["min_ms"] <= r["median_ms"] for r in rows)
    shapes = bench.model_shapes(10_000, 16)
    assert sum(s[0] * (s[1] if len(s) > 1 else 1) for s in shapes) == rows[0]["params"]


def test_bench_rejects_bad_options():
    with pytest.raises(SystemExit, match="--repeats must be >= 1, got 0"):
        bench.parse(["--repeats", "0"])
    with pytest.raises(SystemExit, match="unknown"):
        bench.parse(["--optimizers", "Adam,Foo"])


def test_bench_device_option(monkeypatch):
    assert bench.parse(["--device", "cpu"]).device == "cpu"
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cuda: torch .* sees no CUDA GPU"):
        bench.parse(["--device", "cuda"])
