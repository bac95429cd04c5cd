"""Activation recomputation on the tiny transformer: the same loss and gradients as
without it, fewer saved bytes (as the calculator says), and what it costs in time."""

from __future__ import annotations

import pytest
import torch

from hpclab.memory import FP32, RECOMPUTE, layer_bytes, tiny_shape
from hpclab.memory.measure import SavedTensors
from hpclab.memory.recompute_cost import time_recompute
from hpclab.problems import lm_loss, tiny_transformer
from hpclab.problems.transformer import TransformerConfig

pytestmark = [pytest.mark.unit_d]


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("recompute", ["selective", "full"])
def test_recomputation_gives_the_same_gradients(recompute, dropout):
    """The checkpoint replays the dropout masks (it restores the RNG state)."""
    x, y = torch.randint(30, (4, 16)), torch.randint(30, (4, 16))
    grads = {}
    for mode in ("none", recompute):
        model = tiny_transformer(30, block_size=16, dropout=dropout, recompute=mode)
        torch.manual_seed(1)
        lm_loss(model(x), y).backward()
        grads[mode] = [p.grad for p in model.parameters()]
    torch.testing.assert_close(grads[recompute], grads["none"], rtol=1e-5, atol=1e-6)


def test_default_is_no_recomputation_and_bad_values_are_named():
    assert TransformerConfig(vocab_size=10).recompute == "none"
    with pytest.raises(ValueError, match="recompute must be one of .* got 'all'"):
        TransformerConfig(vocab_size=10, recompute="all")


def test_full_recomputation_keeps_one_block_input_per_layer():
    s, b = 32, 4
    x, y = torch.randint(30, (b, s)), torch.randint(30, (b, s))
    saved = {}
    for mode in RECOMPUTE:
        model = tiny_transformer(30, block_size=s, n_layers=3, recompute=mode)
        with SavedTensors(exclude=model.parameters()) as rec:
            loss = lm_loss(model(x), y)
        loss.backward()
        saved[mode] = rec.bytes
    shape = tiny_shape(model.cfg)
    per_layer = {m: layer_bytes(shape, s, b, m, FP32) for m in RECOMPUTE}
    assert per_layer["full"] == s * b * 64 * 4                  # the block input, fp32
    for mode in ("selective", "full"):                          # the rest is shared
        assert saved["none"] - saved[mode] == 3 * (per_layer["none"] - per_layer[mode])


@pytest.mark.parametrize("math_attention", [False, True])
def test_recomputation_cost_is_measured_against_none(math_attention, capsys):
    rows = time_recompute(steps=2, repeats=1, batch=4, block=32,
                          math_attention=math_attention)
    by = {r["recompute"]: r for r in rows}
    assert list(by) == list(RECOMPUTE) and by["none"]["time_ratio"] == 1.0
    assert by["full"]["bytes_ratio"] < by["selective"]["bytes_ratio"] <= 1.0
    assert "× none" in capsys.readouterr().out
