"""Large-batch recipes: the rules' arithmetic and the measured sweep a lecture plots."""

import math

import pytest

from hpclab.parallel.large_batch import batch_size_sweep, linear_scaling_lr, sqrt_scaling_lr

pytestmark = [pytest.mark.unit_d]


def test_scaling_rules():
    assert linear_scaling_lr(0.1, 256, 8192) == pytest.approx(3.2)   # Goyal et al.'s ImageNet
    assert sqrt_scaling_lr(1e-3, 64, 256) == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="batch sizes >= 1"):
        linear_scaling_lr(0.1, 0, 32)


def test_sweep_large_batch_needs_the_scaled_learning_rate():
    rows = batch_size_sweep(batch_sizes=(32, 512))
    table = {(r["recipe"], r["batch_size"]): r for r in rows}
    assert len(rows) == 6 and all(math.isfinite(r["val_loss"]) for r in rows)
    # B = 512 does 16× fewer steps; with η₀ unchanged it falls behind ...
    naive, scaled = table[("sgd", 512)], table[("sgd+linear+warmup", 512)]
    assert naive["steps"] == scaled["steps"] < table[("sgd", 32)]["steps"] / 10
    assert scaled["lr"] == pytest.approx(16 * naive["lr"])
    # ... while the linear scaling rule with warm-up, or LAMB, nearly closes the gap
    assert scaled["val_loss"] < naive["val_loss"] / 2
    assert table[("lamb", 512)]["val_loss"] < naive["val_loss"] / 2
    assert scaled["val_accuracy"] > table[("sgd", 32)]["val_accuracy"] - 0.1


def test_unknown_recipe():
    with pytest.raises(ValueError, match="unknown recipes"):
        batch_size_sweep(recipes=("adam-magic",))
