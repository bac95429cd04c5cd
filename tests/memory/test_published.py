"""The calculator against published figures: bytes per parameter, the ZeRO paper's
figure 1, Korthikanti et al.'s activation formulas, Llama 3's parameter counts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpclab.memory import (
    BF16,
    FP32,
    GB,
    GPT3_175B,
    LLAMA3_8B,
    LLAMA3_70B,
    LLAMA3_405B,
    MIXED,
    MIXED_FP32_GRADS,
    RECOMPUTE,
    TransformerShape,
    bytes_per_parameter,
    korthikanti_layer_bytes,
    layer_bytes,
    state_bytes,
    zero_states,
)

pytestmark = [pytest.mark.unit_d]


@pytest.mark.parametrize("psi, mixed_gb, accum_gb", [(1e9, 16, 20), (7e9, 112, 140),
                                                     (70e9, 1120, 1400)])
def test_mixed_precision_adam_is_16_bytes_per_parameter_and_20_with_fp32_grads(
        psi, mixed_gb, accum_gb):
    assert bytes_per_parameter("adam", MIXED).total == 16
    assert bytes_per_parameter("adamw", MIXED_FP32_GRADS).total == 20
    assert state_bytes(psi, "adam", MIXED).total / GB == pytest.approx(mixed_gb)
    assert state_bytes(psi, "adam", MIXED_FP32_GRADS).total / GB == pytest.approx(accum_gb)


def test_bytes_per_parameter_by_optimizer():
    assert bytes_per_parameter("adam", FP32).total == 16        # 4 + 4 + 8
    assert bytes_per_parameter("momentum", FP32).total == 12    # 4 + 4 + 4
    assert bytes_per_parameter("sgd", FP32).total == 8
    assert bytes_per_parameter("momentum", MIXED).total == 12   # 2 + 2 + 4 master + 4
    assert bytes_per_parameter("adam", BF16).total == 8         # no master copy
    assert bytes_per_parameter("adam", MIXED).optimizer == 12   # the ZeRO paper's K


@pytest.mark.parametrize("stage, gb", [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_figure_1(stage, gb):
    """Ψ = 7.5B, N_d = 64, K = 12 (Rajbhandari et al. 2020, figure 1)."""
    assert sum(zero_states(7.5e9, "adam", MIXED, 64, stage)) / GB == pytest.approx(gb, abs=0.05)


@pytest.mark.parametrize("shape, billions", [(LLAMA3_8B, 8.03), (LLAMA3_70B, 70.6),
                                             (LLAMA3_405B, 405.9), (GPT3_175B, 175.2)])
def test_published_parameter_counts(shape, billions):
    assert shape.parameters / 1e9 == pytest.approx(billions, abs=0.05)


def test_gpt_block_has_12h2_plus_13h_parameters():
    for h in (64, 768, 12288):
        assert TransformerShape(1, h, 4, 10).layer_parameters() == 12 * h * h + 13 * h


def test_gpt_layer_is_34sbh_plus_5as2b():
    s, b, h, a = 2048, 1, 12288, 96
    gpt = TransformerShape(layers=1, hidden=h, heads=a, vocab=51200)
    assert layer_bytes(gpt, s, b, "none", BF16, small=False) == s * b * h * (34 + 5 * a * s / h)
    assert layer_bytes(gpt, s, b, "selective", BF16, small=False) == 34 * s * b * h
    assert layer_bytes(gpt, s, b, "full", BF16, small=False) == 2 * s * b * h
    # the LayerNorm statistics the paper leaves out: 2 norms · (mean, rstd) · sb · 4 bytes
    assert (layer_bytes(gpt, s, b, "none", BF16) - layer_bytes(gpt, s, b, "none", BF16,
                                                               small=False)) == 16 * s * b


@settings(max_examples=60, deadline=None)
@given(h_per_head=st.sampled_from([16, 64, 128]), a=st.sampled_from([1, 2, 4, 8, 16]),
       t=st.sampled_from([1, 2, 4, 8]), s=st.integers(1, 4096), b=st.integers(1, 8),
       sp=st.booleans(), recompute=st.sampled_from(RECOMPUTE))
def test_tensor_and_sequence_parallel_forms(h_per_head, a, t, s, b, sp, recompute):
    """Korthikanti et al. §4.2.1 (t-way TP: sbh(10 + 24/t + 5as/(ht))), §4.2.2 (TP + SP:
    sbh/t (34 + 5as/h)), selective and full recomputation, from the per-tensor terms."""
    if a % t:
        t = 1
    h = h_per_head * a
    gpt = TransformerShape(layers=1, hidden=h, heads=a, vocab=100)
    ours = layer_bytes(gpt, s, b, recompute, MIXED, t=t, sp=sp, small=False)
    assert ours == pytest.approx(korthikanti_layer_bytes(s, b, h, a, t, sp, recompute),
                                 rel=1e-12)
    if recompute == "none" and not sp:
        assert ours == pytest.approx(s * b * h * (10 + 24 / t + 5 * a * s / (h * t)), rel=1e-12)
    if recompute == "none" and sp:
        assert ours == pytest.approx(s * b * h / t * (34 + 5 * a * s / h), rel=1e-12)
