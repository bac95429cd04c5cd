"""`hpclab demo`: the headless tour — train the course's problems, write plots and a summary.

    hpclab demo --engines 2 --out out/demo

Sections, each a function `section_NAME(cfg) -> dict` that writes `NAME.png` (and any
other files) into cfg.out and returns the figures it wants in summary.json:

    paths_2d       optimizer paths on Rosenbrock (GD, momentum, Adam)
    regression     full-batch gradient descent vs least squares; learning rates
    digits         an MLP on sklearn digits with validation, early stopping, inference
    transformer    a tiny character-level transformer, 150 steps, tokens/s
    data_parallel  the digits MLP on `--engines` engines with hpclab's DDP

A new section is one function plus one entry in SECTIONS. About a minute on two CPU
cores for the single-process sections, plus the engines' start-up.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hpclab import optim


@dataclass
class DemoConfig:
    out: Path = Path("out/demo")
    engines: int = 2
    seed: int = 0
    paths_steps: int = 500
    regression_steps: int = 200
    digits_epochs: int = 30
    transformer_steps: int = 150
    dp_steps: int = 100
    progress: bool = False


def section_paths_2d(cfg: DemoConfig) -> dict:
    import matplotlib.pyplot as plt

    from hpclab.plots import plot_contours, save_figure
    from hpclab.problems import ROSENBROCK, trajectory
    n = cfg.paths_steps
    paths = {"GD η=1e-3": trajectory(ROSENBROCK, optim.SGD, steps=n, lr=1e-3),
             "momentum 0.9": trajectory(ROSENBROCK, optim.SGD, steps=n, lr=1e-3,
                                        momentum=0.9),
             "Adam η=0.05": trajectory(ROSENBROCK, optim.Adam, steps=n, lr=0.05)}
    fig, ax = plt.subplots(figsize=(6, 5))
    plot_contours(ROSENBROCK, paths, ax=ax)
    save_figure(fig, cfg.out / "paths_2d.png")
    return {"distance_to_minimum": {k: float(np.linalg.norm(p[-1] - [1.0, 1.0]))
                                    for k, p in paths.items()}}


def section_regression(cfg: DemoConfig) -> dict:
    import matplotlib.pyplot as plt

    from hpclab.plots import plot_regression_fit, save_figure
    from hpclab.problems import gradient_descent, least_squares, make_linear_regression
    data = make_linear_regression(n_samples=100, n_features=1, noise=10.0, seed=cfg.seed)
    theta_ls = least_squares(data.X, data.y)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    runs = {lr: gradient_descent(data.X, data.y, lr=lr, steps=cfg.regression_steps)
            for lr in (0.01, 0.1, 1.0)}
    for lr, (_, hist) in runs.items():
        ax2.semilogy(hist.losses, label=f"η = {lr}")
    ax2.set_xlabel("step")
    ax2.set_ylabel("J(θ)")
    ax2.legend()
    theta_gd = runs[0.1][0]
    plot_regression_fit(data.X, data.y, {"least squares": theta_ls,
                                         "gradient descent η=0.1": theta_gd}, ax=ax1)
    save_figure(fig, cfg.out / "regression.png")
    return {"theta_gd": theta_gd.tolist(), "theta_least_squares": theta_ls.tolist(),
            "max_abs_difference": float(np.abs(theta_gd - theta_ls).max())}


def section_digits(cfg: DemoConfig) -> dict:
    import matplotlib.pyplot as plt

    from hpclab.plots import plot_losses, plot_throughput, plot_time_split, save_figure
    from hpclab.problems import (
        digits_loaders,
        load_digits_split,
        load_model,
        make_mlp,
        predict_digits,
        save_model,
    )
    from hpclab.train import EarlyStopping, fit
    config = {"in_features": 64, "hidden": (128,), "out_features": 10, "seed": cfg.seed}
    train, val = digits_loaders(batch_size=32, train_size=400, seed=cfg.seed)
    model = make_mlp(**config)
    history = fit(model, optim.Adam(model.parameters(), lr=3e-3), train, F.cross_entropy,
                  epochs=cfg.digits_epochs, val_loader=val,
                  early_stopping=EarlyStopping(patience=5), progress=cfg.progress)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    plot_losses(history, ax=axes[0], smooth=5)
    plot_throughput(history, ax=axes[1])
    plot_time_split(history, ax=axes[2])
    save_figure(fig, cfg.out / "digits.png")
    # Inference as a user would do it: a saved file, raw images in, labels out.
    save_model(model, cfg.out / "digits_mlp.pt", "make_mlp", config)
    split = load_digits_split(seed=cfg.seed)
    raw_val = (split.X_val * 16).numpy()
    labels, _ = predict_digits(load_model(cfg.out / "digits_mlp.pt"), raw_val)
    return {**history.summary(), "optimizer": "hpclab.optim.Adam",
            "inference_accuracy": float((labels == split.y_val).float().mean())}


def section_transformer(cfg: DemoConfig) -> dict:
    import matplotlib.pyplot as plt

    from hpclab.plots import plot_losses, plot_throughput, save_figure
    from hpclab.problems import generate, lm_loss, text_loaders, tiny_transformer
    from hpclab.train import fit
    train, val, tok = text_loaders(block_size=64, batch_size=32, batches_per_epoch=50,
                                   seed=cfg.seed)
    model = tiny_transformer(tok.vocab_size, seed=cfg.seed)
    history = fit(model, optim.AdamW(model.parameters(), lr=3e-3), train, lm_loss,
                  steps=cfg.transformer_steps, val_loader=val, progress=cfg.progress)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    plot_losses(history, ax=ax1, smooth=10)
    plot_throughput(history, ax=ax2)
    save_figure(fig, cfg.out / "transformer.png")
    return {**history.summary(), "parameters": sum(p.numel() for p in model.parameters()),
            "sample": generate(model, tok, "Once upon a time", 120, temperature=0.8)}


def section_data_parallel(cfg: DemoConfig) -> dict:
    """The digits MLP on cfg.engines engines with our DDP: loss per rank, time split."""
    import matplotlib.pyplot as plt

    import hpclab
    from hpclab.parallel import Trainer, TrainerConfig
    from hpclab.plots import save_figure
    from hpclab.problems import make_mlp
    with hpclab.connect(n=cfg.engines) as cluster:
        trainer = Trainer(cluster, lambda: make_mlp(64, (128,), 10, seed=cfg.seed),
                          _digits_train, lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                          TrainerConfig(batch_size=64, algorithm="ring", seed=cfg.seed))
        history = trainer.fit(steps=cfg.dp_steps).wait()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in range(cfg.engines):
        recs = [x for x in history if x.rank == r]
        ax1.plot([x.step for x in recs], [x.loss for x in recs], label=f"rank {r}")
    ax1.set_xlabel("step")
    ax1.set_ylabel("local loss")
    ax1.legend()
    recs = [x for x in history if x.rank == 0 and x.step > 5]
    split = {k: 1e3 * sum(getattr(x, f"t_{k}") for x in recs) / max(len(recs), 1)
             for k in ("forward", "backward", "comm", "optim")}
    ax2.bar(list(split), list(split.values()))
    ax2.set_ylabel("ms per step (rank 0; comm = exposed)")
    save_figure(fig, cfg.out / "data_parallel.png")
    last = [x.loss for x in history if x.step == cfg.dp_steps]
    return {"engines": cfg.engines, "steps": cfg.dp_steps, "final_loss_mean": sum(last) / len(last),
            "ms_per_step_split_rank0": split,
            "samples_per_s_total": sum(x.samples_per_s for x in history
                                       if x.step == cfg.dp_steps)}


def _digits_train():
    from hpclab.problems import load_digits_split
    split = load_digits_split()
    return split.X_train, split.y_train


# Each entry: (name, function). The data-parallel section is added here as one more entry.
SECTIONS = [("paths_2d", section_paths_2d), ("regression", section_regression),
            ("digits", section_digits), ("transformer", section_transformer),
            ("data_parallel", section_data_parallel)]


def run(cfg: DemoConfig, sections=SECTIONS) -> dict:
    cfg.out.mkdir(parents=True, exist_ok=True)
    summary = {"config": {**asdict(cfg), "out": str(cfg.out)}, "sections": {}}
    for name, section in sections:
        t0 = time.perf_counter()
        print(f"[demo] {name} ...", flush=True)
        result = section(cfg)
        result["seconds"] = round(time.perf_counter() - t0, 2)
        summary["sections"][name] = result
        print(f"[demo] {name} done in {result['seconds']:.1f} s", flush=True)
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpclab demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DemoConfig.out,
                        help="folder for the PNGs and summary.json (default: out/demo)")
    parser.add_argument("--engines", type=int, default=DemoConfig.engines,
                        help="engines for the data-parallel section (recorded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show tqdm progress bars")
    args = parser.parse_args(argv)
    if args.engines < 1:
        parser.error(f"--engines must be >= 1, got {args.engines}")
    import matplotlib
    matplotlib.use("Agg")   # headless: no display needed, PNGs only
    torch.manual_seed(args.seed)
    cfg = DemoConfig(out=args.out, engines=args.engines, seed=args.seed,
                     progress=args.progress)
    t0 = time.perf_counter()
    run(cfg)
    pngs = sorted(p.name for p in cfg.out.glob("*.png"))
    print(f"[demo] finished in {time.perf_counter() - t0:.1f} s; wrote {', '.join(pngs)} "
          f"and summary.json to {cfg.out.resolve()}")
    return 0
