"""Sharded ZeRO checkpoints: each rank writes its shard; resuming is bit-identical.

Run A trains K = 4 steps on 2 ranks and saves after step 2. Then:
- resuming on 2 ranks (same stage) ends with exactly A's parameters;
- resuming on 3 or 1 ranks, or with another stage, loads exactly the saved parameters and
  optimizer state (re-saved at the new size and consolidated: equal to the bit), then ends
  within float tolerance of single-process training (the sums run in another order);
- on 1 rank, the run continues bit for bit like plain torch training started from the
  consolidated state (model.load_state_dict, the optimizer's per-parameter state).
"""

import pytest
import torch

from hpclab.cluster.spawn import run_local
from hpclab.parallel.checkpoint import load_checkpoint
from hpclab.parallel.zero import consolidate, latest_sharded, load_sharded, save_sharded
from hpclab.parallel.zero.checkpoint import sharded_path
from hpclab.parallel.zero.stages import zero_optimizer
from hpclab.problems.transformer import lm_loss, tiny_transformer

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]

torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.1)   # warm before forking

B, K, SAVE_AT = 12, 4, 2
ADAM = {"lr": 0.05, "eps": 1e-3}    # ε: see test_zero.py (the key bias's zero gradient)
ATOL, RTOL = 1e-5, 1e-4


def build(seed=0):
    model = tiny_transformer(11, seed=seed, block_size=8, d_model=16, n_layers=2, n_heads=2)
    g = torch.Generator().manual_seed(1)
    X = torch.randint(0, 11, (B * K, 8), generator=g)
    Y = torch.randint(0, 11, (B * K, 8), generator=g)
    return model, X, Y


def batch(step, rank=0, world_size=1):
    return list(range(step * B, (step + 1) * B))[rank::world_size]


def make(stage, model):
    return zero_optimizer(stage, model, torch.optim.Adam,
                          units=list(model.blocks) if stage == 3 else None, **ADAM)


def train(ctx, model, opt, X, Y, steps):
    for step in steps:
        idx = batch(step, ctx.rank, ctx.world_size)
        lm_loss(model(X[idx]), Y[idx]).backward()
        opt.step()
        opt.zero_grad()


def full_params(opt):
    full = opt.full_state_dict()
    return [full[i] for i in range(len(full))]


def run_and_save(ctx, stage, folder):
    model, X, Y = build()
    opt = make(stage, model)
    train(ctx, model, opt, X, Y, range(SAVE_AT))
    save_sharded(folder, opt, step=SAVE_AT, extra={"rank": ctx.rank})
    train(ctx, model, opt, X, Y, range(SAVE_AT, K))
    return full_params(opt)


def resume(ctx, stage, folder, resave):
    model, X, Y = build(seed=5)                 # other weights: the checkpoint must win
    opt = make(stage, model)
    info = load_sharded(latest_sharded(folder), opt)
    save_sharded(resave, opt, step=info["step"])   # what this world size now holds
    train(ctx, model, opt, X, Y, range(info["step"], K))
    return full_params(opt), info


def consolidated(step_dir):
    return consolidate([load_checkpoint(f) for f in sorted(step_dir.glob("rank-*.pt"))])


def plain_torch_from(ctx, state):
    """Single-process torch training of steps SAVE_AT..K-1 from a consolidated state (in a
    run_local rank, for its one compute thread: a GEMM's sums depend on the thread count)."""
    model, X, Y = build(seed=9)
    with torch.no_grad():
        for p, saved in zip(model.parameters(), state["params"]):
            p.copy_(saved)
    opt = torch.optim.Adam(model.parameters(), **ADAM)
    opt.load_state_dict({"state": dict(enumerate(state["state"])),
                         "param_groups": [{**state["param_groups"],
                                           "params": list(range(len(state["params"])))}]})
    for step in range(SAVE_AT, K):
        idx = batch(step)
        lm_loss(model(X[idx]), Y[idx]).backward()
        opt.step()
        opt.zero_grad()
    return [p.detach() for p in model.parameters()]


def single_process_reference():
    model, X, Y = build()
    opt = torch.optim.Adam(model.parameters(), **ADAM)
    for step in range(K):
        idx = batch(step)
        lm_loss(model(X[idx]), Y[idx]).backward()
        opt.step()
        opt.zero_grad()
    return [p.detach() for p in model.parameters()]


def same_bits(a: dict, b: dict) -> bool:
    return (all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
            and a["state"][0].keys() == b["state"][0].keys()
            and all(torch.equal(sa[k], sb[k]) for sa, sb in zip(a["state"], b["state"])
                    for k in sa))


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_resume_bit_identically_at_other_world_sizes(stage, tmp_path):
    folder = tmp_path / "run"
    final_a = run_local(run_and_save, 2, stage, folder, timeout=120)[0]
    step_dir = latest_sharded(folder)
    assert step_dir.name == f"ckpt-{SAVE_AT:06d}"
    assert sorted(f.name for f in step_dir.iterdir()) == [
        sharded_path(folder, SAVE_AT, r, 2).name for r in range(2)]   # no temporary files
    saved = consolidated(step_dir)
    reference = single_process_reference()
    other_stage = {1: 3, 2: 1, 3: 1}[stage]
    for world_size, resume_stage in ((2, stage), (3, stage), (1, stage), (3, other_stage)):
        resave = tmp_path / f"resaved-{world_size}-{resume_stage}"
        results = run_local(resume, world_size, resume_stage, folder, resave, timeout=120)
        final, info = results[0]
        label = f"saved by stage {stage} on 2 ranks, resumed by stage {resume_stage} on " \
                f"{world_size}"
        assert info["step"] == SAVE_AT
        assert [r[1]["extra"] for r in results] == \
            ([{"rank": r} for r in range(2)] if world_size == 2 else [None] * world_size)
        assert same_bits(consolidated(latest_sharded(resave)), saved), label
        if world_size == 2:
            assert all(torch.equal(a, b) for a, b in zip(final, final_a)), label
        err = max(((a - b).abs() - RTOL * b.abs()).max().item()
                  for a, b in zip(final, reference))
        assert err <= ATOL, f"{label}: error {err} against single-process training"
        if world_size == 1:
            plain = run_local(plain_torch_from, 1, saved)[0]
            assert all(torch.equal(a, b) for a, b in zip(final, plain)), label


def test_latest_sharded_skips_incomplete_steps(tmp_path):
    folder = tmp_path / "run"
    run_local(run_and_save, 2, 1, folder, timeout=120)
    later = folder / "ckpt-000009"
    later.mkdir()
    (later / "rank-00000-of-00002.pt").write_bytes(b"")      # rank 1 never finished
    (later / "rank-00001-of-00002.pt.tmp").write_bytes(b"")
    assert latest_sharded(folder).name == f"ckpt-{SAVE_AT:06d}"
    assert latest_sharded(tmp_path / "nothing") is None
