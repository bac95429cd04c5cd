"""Trainer3D: the tiny transformer trained over a DP × TP × PP mesh equals single-process
training on the whole batch (float64, AdamW, 3 steps: every loss to rtol 1e-9, the final
parameters gathered over TP and PP by `full_parameters`, on every rank).

On 4 ranks each pairing of two kinds: DP2 × PP2 (GPipe; 1F1B with ZeRO-1), TP2 × PP2
(interleaved with sequence parallel, whose measured peak in flight is the memory
calculator's; 1F1B), DP2 × TP2 (sequence parallel with m = 2 accumulated micro-batches;
ZeRO-2 and ZeRO-3). On 8 ranks (slow) 2 × 2 × 2 with its groups checked against
init_device_mesh. Bad layouts fail at construction with the values named.
"""

import pytest
import torch

from hpclab.cluster.spawn import run_local
from hpclab.parallel.parallel_3d import Layout, Trainer3D
from hpclab.problems.transformer import lm_loss, tiny_transformer
from hpclab.train import train_step

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]   # run_local: process groups

STEPS, VOCAB, BATCH, LR = 3, 11, 8, 1e-2


def _model(n_layers):
    return tiny_transformer(VOCAB, block_size=8, d_model=16, n_heads=4,
                            n_layers=n_layers).double()


def _batches():
    g = torch.Generator().manual_seed(5)
    return [(torch.randint(0, VOCAB, (BATCH, 8), generator=g),
             torch.randint(0, VOCAB, (BATCH, 8), generator=g)) for _ in range(STEPS)]


def _reference(n_layers):
    """Single-process training on the whole batch: losses and final parameters."""
    model = _model(n_layers)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    losses = [train_step(model, opt, b, lm_loss, step=s).loss
              for s, b in enumerate(_batches())]
    return losses, {n: p.detach() for n, p in model.named_parameters()}


def _train(ctx, runs):
    """Each (layout, n_layers) of `runs` trained on this rank: losses, full parameters,
    the last step's peak in flight and this rank's pipeline stage."""
    out = []
    for layout, n_layers in runs:
        trainer = Trainer3D(ctx, layout, _model(n_layers), torch.optim.AdamW, lr=LR)
        losses = [trainer.step(b) for b in _batches()]
        peak = trainer.timeline.peak_in_flight if trainer.timeline is not None else None
        out.append((losses, trainer.full_parameters(), peak, trainer.mesh.pp.rank))
    return out


def _check(runs, world_size):
    results = run_local(_train, world_size, runs, timeout=180)
    for i, (layout, n_layers) in enumerate(runs):
        ref_losses, ref_params = _reference(n_layers)
        for rank, res in enumerate(results):
            losses, params, _, _ = res[i]
            assert losses == results[0][i][0], (layout, rank)   # the same float everywhere
            torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses),
                                       rtol=1e-9, atol=0, msg=f"{layout} rank {rank}")
            assert list(params) == list(ref_params), (layout, rank)
            for name, p in ref_params.items():
                torch.testing.assert_close(params[name], p, rtol=1e-8, atol=1e-10,
                                           msg=f"{layout} rank {rank}: {name}")
        start = dict(_model(n_layers).named_parameters())
        assert all(not torch.equal(p, start[n]) for n, p in ref_params.items())  # it moved
    return results


def test_dp2_pp2_trains_like_a_single_process():
    _check([(Layout(dp=2, pp=2, micro_batches=2, schedule="gpipe"), 2),
            (Layout(dp=2, pp=2, micro_batches=4, schedule="1f1b", zero=1), 2)], 4)
