"""Trainer3D: the tiny transformer trained over a DP × TP × PP mesh equals single-process
training on the whole batch (float64, AdamW, 3 steps: every loss to rtol 1e-9, the final
parameters gathered over TP and PP by `full_parameters`, on every rank).

On 4 ranks each pairing of two kinds: DP2 × PP2 (GPipe; 1F1B with ZeRO-1), TP2 × PP2
(interleaved with sequence parallel, whose measured peak in flight is the memory
calculator's; 1F1B), DP2 × TP2 (sequence parallel with m = 2 accumulated micro-batches;
ZeRO-2 and ZeRO-3). On 8 ranks (slow) 2 × 2 × 2 with its groups checked against
init_device_mesh. Bad layouts fail at construction with the values named; a NaN loss on
one replica raises NonFiniteLossError on every rank.
"""

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from hpclab.cluster.spawn import run_local
from hpclab.memory import Parallelism
from hpclab.parallel.parallel_3d import Layout, Trainer3D, check_model
from hpclab.problems.transformer import lm_loss, tiny_transformer
from hpclab.train import NonFiniteLossError, train_step

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


def _train(ctx, runs, poison=False):
    """Each (layout, n_layers) of `runs` trained on this rank: losses, full parameters,
    the last step's peak in flight and this rank's pipeline stage. poison: first, a NaN
    in replica 0's head stops the first layout's step 0 on every rank."""
    out = []
    if poison:
        layout, n_layers = runs[0]
        trainer = Trainer3D(ctx, layout, _model(n_layers), torch.optim.AdamW, lr=LR)
        if trainer.mesh.coords[0] == 0 and trainer.chunks[-1].last:
            with torch.no_grad():
                trainer.chunks[-1].head.bias[0] = float("nan")
        with pytest.raises(NonFiniteLossError, match="loss is nan at step 0"):
            trainer.step(_batches()[0])
    for layout, n_layers in runs:
        trainer = Trainer3D(ctx, layout, _model(n_layers), torch.optim.AdamW, lr=LR)
        losses = [trainer.step(b) for b in _batches()]
        peak = trainer.timeline.peak_in_flight if trainer.timeline is not None else None
        m = layout.micro_batches
        if m > 1:       # fewer rows per replica than micro-batches: refused on every rank
            x, y = _batches()[0]
            with pytest.raises(ValueError, match=f"fewer than micro_batches={m}"):
                trainer.step((x[:layout.dp * (m - 1)], y[:layout.dp * (m - 1)]))
        out.append((losses, trainer.full_parameters(), peak, trainer.mesh.pp.rank))
    return out


def _check(runs, world_size, poison=False):
    results = run_local(_train, world_size, runs, poison, timeout=180)
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
    """GPipe, and 1F1B with ZeRO-1; a NaN loss on one replica stops every rank."""
    _check([(Layout(dp=2, pp=2, micro_batches=2, schedule="gpipe"), 2),
            (Layout(dp=2, pp=2, micro_batches=4, schedule="1f1b", zero=1), 2)], 4,
           poison=True)


def test_tp2_pp2_trains_like_a_single_process():
    """Interleaved (v = 2 chunks of one block each) with sequence parallel, and 1F1B;
    the interleaved step's measured peak in flight is the memory calculator's n_i."""
    interleaved = Layout(tp=2, pp=2, micro_batches=2, schedule="interleaved",
                         sequence_parallel=True)
    results = _check([(interleaved, 4), (Layout(tp=2, pp=2, micro_batches=4), 3)], 4)
    calculator = Parallelism(pp=2, microbatches=2, schedule="interleaved", chunks=2)
    for res in results:
        _, _, peak, stage = res[0]
        assert peak == calculator.in_flight(stage), (stage, peak)
        _, _, peak, stage = res[1]
        assert peak == Parallelism(pp=2, microbatches=4).in_flight(stage), (stage, peak)


def test_dp2_tp2_trains_like_a_single_process():
    """pp = 1 (no pipeline executor): sequence parallel over m = 2 accumulated
    micro-batches; ZeRO-2 and ZeRO-3 over the DP group."""
    _check([(Layout(dp=2, tp=2, micro_batches=2, sequence_parallel=True), 2),
            (Layout(dp=2, tp=2, zero=2), 2), (Layout(dp=2, tp=2, zero=3), 2)], 4)


def _groups_and_train(ctx, runs):
    """The mesh's three groups are init_device_mesh((2, 2, 2))'s, then `_train`."""
    layout, n_layers = runs[0]
    trainer_mesh = Trainer3D(ctx, layout, _model(n_layers), torch.optim.AdamW, lr=LR).mesh
    torch_mesh = init_device_mesh("cpu", (2, 2, 2), mesh_dim_names=("pp", "dp", "tp"))
    for axis in ("pp", "dp", "tp"):
        ours = sorted(dist.get_process_group_ranks(getattr(trainer_mesh, axis).group))
        assert ours == sorted(dist.get_process_group_ranks(torch_mesh.get_group(axis))), axis
    assert tuple(torch_mesh.get_coordinate()) == (trainer_mesh.pp.rank, trainer_mesh.dp.rank,
                                                  trainer_mesh.tp.rank)
    return _train(ctx, runs)


@pytest.mark.slow
def test_dp2_tp2_pp2_on_eight_ranks_trains_like_a_single_process():
    """2 × 2 × 2: interleaved 1F1B, sequence parallel, ZeRO-1 over each stage's DP group;
    the mesh's groups are init_device_mesh((2, 2, 2))'s."""
    layout = Layout(dp=2, tp=2, pp=2, micro_batches=2, schedule="interleaved",
                    sequence_parallel=True, zero=1)
    results = run_local(_groups_and_train, 8, [(layout, 4)], timeout=300)
    ref_losses, ref_params = _reference(4)
    for rank, res in enumerate(results):
        losses, params, _, _ = res[0]
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses),
                                   rtol=1e-9, atol=0, msg=f"rank {rank}")
        for name, p in ref_params.items():
            torch.testing.assert_close(params[name], p, rtol=1e-8, atol=1e-10,
                                       msg=f"rank {rank}: {name}")


def test_bad_layouts_fail_at_construction_naming_the_values():
    class Ctx:
        rank, world_size, timeout = 0, 4, 10.0
    for kwargs, message in [
            ({"dp": 0}, "dp must be >= 1, got 0"),
            ({"zero": 4}, "zero .* must be 0, 1, 2 or 3, got 4"),
            ({"schedule": "zb"}, "schedule must be one of .* got 'zb'"),
            ({"pp": 2, "zero": 2}, "zero=2 needs pp=1, got pp=2: ZeRO-2 reduces"),
            ({"pp": 2, "micro_batches": 3, "schedule": "interleaved"},
             "needs micro_batches to be a multiple of pp, got micro_batches=3, pp=2")]:
        with pytest.raises(ValueError, match=message):
            Layout(**kwargs)
    assert Layout(dp=2, tp=2, pp=2).world_size == 8
    with pytest.raises(ValueError, match=r"dp × tp × pp = 2 × 2 × 1 = 4 must equal the "
                                         r"world size 8"):
        Layout(dp=2, tp=2).check(8)
    for layout, n_layers, message in [
            (Layout(pp=4), 2, "4 pieces need at least 4 blocks, the model has n_layers=2"),
            (Layout(pp=2, micro_batches=2, schedule="interleaved", dp=2), 3,
             "pp=2 stages × v=2 chunks = 4 pieces need at least 4 blocks"),
            (Layout(tp=2, dp=2, zero=2, sequence_parallel=True), 2,
             "sequence_parallel with tp=2 and zero=2 is not offered")]:
        with pytest.raises(ValueError, match=message):
            Trainer3D(Ctx(), layout, _model(n_layers), torch.optim.AdamW, lr=LR)
    check_model(_model(4), Layout(pp=2, micro_batches=2, schedule="interleaved"))
    with pytest.raises(ValueError, match="need at least 4 blocks"):   # without processes
        check_model(_model(3), Layout(pp=2, micro_batches=2, schedule="interleaved"))
    three = type("Ctx3", (), {"rank": 0, "world_size": 3, "timeout": 10.0})
    with pytest.raises(ValueError, match="tp=3 must divide n_heads=4"):
        Trainer3D(three(), Layout(tp=3), _model(2), torch.optim.AdamW, lr=LR)
