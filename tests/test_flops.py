"""Model FLOPs against torch's own count, and MFU in the training records.

The reference is torch.utils.flop_counter.FlopCounterMode, which counts the FLOPs of
every matmul torch runs (2 per multiply-add, forward and backward). Attention runs
through the math backend of scaled_dot_product_attention, so its two batched matmuls
are seen too (the fused CPU kernel is not counted). Both counts are of matmuls only and
neither uses the causal mask's zeros, so the transformer formula 6N + 12·L·d·T is
expected to be exact (tolerance: float rounding, 1e-12).
"""

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from hpclab.cluster.spawn import run_local
from hpclab.flops import (
    datasheet_peak,
    linear_weights,
    measure_matmul_peak,
    peak_flops,
    training_flops,
)
from hpclab.parallel import TrainerConfig
from hpclab.parallel.tp_transformer import ParallelTransformer
from hpclab.parallel.worker import RankJob, train_rank
from hpclab.problems.models import make_mlp
from hpclab.problems.transformer import lm_loss, tiny_transformer
from hpclab.train import fit

pytestmark = [pytest.mark.unit_d]


def _counted(model, loss_fn, x, y) -> int:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss_fn(model(x), y).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("layers, d, heads, T", [(2, 64, 4, 64), (3, 32, 2, 16)])
def test_transformer_flops_equal_torchs_count(layers, d, heads, T):
    model = tiny_transformer(65, block_size=64, d_model=d, n_heads=heads, n_layers=layers)
    B = 3
    x, y = torch.randint(0, 65, (B, T)), torch.randint(0, 65, (B, T))
    counted = _counted(model, lm_loss, x, y)
    assert math.isclose(B * training_flops(model, x), counted, rel_tol=1e-12)
    # the attention term is the difference the fused kernel hides from the counter
    assert counted - 6 * linear_weights(model) * B * T == 12 * layers * d * T * B * T


def test_mlp_flops_are_6n_per_sample():
    model = make_mlp(64, (128, 32), 10, seed=0)
    x, y = torch.randn(5, 64), torch.randint(0, 10, (5,))
    counted = _counted(model, torch.nn.functional.cross_entropy, x, y)
    # the data needs no gradient, so torch skips ∂J/∂X of the first layer (2·W₁ per
    # sample); 6N counts it, as the practitioners' formula does
    first = model[0].weight.numel()
    assert 5 * training_flops(model, x) - 2 * first * 5 == counted


def test_a_tensor_parallel_model_is_refused():
    class Ctx:
        rank, world_size, group = 0, 2, None
    from_tp = ParallelTransformer(tiny_transformer(11, block_size=8, d_model=16), Ctx())
    with pytest.raises(ValueError, match="divide by t"):
        training_flops(from_tp, torch.zeros(1, 8, dtype=torch.long))


def test_peak_on_the_cpu_is_measured():
    assert datasheet_peak(torch.device("cpu"), torch.float32) is None
    peak, source = peak_flops("cpu", budget_s=0.05)
    assert source == "measured" and peak > 1e8       # any CPU since ~2000: > 0.1 GFLOP/s
    assert measure_matmul_peak("cpu", n=64, budget_s=0.01) > 0
    state = torch.random.get_rng_state()
    measure_matmul_peak("cpu", n=32, budget_s=0.01)
    assert torch.equal(torch.random.get_rng_state(), state), "the RNG of training moved"
    with pytest.raises(ValueError, match="budget_s"):
        measure_matmul_peak("cpu", budget_s=0)


def test_fit_records_tokens_per_s_and_mfu():
    model = tiny_transformer(11, block_size=16, d_model=32, n_heads=2)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 11, (4, 16), generator=g),
                torch.randint(0, 11, (4, 16), generator=g)) for _ in range(3)]
    x = batches[0][0]
    peak, _ = peak_flops("cpu", budget_s=0.05)
    history = fit(model, torch.optim.AdamW(model.parameters(), lr=1e-3), batches, lm_loss,
                  progress=False, flops_per_sample=training_flops(model, x), peak_flops=peak)
    for rec in history.records:
        assert rec.extra["model_flops"] == 4 * training_flops(model, x)
        assert rec.tokens_per_s == 64 / rec.t_step
        # the step's model FLOP rate is below the best matmul rate of this process
        assert 0 < rec.mfu == rec.extra["model_flops"] / rec.t_step / peak < 1


def _mlp():
    return make_mlp(6, (16,), 4, seed=0)


def _data():
    g = torch.Generator().manual_seed(2)
    return torch.randn(40, 6, generator=g), torch.randint(0, 4, (40,), generator=g)


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1)


@pytest.mark.cluster
def test_trainer_records_carry_mfu():
    spec = RankJob(_mlp, _data, _sgd, TrainerConfig(batch_size=8, algorithm="ring"), 4)
    for out in run_local(train_rank, 2, spec, timeout=120):
        peaks = []
        for r in out["records"]:
            assert r["extra"]["model_flops"] == 4 * 6 * linear_weights(_mlp())  # B/p = 4
            assert 0 < r["extra"]["mfu"] < 1
            # over the whole step's time (data included), one peak measured per run
            peaks.append(r["extra"]["model_flops"] / r["t_step"] / r["extra"]["mfu"])
        assert all(math.isclose(p, peaks[0], rel_tol=1e-9) for p in peaks), peaks
