"""The optimizer playground: its paths are hpclab.optim's, checked against torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpclab.problems import FUNCTIONS, ROSENBROCK
from hpclab.widgets import OptimizerPlayground
from hpclab.widgets.playground_state import OPTIMIZERS, Choice, run_optimizer

pytestmark = [pytest.mark.unit_b]

TORCH = {  # the same update written with torch.optim
    "GD": lambda p, h: torch.optim.SGD(p, lr=h["lr"]),
    "SGD (noise)": lambda p, h: torch.optim.SGD(p, lr=h["lr"]),
    "momentum": lambda p, h: torch.optim.SGD(p, lr=h["lr"], momentum=h["momentum"]),
    "Nesterov": lambda p, h: torch.optim.SGD(p, lr=h["lr"], momentum=h["momentum"],
                                             nesterov=True),
    "Adagrad": lambda p, h: torch.optim.Adagrad(p, lr=h["lr"]),
    "RMSprop": lambda p, h: torch.optim.RMSprop(p, lr=h["lr"], alpha=h["alpha"]),
    "Adam": lambda p, h: torch.optim.Adam(p, lr=h["lr"], betas=(h["beta1"], h["beta2"])),
}


def _torch_path(fn, name, hyper, steps, seed=0):
    p = torch.tensor(fn.start, dtype=torch.float64, requires_grad=True)
    opt = TORCH[name]([p], hyper)
    gen = torch.Generator().manual_seed(seed)
    out = [p.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        fn.loss(p).backward()
        if hyper.get("noise"):
            p.grad += hyper["noise"] * torch.randn(2, generator=gen, dtype=torch.float64)
        opt.step()
        out.append(p.detach().clone())
    return torch.stack(out).numpy()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("fname", ["quadratic", "rosenbrock"])
def test_paths_equal_torch_optim(name, fname):
    fn = FUNCTIONS[fname]
    choice = Choice(name, lr=1e-3 if fname == "rosenbrock" else 0.05)
    run = run_optimizer(fn, choice, steps=150)
    np.testing.assert_allclose(run.points, _torch_path(fn, name, choice.hyper, 150),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(run.losses, [fn(*pt) for pt in run.points], rtol=1e-12)


def test_too_large_step_is_caught_not_nan():
    run = run_optimizer(ROSENBROCK, Choice("GD", lr=1.0), steps=50)
    assert run.diverged and np.isfinite(run.points).all()


def test_choice_validation():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        Choice("LBFGS")
    with pytest.raises(ValueError, match="takes hyperparameters"):
        Choice("GD", momentum=0.9)
    with pytest.raises(ValueError, match="lr must be >= 0, got -0.1"):
        Choice("Adam", lr=-0.1)


def test_widget_follows_its_controls():
    pg = OptimizerPlayground("quadratic", optimizers=["GD", "Adam"], steps=40)
    assert [r.choice.name for r in pg.runs] == ["GD", "Adam"]
    before = pg.runs[0].points.copy()
    pg.lr["GD"].value = 0.01
    assert pg.runs[0].choice.hyper["lr"] == pytest.approx(0.01)
    assert not np.allclose(before, pg.runs[0].points)
    pg.enabled["momentum"].value = True
    assert [r.choice.name for r in pg.runs] == ["GD", "momentum", "Adam"]
    pg.function.value = "saddle"
    assert pg.lr["Adam"].value == pytest.approx(0.05) and pg.runs[0].points.shape == (41, 2)
    pg.step_slider.value = 10
    assert pg.frame == 10
    # what the browser draws: the full paths, sent once per change
    xs, ys = pg.plot._data["path:Adam"]
    np.testing.assert_allclose(xs, pg.runs[-1].points[:, 0], rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(ys, pg.runs[-1].points[:, 1], rtol=1e-4, atol=1e-12)
    assert {s["id"] for s in pg.plot.series} >= {"contours", "path:GD", "gap:momentum"}
    assert pg.snapshot().data[:4] == b"\x89PNG"
