"""State dicts, foreach vs loop, and the ValueErrors for bad hyperparameters."""

import copy

import pytest
import torch

import hpclab.optim as ours

pytestmark = [pytest.mark.unit_b]

ALL = {
    "GD": (ours.GD, {"lr": 0.05}),
    "SGD": (ours.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    "Adagrad": (ours.Adagrad, {"lr": 0.05, "lr_decay": 1e-3}),
    "RMSprop": (ours.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
    "Adam": (ours.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 1e-3}),
    "AdamW": (ours.AdamW, {"lr": 0.01}),
    "Adamax": (ours.Adamax, {"lr": 0.01, "weight_decay": 1e-3}),
    "LAMB": (ours.LAMB, {"lr": 0.01, "weight_decay": 0.01}),
}


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_foreach_equals_loop(name, dtype, optim_helpers):
    Problem, run, assert_same = optim_helpers
    cls, kwargs = ALL[name]
    problem = Problem(seed=11, dtype=dtype)
    _, _, s_loop = run(problem, lambda ps: cls(ps, foreach=False, **kwargs), 200)
    _, _, s_each = run(problem, lambda ps: cls(ps, foreach=True, **kwargs), 200)
    assert_same(s_loop, s_each, dtype)


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("foreach", [False, True])
def test_state_dict_resumes_identically(name, foreach, optim_helpers):
    Problem, run, _ = optim_helpers
    cls, kwargs = ALL[name]
    problem = Problem(seed=5, dtype=torch.float32)

    def make(ps):
        return cls(ps, foreach=foreach, **kwargs)

    params, opt, _ = run(problem, make, 60)
    saved_params = [p.detach().clone() for p in params]
    saved_state = copy.deepcopy(opt.state_dict())
    run(problem, make, 60, start=60, params=params, opt=opt)

    resumed = [torch.nn.Parameter(p.clone()) for p in saved_params]
    opt2 = make(resumed)
    opt2.load_state_dict(saved_state)
    run(problem, make, 60, start=60, params=resumed, opt=opt2)
    for a, b in zip(params, resumed):
        assert torch.equal(a, b), "resuming from a state_dict changed the trajectory"


@pytest.mark.parametrize("name,torch_cls", [("SGD", torch.optim.SGD),
                                            ("Adam", torch.optim.Adam),
                                            ("RMSprop", torch.optim.RMSprop),
                                            ("Adagrad", torch.optim.Adagrad)])
def test_state_dict_interchangeable_with_torch(name, torch_cls, optim_helpers):
    """Same state keys as torch.optim: a torch checkpoint resumes in hpclab and vice versa."""
    Problem, run, assert_same = optim_helpers
    cls, kwargs = ALL[name]
    problem = Problem(seed=9, dtype=torch.float64)
    params, opt_t, _ = run(problem, lambda ps: torch_cls(ps, **kwargs), 50)
    ours_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt_o = cls(ours_params, **kwargs)
    opt_o.load_state_dict(copy.deepcopy(opt_t.state_dict()))
    assert opt_o.state_dict()["state"].keys() == opt_t.state_dict()["state"].keys()
    for k, s in opt_t.state_dict()["state"].items():
        assert opt_o.state_dict()["state"][k].keys() == s.keys()
    _, _, s_t = run(problem, None, 50, start=50, params=params, opt=opt_t)
    _, _, s_o = run(problem, None, 50, start=50, params=ours_params, opt=opt_o)
    assert_same(s_o, s_t, torch.float64)


def test_zero_grad_and_lr_scheduler_compatibility():
    θ = torch.nn.Parameter(torch.ones(2))
    opt = ours.SGD([θ], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        θ.grad = torch.ones(2)
        opt.step()
        sched.step()
    assert θ.tolist() == [1 - 1.0 - 0.5 - 0.25] * 2
    opt.zero_grad()
    assert θ.grad is None


p = [torch.nn.Parameter(torch.zeros(2))]
BAD = [
    (ours.SGD, {"lr": -0.1}, "Invalid learning rate: -0.1"),
    (ours.GD, {"lr": -1.0}, "Invalid learning rate: -1.0"),
    (ours.SGD, {"momentum": -0.5}, "Invalid momentum value: -0.5"),
    (ours.SGD, {"weight_decay": -1e-4}, "Invalid weight_decay value: -0.0001"),
    (ours.SGD, {"momentum": 0.9, "dampening": 0.1, "nesterov": True},
     "Nesterov momentum requires a momentum and zero dampening"),
    (ours.SGD, {"momentum": 0.0, "nesterov": True},
     "Nesterov momentum requires a momentum and zero dampening"),
    (ours.Adam, {"eps": -1e-8}, "Invalid epsilon value: -1e-08"),
    (ours.Adam, {"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    (ours.Adam, {"betas": (0.9, -0.1)}, "Invalid beta parameter at index 1: -0.1"),
    (ours.AdamW, {"weight_decay": -0.01}, "Invalid weight_decay value: -0.01"),
    (ours.Adamax, {"betas": (0.9, 1.5)}, "Invalid beta parameter at index 1: 1.5"),
    (ours.Adagrad, {"lr_decay": -1.0}, "Invalid lr_decay value: -1.0"),
    (ours.Adagrad, {"initial_accumulator_value": -1.0},
     "Invalid initial_accumulator_value value: -1.0"),
    (ours.RMSprop, {"alpha": -0.9}, "Invalid alpha value: -0.9"),
    (ours.LAMB, {"lr": -3.0}, "Invalid learning rate: -3.0"),
    (ours.LAMB, {"betas": (-0.1, 0.9)}, "Invalid beta parameter at index 0: -0.1"),
    (ours.LAMB, {"clamp_value": 0.0}, "Invalid clamp_value: 0.0"),
]


@pytest.mark.parametrize("cls,kwargs,message", BAD, ids=[m for *_, m in BAD])
def test_bad_hyperparameters_raise_like_torch(cls, kwargs, message):
    with pytest.raises(ValueError) as ours_err:
        cls(p, **kwargs)
    assert message in str(ours_err.value)
    torch_cls = getattr(torch.optim, cls.__name__, None)
    if torch_cls is not None:
        with pytest.raises(ValueError) as torch_err:
            torch_cls(p, **kwargs)
        assert str(torch_err.value) == str(ours_err.value)


def test_signatures_mirror_torch():
    import inspect
    for name in ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adamax"]:
        ours_sig = inspect.signature(getattr(ours, name)).parameters
        torch_sig = inspect.signature(getattr(torch.optim, name)).parameters
        for arg, param in ours_sig.items():
            assert arg in torch_sig, f"{name}: torch has no argument {arg!r}"
            assert param.default == torch_sig[arg].default, f"{name}.{arg} default differs"
            assert param.kind == torch_sig[arg].kind, f"{name}.{arg} kind differs"
