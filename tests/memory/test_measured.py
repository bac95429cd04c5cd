"""The calculator against the bytes the tiny transformer really holds (fp32, CPU):
every saved activation storage equals one of the calculator's terms, and parameters,
gradients and optimizer state (hpclab.optim and torch.optim) are within 5%. On CUDA
(`gpu`): torch.cuda.max_memory_allocated over a training step within 10%."""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel

import hpclab
from hpclab.memory import (
    FP32,
    RECOMPUTE,
    Parallelism,
    Training,
    layer_terms,
    outside_terms,
    rank_memory,
    state_bytes,
    tiny_shape,
)
from hpclab.memory.measure import SavedTensors, cuda_step_peak, held_states
from hpclab.problems import CharBatches, CharTokenizer, lm_loss, load_text, tiny_transformer

pytestmark = [pytest.mark.unit_d]


@functools.cache
def _text():
    text = load_text()
    tok = CharTokenizer.from_text(text)
    return tok.encode(text), tok.vocab_size


def _batch(s: int, b: int, seed: int = 0):
    ids, vocab = _text()
    x, y = next(iter(CharBatches(ids, block_size=s, batch_size=b, seed=seed)))
    # cloned: x and y are slices of one (b, s+1) storage of windows
    return x.clone(), y.clone(), vocab


def _kernel(attention: str):
    """torch picks its flash kernel on CPU; the math one keeps the softmax."""
    return sdpa_kernel(SDPBackend.MATH) if attention == "math" else contextlib.nullcontext()


def _measure(model, x, y, attention):
    with _kernel(attention), SavedTensors(exclude=model.parameters()) as saved:
        loss = lm_loss(model(x), y)
    with _kernel(attention):
        loss.backward()                 # the recomputation must run on the same kernel
    return saved


def _predicted(shape, s, b, recompute):
    return (shape.layers * layer_terms(shape, s, b, recompute, FP32)
            + outside_terms(shape, s, b, FP32))


@pytest.mark.parametrize("attention", ["flash", "math"])
@pytest.mark.parametrize("recompute", RECOMPUTE)
def test_saved_activations_are_the_calculators_terms(recompute, attention):
    s, b = 64, 8
    x, y, vocab = _batch(s, b)
    model = tiny_transformer(vocab, block_size=s, recompute=recompute)
    saved = _measure(model, x, y, attention)
    terms = _predicted(tiny_shape(model.cfg, attention), s, b, recompute)
    assert saved.sizes() == sorted(t.bytes for t in terms)      # storage by storage
    run = Training(seq=s, micro_batch=b, precision=FP32, recompute=recompute)
    predicted = rank_memory(tiny_shape(model.cfg, attention), run, Parallelism()).activations
    assert saved.bytes == pytest.approx(predicted, rel=0.05)


@settings(max_examples=12, deadline=None)
@given(layers=st.integers(1, 3), heads=st.sampled_from([1, 2, 4]),
       head_size=st.sampled_from([8, 16]), s=st.integers(2, 48), b=st.integers(1, 4),
       recompute=st.sampled_from(RECOMPUTE), attention=st.sampled_from(["flash", "math"]))
def test_saved_activations_for_other_shapes(layers, heads, head_size, s, b, recompute,
                                            attention):
    # torch's math attention copies v out of the qkv output only when its reshape to
    # (b·a, s, d) cannot be a view: with a = 1 or b = 1 it keeps the whole qkv storage
    assume(attention == "flash" or (heads > 1 and b > 1))
    x, y, vocab = _batch(s, b, seed=1)
    model = tiny_transformer(vocab, block_size=s, n_layers=layers, n_heads=heads,
                             d_model=heads * head_size, recompute=recompute)
    saved = _measure(model, x, y, attention)
    terms = _predicted(tiny_shape(model.cfg, attention), s, b, recompute)
    assert saved.bytes == sum(t.bytes for t in terms)


OPTIMIZERS = {  # name in the calculator -> optimizer on the model's parameters
    "adam": [lambda p: hpclab.optim.Adam(p, lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)],
    "adamw": [lambda p: hpclab.optim.AdamW(p), lambda p: torch.optim.AdamW(p)],
    "momentum": [lambda p: hpclab.optim.SGD(p, lr=0.1, momentum=0.9),
                 lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)],
}


@pytest.mark.parametrize("which", [0, 1], ids=["hpclab.optim", "torch.optim"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_parameters_gradients_and_optimizer_state_within_5_percent(name, which):
    x, y, vocab = _batch(32, 4)
    model = tiny_transformer(vocab, block_size=32)
    opt = OPTIMIZERS[name][which](model.parameters())
    lm_loss(model(x), y).backward()
    opt.step()
    held = held_states(model, opt)
    shape = tiny_shape(model.cfg)
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    predicted = state_bytes(shape.parameters, name, FP32)
    for part in ("parameters", "gradients", "optimizer"):
        assert getattr(held, part) == pytest.approx(getattr(predicted, part), rel=0.05), part
    assert held.parameters == predicted.parameters and held.gradients == predicted.gradients


@pytest.mark.gpu
@pytest.mark.parametrize("recompute", RECOMPUTE)
def test_cuda_peak_within_10_percent(recompute):
    """torch.cuda.max_memory_allocated over a training step. Before the step the model
    holds parameters and Adam's state (and cuBLAS its workspace); the peak comes early in
    backward, when every stored activation and one layer's working memory W are alive and
    hardly any gradient yet (they were set to None): peak − before ≈ activations + W.
    Sized so that activations (≈ 1 GB without recomputation) dwarf allocator rounding.
    CUDA's fp32 attention (the memory-efficient kernel) keeps O and the lse, as flash."""
    s, b = 256, 32
    x, y, vocab = _batch(s, b)
    dev = torch.device("cuda")
    x, y = x.to(dev), y.to(dev)
    model = tiny_transformer(vocab, block_size=s, d_model=128, n_layers=16, n_heads=4,
                             recompute=recompute).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = lm_loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()                                       # optimizer state now exists
    measured = cuda_step_peak(step, dev)
    run = Training(seq=s, micro_batch=b, precision=FP32, optimizer="adam",
                   recompute=recompute)
    predicted = rank_memory(tiny_shape(model.cfg), run, Parallelism())
    states = predicted.parameters + predicted.optimizer
    rise = measured["peak"] - measured["before"]
    print(f"{recompute}: before {measured['before'] / 1e6:.1f} MB (states {states / 1e6:.1f}),"
          f" peak - before {rise / 1e6:.1f} MB, predicted activations + W "
          f"{(predicted.activations + predicted.working) / 1e6:.1f} MB")
    assert measured["before"] >= states
    assert rise == pytest.approx(predicted.activations + predicted.working, rel=0.10)
