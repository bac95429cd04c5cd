"""ZeRO stages 1-3 against single-process training, torch's two implementations, the
paper's memory terms and the ring's communication volume, on real gloo process groups.

Reference: one process trains the same model on the whole batch B with the same
optimizer; N_d ranks each take B/N_d of it. After K steps the parameters must agree to
|θ_zero − θ_ref| <= 1e-5 + 1e-4·|θ_ref| (float32 sums in another order; the optimizer's
update is elementwise and bit-for-bit the same on a shard as on the whole tensor).
The models have parameter counts not divisible by N_d (the MLP: 65 elements, a 2-element
bias that is smaller than N_d = 3), so every flat buffer is padded.
"""

from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

import hpclab.optim
from hpclab import comm
from hpclab.cluster.spawn import run_local
from hpclab.memory import FP32, zero_states
from hpclab.memory.measure import held_states
from hpclab.parallel import DistributedDataParallel
from hpclab.parallel.zero import ZeRO1, ZeRO3, zero_optimizer
from hpclab.problems.models import make_mlp
from hpclab.problems.transformer import lm_loss, tiny_transformer

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]

# torch.optim imports torch._dynamo on first use (seconds): once here, not in every fork
torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.1)

B, K = 12, 3
ATOL, RTOL = 1e-5, 1e-4
TINY_MB = 1e-6            # one bucket per parameter
# Adam's ε = 1e-3: attention's key bias has an exactly zero gradient (softmax ignores a
# constant added to every score), so its computed gradient is rounding noise, which
# Adam's m/√v would turn into steps of size η with a small ε; 1e-3 keeps them negligible.
ADAM = {"lr": 0.05, "eps": 1e-3}
OPTIMIZERS = {"adam": (hpclab.optim.Adam, {**ADAM, "weight_decay": 0.01}),
              "sgd": (hpclab.optim.SGD, {"lr": 0.2, "momentum": 0.9}),
              "torch-adamw": (torch.optim.AdamW, ADAM)}


def build(name: str, seed: int = 0):
    """(model, units for stage 3, data X, Y, loss): the MLP 6→7→2 (65 parameters) or a
    tiny transformer (2 blocks, d = 16)."""
    g = torch.Generator().manual_seed(1)
    if name == "mlp":
        model = make_mlp(6, hidden=(7,), out_features=2, activation="tanh", seed=seed)
        X, Y = torch.randn(B * K, 6, generator=g), torch.randint(0, 2, (B * K,), generator=g)
        return model, [model[0], model[2]], X, Y, F.cross_entropy
    model = tiny_transformer(11, seed=seed, block_size=8, d_model=16, n_layers=2, n_heads=2)
    X = torch.randint(0, 11, (B * K, 8), generator=g)
    Y = torch.randint(0, 11, (B * K, 8), generator=g)
    return model, list(model.blocks), X, Y, lm_loss


def batch(step: int, rank: int = 0, world_size: int = 1):
    return list(range(step * B, (step + 1) * B))[rank::world_size]


def reference(name, opt_name):
    model, _, X, Y, loss_fn = build(name)
    cls, kw = OPTIMIZERS[opt_name]
    opt = cls(model.parameters(), **kw)
    for step in range(K):
        idx = batch(step)
        loss_fn(model(X[idx]), Y[idx]).backward()
        opt.step()
        opt.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


def train_zero(ctx, stage, name, opt_name, cap_mb=25):
    """K steps of ZeRO `stage` on this rank's part of each batch; full parameters out."""
    # ranks start from different weights: the broadcast at construction must fix that
    model, units, X, Y, loss_fn = build(name, seed=0 if ctx.rank == 0 else 7 + ctx.rank)
    cls, kw = OPTIMIZERS[opt_name]
    opt = zero_optimizer(stage, model, cls, units=units if stage == 3 else None,
                         **({} if stage == 3 else {"bucket_cap_mb": cap_mb}), **kw)
    for step in range(K):
        idx = batch(step, ctx.rank, ctx.world_size)
        loss_fn(model(X[idx]), Y[idx]).backward()
        opt.step()
        opt.zero_grad()
    full = opt.full_state_dict()
    return [full[i] for i in range(len(full))]


def worst_error(ours, ref):
    return max(((a - b).abs() - RTOL * b.abs()).max().item() for a, b in zip(ours, ref))


CASES = [(stage, name, opt_name, cap)
         for stage in (1, 2, 3) for name in ("mlp", "transformer")
         for opt_name in ("adam", "sgd") for cap in ((25, TINY_MB) if stage < 3 else (25,))]
CASES += [(1, "mlp", "torch-adamw", 25), (3, "mlp", "torch-adamw", 25)]


def equivalence_on_rank(ctx):
    refs = {}
    out = {}
    for stage, name, opt_name, cap in CASES:
        if (name, opt_name) not in refs:
            refs[name, opt_name] = reference(name, opt_name)
        out[stage, name, opt_name, cap] = worst_error(
            train_zero(ctx, stage, name, opt_name, cap), refs[name, opt_name])
    return out


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_stages_equal_single_process(world_size):
    for rank, errors in enumerate(run_local(equivalence_on_rank, world_size, timeout=240)):
        bad = {k: v for k, v in errors.items() if v > ATOL}
        assert not bad, f"rank {rank}: (stage, model, optimizer, bucket MiB) -> error {bad}"
        assert len(errors) == len(CASES)


def accumulation_on_rank(ctx, stage):
    """Two micro-batches per step: the gradient shards must accumulate."""
    model, units, X, Y, loss_fn = build("mlp")
    opt = zero_optimizer(stage, model, hpclab.optim.SGD, units=units if stage == 3 else None,
                         lr=0.2, momentum=0.9)
    for step in range(K):
        idx = batch(step, ctx.rank, ctx.world_size)
        half = len(idx) // 2
        for sub in (idx[:half], idx[half:]):
            (loss_fn(model(X[sub]), Y[sub]) / 2).backward()
        opt.step()
        opt.zero_grad()
    full = opt.full_state_dict()
    return worst_error([full[i] for i in range(len(full))], reference("mlp", "sgd"))


@pytest.mark.parametrize("stage", [2, 3])
def test_gradient_accumulation(stage):
    assert max(run_local(accumulation_on_rank, 2, stage)) <= ATOL


# -- against torch's implementations ------------------------------------------------------
def torch_trajectories_on_rank(ctx):
    """Per step, our parameters against torch's ZeroRedundancyOptimizer (+ torch DDP) for
    stage 1 and against FSDP2's fully_shard for stage 3, both with torch.optim.Adam."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.optim import ZeroRedundancyOptimizer

    mesh = init_device_mesh("cpu", (ctx.world_size,))
    kw = ADAM
    errors = {"zero1-vs-zro": [], "zero3-vs-fsdp2": []}
    for name in ("mlp", "transformer"):
        ours1, _, X, Y, loss_fn = build(name)
        opt1 = ZeRO1(ours1.parameters(), torch.optim.Adam, **kw)
        ref1, *_ = build(name)
        ddp = torch.nn.parallel.DistributedDataParallel(ref1)
        zro = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=torch.optim.Adam, **kw)
        ours3, units, *_ = build(name)
        opt3 = ZeRO3(ours3, torch.optim.Adam, units=units, **kw)
        ref3, ref_units, *_ = build(name)
        for u in ref_units:
            fully_shard(u, mesh=mesh)
        fully_shard(ref3, mesh=mesh)
        fsdp_opt = torch.optim.Adam(ref3.parameters(), **kw)
        for step in range(K):
            idx = batch(step, ctx.rank, ctx.world_size)
            for net, opt in ((ours1, opt1), (ddp, zro), (ours3, opt3), (ref3, fsdp_opt)):
                loss_fn(net(X[idx]), Y[idx]).backward()
                opt.step()
                opt.zero_grad()
            theirs3 = [p.full_tensor() for p in ref3.parameters()]
            full3 = opt3.full_state_dict()
            errors["zero1-vs-zro"].append(worst_error(list(ours1.parameters()),
                                                      list(ref1.parameters())))
            errors["zero3-vs-fsdp2"].append(worst_error([full3[i] for i in range(len(full3))],
                                                        theirs3))
    return errors


@pytest.mark.parametrize("world_size", [2, 3])
def test_trajectories_equal_torch_zero_and_fsdp2(world_size):
    for rank, errors in enumerate(run_local(torch_trajectories_on_rank, world_size,
                                            timeout=240)):
        for what, per_step in errors.items():
            assert len(per_step) == 2 * K
            assert max(per_step) <= ATOL, f"rank {rank}: {what} errors per step {per_step}"


# -- bytes held and bytes sent ----------------------------------------------------------
def padded(n: int, p: int) -> int:
    """Ψ' = p·⌈Ψ/p⌉, independently of the library's layout code."""
    return p * -(-n // p)


def memory_and_volume_on_rank(ctx):
    """held_states after the 2nd backward, and the bytes this rank sends in one step."""
    p = ctx.world_size
    out = {}
    for stage in (0, 1, 2, 3):
        model, units, X, Y, loss_fn = build("transformer")
        if stage == 0:
            net = DistributedDataParallel(model, algorithm="ring")
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
        else:
            net = model
            opt = zero_optimizer(stage, model, torch.optim.Adam,
                                 units=units if stage == 3 else None, lr=0.01)
        peaks = []
        if stage == 3:   # the parameters held while each block computes its forward
            def record(*_, model=model, opt=opt, peaks=peaks):
                peaks.append(held_states(model, opt).parameters)
            for u in units:
                u.register_forward_pre_hook(record)   # runs after ZeRO3's own pre-hook
        for step in range(2):
            idx = batch(step, ctx.rank, p)
            if step == 1:
                with comm.tracing() as trace:
                    loss_fn(net(X[idx]), Y[idx]).backward()
                    held = asdict(held_states(model, opt))
                    opt.step()
            else:
                loss_fn(net(X[idx]), Y[idx]).backward()
                opt.step()
            opt.zero_grad()
        if stage == 0:
            net.close()   # DDP reduces on its comm thread, out of this trace's reach, so
            # trace DP's collective directly: one ring all-reduce of all Ψ gradients
            with comm.tracing() as trace:
                comm.all_reduce(torch.cat([q.detach().reshape(-1) for q in model.parameters()]),
                                op="avg")
        sent = sum(m.nbytes for m in trace if m.src == ctx.rank)
        out[stage] = {"held": held, "sent": sent, "peaks": peaks[-len(units):],
                      "collectives": sorted({m.collective for m in trace})}
    model, units, *_ = build("transformer")
    sizes = {"all": sum(q.numel() for q in model.parameters()),
             "tensors": len(list(model.parameters())),
             "units": [sum(q.numel() for q in u.parameters()) for u in units]}
    sizes["root"] = sizes["all"] - sum(sizes["units"])
    return out, sizes


@pytest.mark.parametrize("world_size", [2, 3])
def test_bytes_per_rank_and_communication_volume(world_size):
    """fp32 Adam: 4 bytes per element for θ and g, K = 8 (m and v); one bucket holds all
    parameters in stages 1–2 (Ψ' = p⌈Ψ/p⌉), stage 3 pads each unit, and each shard's
    optimizer state has a 4-byte step counter."""
    p = world_size
    for rank, (out, sizes) in enumerate(run_local(memory_and_volume_on_rank, p, timeout=240)):
        psi = sizes["all"]
        n_params = sizes["tensors"]
        one = padded(psi, p)               # stages 1-2: one bucket (25 MiB cap)
        per_unit = [padded(n, p) for n in [*sizes["units"], sizes["root"]]]
        dp, z1, z2, z3 = (out[s]["held"] for s in (0, 1, 2, 3))
        assert dp == {"parameters": 4 * psi, "gradients": 4 * psi,
                      "optimizer": 8 * psi + 4 * n_params}, dp
        assert z1 == {"parameters": 4 * one, "gradients": 4 * psi,
                      "optimizer": 8 * one // p + 4}, z1
        assert z2 == {"parameters": 4 * one, "gradients": 4 * one // p,
                      "optimizer": 8 * one // p + 4}, z2
        assert z3 == {"parameters": 4 * sum(per_unit) // p,
                      "gradients": 4 * sum(per_unit) // p,
                      "optimizer": 8 * sum(per_unit) // p + 4 * len(per_unit)}, z3
        # the calculator (hpclab.memory, the paper's terms (4 + 4 + 8/N_d)Ψ, (4 + 12/N_d)Ψ,
        # 16Ψ/N_d) within the padding and the step counters, category by category
        for stage, held in enumerate((dp, z1, z2, z3)):
            predicted = zero_states(psi, "adam", FP32, dp=p, zero=stage)
            for name, bytes_predicted in zip(("parameters", "gradients", "optimizer"),
                                             predicted):
                assert abs(held[name] - bytes_predicted) <= 0.01 * bytes_predicted, \
                    (stage, name, held[name], bytes_predicted)
        # stage 3: while a block computes, its full parameters, the root's and the shards
        for peak, n in zip(out[3]["peaks"], sizes["units"]):
            root_full = 4 * padded(sizes["root"], p)
            assert peak == 4 * sum(per_unit) // p + root_full + 4 * padded(n, p)
        # bytes this rank sends per step: DP 2Ψ(p−1)/p, stages 1-2 the same, stage 3 3Ψ(p−1)/p
        assert out[0]["collectives"] == ["all_reduce"]
        assert out[1]["collectives"] == out[2]["collectives"] == ["all_gather", "reduce_scatter"]
        assert out[3]["collectives"] == ["all_gather", "reduce_scatter"]
        assert out[1]["sent"] == out[2]["sent"] == 2 * 4 * (p - 1) * one // p
        assert out[3]["sent"] == 3 * 4 * (p - 1) * sum(per_unit) // p
        assert abs(out[0]["sent"] - 2 * 4 * (p - 1) * psi / p) <= 4 * 2 * (p - 1) * n_params
        assert abs(out[1]["sent"] - out[0]["sent"]) <= 4 * 2 * (p - 1) * n_params, \
            f"rank {rank}: stage 1 sends {out[1]['sent']} B, DP {out[0]['sent']} B"


# -- stage 3 outside training, and errors -------------------------------------------------
def api_on_rank(ctx):
    model, units, X, Y, loss_fn = build("transformer")
    opt = ZeRO3(model, torch.optim.Adam, units=units, **ADAM)
    loss_fn(model(X[:4]), Y[:4]).backward()
    opt.step()
    opt.zero_grad()
    plain, *_ = build("transformer")
    full = opt.full_state_dict()
    with torch.no_grad():
        for i, p in enumerate(plain.parameters()):
            p.copy_(full[i])
        expected = plain(X[:4])
        no_grad_eval = model(X[:4])              # gathers and frees unit by unit
    freed = all(p.untyped_storage().nbytes() == 0 for p in model.parameters())
    with opt.full_parameters(), torch.no_grad():
        inside_eval = model(X[:4])               # a forward inside frees nothing
        inside = [p.detach().clone() for p in model.parameters()]
    errors = []
    for call in (lambda: ZeRO3(model, object),
                 lambda: ZeRO3(build("mlp")[0], torch.optim.Adam, units=[plain.blocks[0]]),
                 lambda: zero_optimizer(1, plain, torch.optim.Adam, units=units),
                 lambda: zero_optimizer(4, plain, torch.optim.Adam),
                 lambda: opt.zero_grad(set_to_none=False)):
        try:
            call()
            errors.append(None)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    return (torch.equal(no_grad_eval, expected) and torch.equal(inside_eval, expected), freed,
            all(torch.equal(a, full[i]) for i, a in enumerate(inside)), errors)


def test_stage3_evaluation_full_parameters_and_errors():
    for same_output, freed, inside_ok, errors in run_local(api_on_rank, 2):
        assert same_output, "an evaluation forward must equal the gathered model's"
        assert freed, "outside forward/backward stage 3's full parameters hold no memory"
        assert inside_ok, "full_parameters() must show every parameter in full"
        assert None not in errors, errors
        for message, word in zip(errors, ("optimizer_class", "not a submodule", "stage 3",
                                          "stage must be one of", "set_to_none")):
            assert word in message, message
