"""Mixed precision: bf16 autocast on CPU trains like fp32; fp16 scaling on CUDA (gpu tier)."""

import pytest
import torch
from torch import nn

from hpclab.parallel.loss_scaling import DynamicLossScaler
from hpclab.parallel.precision import fp16_flush_fraction, mixed_precision_step

pytestmark = [pytest.mark.unit_d]


def _setup(device="cpu"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4)).to(device)
    x = torch.randn(256, 20, device=device)
    y = (x[:, :4].argmax(dim=1))
    return model, (x, y)


def _train(dtype, steps=60, device="cpu", scaler=None):
    model, batch = _setup(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(steps):
        if dtype == torch.float32:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
            loss.backward()
            opt.step()
            losses.append(float(loss))
        else:
            losses.append(mixed_precision_step(model, opt, batch, nn.functional.cross_entropy,
                                               dtype, scaler))
    return losses, model


def test_bf16_autocast_trains_like_fp32_on_cpu():
    fp32, _ = _train(torch.float32)
    bf16, model = _train(torch.bfloat16)
    assert bf16[-1] < 0.5 * bf16[0]                    # it learns
    assert bf16[-1] == pytest.approx(fp32[-1], abs=0.05)  # and lands where fp32 does
    assert all(p.dtype == torch.float32 for p in model.parameters())   # master weights fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 20)).dtype == torch.bfloat16


def test_fp16_flushes_small_gradients_unless_scaled():
    g = torch.logspace(-10, -3, 1000)
    assert fp16_flush_fraction(g) > 0.25             # 1e-10 … 6e-8 vanish in fp16
    assert fp16_flush_fraction(g, scale=2.0**16) < fp16_flush_fraction(g) / 3
    assert fp16_flush_fraction(torch.zeros(3)) == 0.0


def test_bad_dtype_or_device():
    model, batch = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="bfloat16 or torch.float16"):
        mixed_precision_step(model, opt, batch, nn.functional.cross_entropy, torch.float32)
    with pytest.raises(ValueError, match="on CPU use dtype=torch.bfloat16"):
        mixed_precision_step(model, opt, batch, nn.functional.cross_entropy, torch.float16)


@pytest.mark.gpu
def test_fp16_with_our_scaler_matches_torch_gradscaler_on_cuda():
    ours, m1 = _train(torch.float16, device="cuda", scaler=DynamicLossScaler(growth_interval=10))

    # GradScaler offers the same scale/step/update calls
    ref, m2 = _train(torch.float16, device="cuda",
                     scaler=torch.amp.GradScaler("cuda", growth_interval=10))
    assert ours == pytest.approx(ref, rel=1e-6)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b)
