"""Model FLOPs and MFU: throughput the way practitioners read it.

    f = training_flops(model, x)             # FLOPs of one training step per sample of x
    peak = peak_flops(device, torch.float32)  # CUDA: the data sheet; else a measured matmul
    mfu = f * samples_per_s / peak            # model FLOPs utilisation, 0 … 1

Model FLOPs of a decoder-only transformer, per token of a sequence of length T (PaLM,
Chowdhery et al. 2022, Appendix B; the same count as Megatron-LM, Narayanan et al. 2021,
§5.1, without its recomputation pass):

    6·N + 12·L·d·T

A matmul costs 2 FLOPs per multiply-add and backward costs twice the forward (∂J/∂X and
∂J/∂W, one matmul each), hence the 6 = 3·2. N counts the weights of the linear layers
(attention, MLP, output head: every weight multiplies the token once); the embedding
lookups, biases and LayerNorms add O(d) per token, not O(d²), and are left out. The
attention scores QKᵀ and the sum AV are matmuls without weights: 2·2·T·d per token and
layer forward (d = heads·d_head), times 3. The causal mask's saving is not counted and
neither is activation recomputation: MFU counts the model's FLOPs, whatever the kernels
do (recomputation included it would be HFU). A stack of linear layers (an MLP) costs
6·N per sample. tests/test_flops.py checks both against torch.utils.flop_counter.

The peak is the dense data-sheet number of a known GPU (PEAK_TFLOPS, by dtype; torch
keeps a similar private table in torch._inductor.analysis.device_info), otherwise
measured: the best rate of n×n matmuls within a time budget (`measure_matmul_peak`), what
this process can reach on this device with its threads — the honest peak of a CPU.
"""

from __future__ import annotations

import time

import torch
from torch import nn

# dense (no 2:4 sparsity) tensor-core TFLOP/s from NVIDIA's data sheets (SXM parts);
# "tf32" is float32 matmuls with torch.backends.cuda.matmul.allow_tf32
PEAK_TFLOPS = {
    "H200": {torch.bfloat16: 989.0, torch.float16: 989.0, "tf32": 494.5, torch.float32: 67.0},
    "H100": {torch.bfloat16: 989.0, torch.float16: 989.0, "tf32": 494.5, torch.float32: 67.0},
    "A100": {torch.bfloat16: 312.0, torch.float16: 312.0, "tf32": 156.0, torch.float32: 19.5},
    "L4": {torch.bfloat16: 121.0, torch.float16: 121.0, "tf32": 60.0, torch.float32: 30.3},
    "V100": {torch.float16: 125.0, torch.float32: 15.7},
}


def linear_weights(model: nn.Module) -> int:
    """N: the number of weights of the model's linear layers."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def transformer_flops_per_token(n_weights: int, n_layers: int, d_model: int,
                                seq_len: int) -> float:
    """6·N + 12·L·d·T: training FLOPs per token (PaLM, Appendix B)."""
    return 6.0 * n_weights + 12.0 * n_layers * d_model * seq_len


def training_flops(model: nn.Module, inputs: torch.Tensor) -> float:
    """Model FLOPs of forward + backward per sample of `inputs` (a batch).

    A model with a transformer `cfg` (n_layers, d_model; TinyTransformer) and token ids
    (B, T): T·(6N + 12·L·d·T); any other model: 6N, N its linear layers' weights (exact
    for an MLP; a convolution's FLOPs are not counted). DDP-style wrappers are unwrapped
    (`.module`). A tensor-parallel model is refused: MFU counts the model's FLOPs once
    over the t ranks' peaks, so pass the single-process model and divide by t."""
    model = getattr(model, "module", model)
    if any(hasattr(p, "tp_shard") for p in model.parameters()):
        raise ValueError("training_flops of a tensor-parallel model: pass the single-process "
                         "model and divide by t (each of the t ranks does 1/t of its FLOPs)")
    cfg = getattr(model, "cfg", None)
    n = linear_weights(model)
    if cfg is not None and hasattr(cfg, "n_layers") and inputs.ndim == 2:
        T = inputs.shape[1]
        return T * transformer_flops_per_token(n, cfg.n_layers, cfg.d_model, T)
    return 6.0 * n


def mfu(model_flops: float, seconds: float, peak: float) -> float:
    """Model FLOPs utilisation: (model FLOPs / seconds) / peak FLOP/s."""
    if seconds <= 0 or peak <= 0:
        raise ValueError(f"seconds and peak must be > 0, got seconds={seconds}, "
                         f"peak={peak}")
    return model_flops / seconds / peak


def datasheet_peak(device: torch.device, dtype: torch.dtype) -> float | None:
    """FLOP/s of a known CUDA device for `dtype` (PEAK_TFLOPS), else None."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device).upper()
    key = "tf32" if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 \
        else dtype
    for model, table in PEAK_TFLOPS.items():
        if model in name and key in table:
            return table[key] * 1e12
    return None


def measure_matmul_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                        n: int | None = None, budget_s: float = 0.25) -> float:
    """The best FLOP/s of n×n @ n×n matmuls (2n³ FLOPs each) within about `budget_s`
    seconds: the first run is a warm-up, then runs are timed one by one until the budget
    is spent (at least 3). n: 256 on a CPU (a few ms per matmul on one core, like the
    tiny models' matrices), 4096 on a GPU."""
    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {budget_s}")
    device = torch.device(device)
    n = n or (4096 if device.type == "cuda" else 256)
    g = torch.Generator().manual_seed(0)     # its own stream: training's RNG is untouched
    a, b = (torch.randn(n, n, generator=g).to(device=device, dtype=dtype) for _ in range(2))

    def timed() -> float:
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    timed()
    deadline, best, runs = time.perf_counter() + budget_s, float("inf"), 0
    while runs < 3 or time.perf_counter() < deadline:
        best, runs = min(best, timed()), runs + 1
    return 2.0 * n ** 3 / best


def peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               budget_s: float = 0.25) -> tuple[float, str]:
    """(peak FLOP/s, where it came from: "datasheet" or "measured")."""
    known = datasheet_peak(torch.device(device), dtype)
    if known is not None:
        return known, "datasheet"
    return measure_matmul_peak(device, dtype, budget_s=budget_s), "measured"
