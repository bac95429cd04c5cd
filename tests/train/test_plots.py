"""Plot helpers draw what the history holds (headless, Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from hpclab.metrics import StepRecord
from hpclab.plots import (
    plot_contours,
    plot_losses,
    plot_regression_fit,
    plot_throughput,
    plot_time_split,
    save_figure,
)
from hpclab.problems import ROSENBROCK, make_linear_regression, trajectory
from hpclab.train import History

pytestmark = [pytest.mark.unit_b]


def history():
    recs = [StepRecord(step=i, loss=1.0 / (i + 1), samples=10, t_step=0.1, t_forward=0.03,
                       t_backward=0.04, t_optim=0.01, extra={"tokens": 40,
                                                             "tokens_per_s": 400.0})
            for i in range(20)]
    return History(records=recs, evals=[{"step": 9, "val_loss": 0.3},
                                        {"step": 19, "val_loss": 0.2}], best_step=19)


def test_loss_and_throughput_plots_hold_the_data(tmp_path):
    h = history()
    fig, axes = plt.subplots(1, 3)
    plot_losses(h, ax=axes[0])
    train_line, val_line = axes[0].lines[:2]
    np.testing.assert_allclose(train_line.get_ydata(), h.losses())
    np.testing.assert_allclose(val_line.get_xdata(), [9, 19])
    plot_throughput(h, ax=axes[1])
    assert axes[1].get_ylabel() == "tokens/s"
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), 400.0)
    plot_time_split(h, ax=axes[2])
    heights = [p.get_height() for p in axes[2].patches]
    assert sum(heights) == pytest.approx(100.0)          # ms per step
    save_figure(fig, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_problem_plots():
    ax = plot_contours(ROSENBROCK, {"SGD": trajectory(ROSENBROCK, torch.optim.SGD, steps=5,
                                                      lr=1e-3)})
    assert ax.lines[-1].get_xdata().shape == (6,)
    data = make_linear_regression(n_samples=20)
    ax = plot_regression_fit(data.X, data.y, {"truth": data.theta_true})
    assert len(ax.lines) == 1
    with pytest.raises(ValueError, match="draws one feature"):
        plot_regression_fit(np.ones((3, 3)), np.ones(3), {})
    plt.close("all")
