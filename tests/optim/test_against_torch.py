"""hpclab.optim against torch.optim: whole trajectories, step by step.

Tolerance: rtol 1e-5 (atol 1e-6) in float32, rtol 1e-10 (atol 1e-12) in float64, over 200
steps of a random bounded problem (tests/optim/conftest.py) with zero gradients, skipped
(None) gradients and a frozen parameter. Hypothesis draws the hyperparameters.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hpclab.optim as ours

pytestmark = [pytest.mark.unit_b]

STEPS = 200
lrs = st.floats(1e-4, 0.3)
small = st.one_of(st.just(0.0), st.floats(1e-4, 0.1))
betas = st.tuples(st.floats(0.0, 0.99), st.floats(0.0, 0.9999))


@st.composite
def sgd_kwargs(draw):
    momentum = draw(st.one_of(st.just(0.0), st.floats(0.01, 0.99)))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if nesterov else draw(st.one_of(st.just(0.0), st.floats(0.0, 0.9)))
    return {"lr": draw(lrs), "momentum": momentum, "dampening": dampening,
                "weight_decay": draw(small), "nesterov": nesterov, "maximize": draw(st.booleans())}


adam_kwargs = st.fixed_dictionaries({
    "lr": lrs, "betas": betas, "eps": st.sampled_from([1e-8, 1e-6, 1e-3]), "weight_decay": small,
    "amsgrad": st.booleans(), "maximize": st.booleans()})

CASES = {
    "SGD": (ours.SGD, torch.optim.SGD, sgd_kwargs()),
    "Adam": (ours.Adam, torch.optim.Adam, adam_kwargs),
    "Adam-decoupled": (ours.Adam, torch.optim.Adam,
                       adam_kwargs.map(lambda k: {**k, "decoupled_weight_decay": True})),
    "AdamW": (ours.AdamW, torch.optim.AdamW, adam_kwargs),
    "Adamax": (ours.Adamax, torch.optim.Adamax, st.fixed_dictionaries({
        "lr": lrs, "betas": betas, "eps": st.sampled_from([1e-8, 1e-3]), "weight_decay": small,
        "maximize": st.booleans()})),
    "Adagrad": (ours.Adagrad, torch.optim.Adagrad, st.fixed_dictionaries({
        "lr": lrs, "lr_decay": small, "weight_decay": small,
        "initial_accumulator_value": st.floats(0.0, 1.0), "eps": st.sampled_from([1e-10, 1e-3]),
        "maximize": st.booleans()})),
    "RMSprop": (ours.RMSprop, torch.optim.RMSprop, st.fixed_dictionaries({
        "lr": st.floats(1e-4, 0.05), "alpha": st.floats(0.5, 0.999),
        "eps": st.sampled_from([1e-8, 1e-3]), "weight_decay": small,
        "momentum": st.one_of(st.just(0.0), st.floats(0.01, 0.9)), "centered": st.booleans(),
        "maximize": st.booleans()})),
}


def compare(ours_cls, torch_cls, kwargs, dtype, foreach, torch_foreach, helpers, steps=STEPS):
    Problem, run, assert_same = helpers
    problem = Problem(seed=len(repr(kwargs)), dtype=dtype)
    p_ours, _, s_ours = run(problem, lambda ps: ours_cls(ps, foreach=foreach, **kwargs), steps)
    _p_ref, _, s_ref = run(problem, lambda ps: torch_cls(ps, foreach=torch_foreach, **kwargs),
                          steps)
    assert_same(s_ours, s_ref, dtype)
    assert torch.equal(p_ours[-1], torch.ones(3, dtype=dtype)), "a param without grad moved"


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("foreach", [False, True])
def test_defaults_match_torch(name, dtype, foreach, optim_helpers):
    ours_cls, torch_cls, _ = CASES[name]
    kwargs = {"decoupled_weight_decay": True} if name == "Adam-decoupled" else {}
    if name == "SGD":
        kwargs = {"lr": 0.05, "momentum": 0.9}
    compare(ours_cls, torch_cls, kwargs, dtype, foreach, foreach, optim_helpers)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hyperparameters_match_torch(name, optim_helpers):
    ours_cls, torch_cls, strategy = CASES[name]

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(kwargs=strategy, dtype=st.sampled_from([torch.float32, torch.float64]),
           foreach=st.booleans())
    def check(kwargs, dtype, foreach):
        compare(ours_cls, torch_cls, kwargs, dtype, foreach, False, optim_helpers)

    check()


def test_gd_is_plain_sgd(optim_helpers):
    compare(ours.GD, torch.optim.SGD, {"lr": 0.1}, torch.float64, False, False,
            optim_helpers)
    compare(ours.GD, torch.optim.SGD, {"lr": 0.1}, torch.float32, True, False,
            optim_helpers)


@pytest.mark.parametrize("name", sorted(CASES))
def test_multiple_param_groups(name, optim_helpers):
    Problem, run, assert_same = optim_helpers
    ours_cls, torch_cls, _ = CASES[name]
    problem = Problem(seed=3, dtype=torch.float64)

    def groups(ps):  # different lr (and weight decay) per group, like "no decay on biases"
        return [{"params": ps[:2], "lr": 0.02, "weight_decay": 0.01},
                {"params": ps[2:], "lr": 0.005}]

    extra = {"decoupled_weight_decay": True} if name == "Adam-decoupled" else {}
    if name == "SGD":
        extra = {"momentum": 0.9}
    _, _, s_ours = run(problem, lambda ps: ours_cls(groups(ps), **extra), STEPS)
    _, _, s_ref = run(problem, lambda ps: torch_cls(groups(ps), **extra), STEPS)
    assert_same(s_ours, s_ref, torch.float64)


def test_maximize_climbs():
    θ = torch.nn.Parameter(torch.zeros(()))
    opt = ours.Adam([θ], lr=0.1, maximize=True)
    for _ in range(20):
        θ.grad = torch.tensor(1.0)     # ∂J/∂θ > 0: maximising J must increase θ
        opt.step()
    assert θ.item() > 1.5


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adamax"])
def test_tensor_learning_rate(name, optim_helpers):
    """torch.optim accepts a 1-element tensor as lr (loop path); so do we.

    We read its value as a Python float; torch computes with the tensor, i.e. in the
    tensor's dtype, so the two agree to float64 precision for a float64 lr.
    """
    ours_cls, torch_cls, _ = CASES[name]
    kwargs = {"lr": torch.tensor([0.01], dtype=torch.float64)}
    compare(ours_cls, torch_cls, kwargs, torch.float64, False, False, optim_helpers, steps=50)
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        ours_cls([torch.nn.Parameter(torch.zeros(2))], lr=torch.tensor([0.1, 0.2]))
