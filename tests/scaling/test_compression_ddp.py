"""Compressed data-parallel training with error feedback lands where uncompressed does.

Tolerances (final training loss of the digits MLP after 150 steps on 2 processes,
uncompressed ≈ 0.14): fp16 / int8 / PowerSGD r=2 within 0.03; top-k 1% with error
feedback within 0.12 and closer than top-k without it by a factor of 2.
"""

import pytest

from hpclab.bench.compression import compare, main

pytestmark = [pytest.mark.unit_d, pytest.mark.slow]


def test_error_feedback_recovers_the_uncompressed_loss():
    results = {r.variant: r for r in compare(world_size=2, steps=150)}
    base = results["none"]
    for name in ("fp16", "int8", "PowerSGD r=2", "PowerSGD r=2, per tensor"):
        assert abs(results[name].final_loss - base.final_loss) < 0.03, name
    ef, no_ef = results["top-k 1%"], results["top-k 1%, no EF"]
    assert ef.final_loss - base.final_loss < 0.12
    assert no_ef.final_loss - base.final_loss > 2 * (ef.final_loss - base.final_loss)
    assert results["int8"].bytes_per_step == pytest.approx(base.bytes_per_step / 4, rel=0.01)
    assert results["top-k 1%"].bytes_per_step < base.bytes_per_step / 20


def test_bench_prints_every_variant(capsys):
    assert main(["--steps", "3"]) == 0
    out = capsys.readouterr().out
    for name in ("none", "fp16", "int8", "top-k 1%", "PowerSGD r=2",
                 "PowerSGD r=2, per tensor"):
        assert name in out
