"""The single-process training loop that everything else builds on.

    history = fit(model, optimizer, train_loader, loss_fn, epochs=20,
                  val_loader=val_loader, early_stopping=EarlyStopping(patience=5))
    history.losses(), history.val_losses(), history.samples_per_s()

One optimisation step (`train_step`) is, with its time split as `StepRecord` reports it:

    for each of the a micro-batches (a = accumulation, usually 1):
      forward    ŷ = model(x_k), J_k = loss_fn(ŷ, y_k) / a          → t_forward
      [ranks]    before the last backward: J = mean of the ranks' J  → t_comm
      backward   ∇J_k by autograd, accumulated in p.grad            → t_backward
    [hook]     after_backward(model): e.g. all-reduce ∇J             → t_comm
    optimizer  clip ‖∇J‖ (optional), θ ← update(θ, ∇J)               → t_optim

The same step runs in single-process training (`fit`) and on every rank of data-parallel
training (hpclab.parallel.worker), where the model is a DistributedDataParallel that
averages ∇J inside backward (no_sync for all micro-batches but the last) or
`after_backward` averages it. A NaN or infinite loss stops training with
`NonFiniteLossError` (a FloatingPointError) naming the step and the last finite loss — on
every rank at the same step, because the ranks agree on the loss first.

Conventions: a batch is `(inputs, targets)`; samples = len(inputs); integer (B, T) inputs
are token ids and also count tokens = B·T. With `flops_per_sample` (model FLOPs of one
sample's forward + backward, hpclab.flops.training_flops) and `peak_flops` (FLOP/s,
hpclab.flops.peak_flops) the record also carries extra["model_flops"] and extra["mfu"],
the model FLOPs utilisation of the step. A scheduler is stepped once per optimisation
step. Plots of a History live in `hpclab.plots`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from hpclab.flops import mfu
from hpclab.metrics import StepRecord


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or ±inf; training stopped before the optimizer step."""

    def __init__(self, step: int, loss: float, last_finite: float | None = None):
        self.step, self.loss, self.last_finite = step, loss, last_finite
        last = "none yet" if last_finite is None else f"{last_finite:.6g}"
        super().__init__(f"loss is {loss} at step {step} (last finite loss: {last}); "
                         f"try a smaller learning rate or gradient clipping")


class StopTraining(Exception):
    """Raise from a callback to end `fit` cleanly after the current step."""


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by `min_delta` for `patience`
    evaluations in a row; with restore_best the model gets its best weights back."""
    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True
    best_loss: float = math.inf
    best_step: int | None = None
    bad_evals: int = 0
    best_state: dict | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")

    def update(self, val_loss: float, step: int, model: torch.nn.Module) -> bool:
        """Record one evaluation; True means: stop now."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_step, self.bad_evals = val_loss, step, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.bad_evals += 1
        return self.bad_evals >= self.patience


@dataclass
class History:
    records: list = field(default_factory=list)   # one StepRecord per step
    evals: list = field(default_factory=list)     # {"step", "epoch", "val_loss", ...}
    stop_reason: str = ""                         # "", "early_stopping" or "callback"
    best_step: int | None = None

    def steps(self) -> list:
        return [r.step for r in self.records]

    def losses(self) -> list:
        return [r.loss for r in self.records]

    def val_steps(self) -> list:
        return [e["step"] for e in self.evals]

    def val_losses(self) -> list:
        return [e["val_loss"] for e in self.evals]

    def samples_per_s(self) -> float:
        """Average over the run: Σ samples / Σ t_step."""
        t = sum(r.t_step for r in self.records)
        return sum(r.samples for r in self.records) / t if t > 0 else 0.0

    def tokens_per_s(self) -> float:
        t = sum(r.t_step for r in self.records)
        return sum(r.extra.get("tokens", 0) for r in self.records) / t if t > 0 else 0.0

    def summary(self) -> dict:
        s = {"steps": len(self.records), "samples_per_s": self.samples_per_s(),
             "final_loss": self.records[-1].loss if self.records else None,
             "stop_reason": self.stop_reason or "finished", "best_step": self.best_step}
        if self.evals:
            # After early stopping the model holds the best weights: report that eval.
            best = [e for e in self.evals if e["step"] == self.best_step]
            s.update({k: v for k, v in (best or self.evals)[-1].items()
                      if k.startswith("val_")})
        if any("tokens" in r.extra for r in self.records):
            s["tokens_per_s"] = self.tokens_per_s()
        return s


def _sync(device: torch.device) -> None:
    # CUDA runs asynchronously: without a sync the time lands in whichever phase waits.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def move_batch(batch, device: torch.device):
    inputs, targets = batch
    return inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch,
               loss_fn: Callable, *, step: int = 0, epoch: int = 0, accumulation: int = 1,
               after_backward: Callable | None = None, clip_grad_norm: float | None = None,
               last_finite: float | None = None, group=None, rank: int = 0,
               world_size: int = 1, flops_per_sample: float | None = None,
               peak_flops: float | None = None) -> StepRecord:
    """One optimisation step on one batch; returns its StepRecord (times in seconds).

    accumulation = a splits the batch into a equal micro-batches and accumulates the
    gradient of J = (1/a) Σ_k J_k, the loss of the whole batch; a model with `no_sync()`
    (DistributedDataParallel) communicates only in the last micro-batch's backward.

    Data parallel (world_size > 1 ranks of `group`, each passing its own shard): before
    the backward that communicates, the ranks agree on the loss with one all-reduce,
    J = (1/p) Σ_r J_r, the loss of the global batch, which the record reports (this
    rank's own in extra["local_loss"]). A NaN or ±inf on any rank makes that sum
    non-finite on every rank, so all ranks raise the same NonFiniteLossError at the same
    step (`last_finite`: the previous step's loss, for the message) and none is left
    waiting for a peer that stopped.

    after_backward(model) runs between backward and the optimizer step and is timed as
    t_comm, with the agreement; if it returns a dict, that goes into the record's `extra`.
    """
    if accumulation < 1:
        raise ValueError(f"accumulation must be >= 1, got {accumulation}")
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    inputs, targets = move_batch(batch, device)
    if len(inputs) % accumulation:
        raise ValueError(f"the batch of {len(inputs)} samples does not split into "
                         f"accumulation={accumulation} equal micro-batches")
    micro = len(inputs) // accumulation
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    t_forward = t_backward = t_comm = local = 0.0
    for k in range(accumulation):
        last = k == accumulation - 1
        t1 = time.perf_counter()
        part = slice(k * micro, (k + 1) * micro)
        loss = loss_fn(model(inputs[part]), targets[part]) / accumulation
        local += loss.item()
        t2 = time.perf_counter()
        t_forward += t2 - t1
        if last:
            loss_value = _agree(local, group, world_size, device)
            if not math.isfinite(loss_value):
                raise NonFiniteLossError(step, loss_value, last_finite)
            t_comm += time.perf_counter() - t2
        t3 = time.perf_counter()
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") \
            else model.no_sync()
        with sync:
            loss.backward()
        _sync(device)
        t_backward += time.perf_counter() - t3
    extra = {"local_loss": local} if world_size > 1 else {}
    t4 = time.perf_counter()
    if after_backward is not None:
        extra.update(after_backward(model) or {})
        _sync(device)
    t5 = time.perf_counter()
    if clip_grad_norm is not None:
        extra["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                                  clip_grad_norm))
    optimizer.step()
    _sync(device)
    t6 = time.perf_counter()
    samples = len(inputs)
    if not inputs.is_floating_point() and inputs.ndim == 2:
        extra["tokens"] = inputs.numel()
        extra["tokens_per_s"] = inputs.numel() / (t6 - t0)
    if flops_per_sample is not None:
        extra["model_flops"] = flops_per_sample * samples
        if peak_flops is not None:
            extra["mfu"] = mfu(extra["model_flops"], t6 - t0, peak_flops)
    return StepRecord(step=step, loss=loss_value, rank=rank, world_size=world_size,
                      epoch=epoch, samples=samples, t_step=t6 - t0, t_forward=t_forward,
                      t_backward=t_backward, t_comm=t_comm + t5 - t4, t_optim=t6 - t5,
                      time=time.time(), lr=float(optimizer.param_groups[0]["lr"]),
                      extra=extra)


def _agree(local: float, group, world_size: int, device: torch.device) -> float:
    """The mean of the ranks' losses (one all-reduce); `local` itself on one rank."""
    if world_size == 1:
        return local
    total = torch.tensor([local], dtype=torch.float64, device=device)
    dist.all_reduce(total, group=group)
    return total.item() / world_size


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Iterable, loss_fn: Callable) -> dict:
    """Mean loss over a loader (weighted by batch size) and, for class labels, accuracy."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, n, correct, n_labels = 0.0, 0, 0, 0
    for batch in loader:
        inputs, targets = move_batch(batch, device)
        out = model(inputs)
        total += loss_fn(out, targets).item() * len(inputs)
        n += len(inputs)
        if not targets.is_floating_point() and out.shape[:-1] == targets.shape:
            correct += (out.argmax(-1) == targets).sum().item()
            n_labels += targets.numel()
    model.train(was_training)
    if n == 0:
        raise ValueError("the validation loader yielded no batches")
    metrics = {"val_loss": total / n}
    if n_labels:
        metrics["val_accuracy"] = correct / n_labels
    return metrics


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable,
        loss_fn: Callable, *, epochs: int | None = None, steps: int | None = None,
        val_loader: Iterable | None = None, eval_every: int | None = None,
        callbacks: Iterable[Callable] = (), early_stopping: EarlyStopping | int | None = None,
        progress: bool = True, clip_grad_norm: float | None = None, scheduler=None,
        accumulation: int = 1, after_backward: Callable | None = None, group=None,
        rank: int = 0, world_size: int = 1, flops_per_sample: float | None = None,
        peak_flops: float | None = None) -> History:
    """Train until `epochs` passes or `steps` steps (whichever comes first; default one
    epoch). Validation runs after every epoch and every `eval_every` steps; its metrics go
    into History.evals and into that step's record.extra. Each callback receives every
    StepRecord; a callback may raise StopTraining. An object with an `on_step` attribute
    is called through it (a Dashboard's: a plain object, quicker to reach between two
    steps than the widget). `early_stopping=5` means patience 5.
    flops_per_sample and peak_flops: MFU in every record (see train_step).
    """
    if epochs is None and steps is None:
        epochs = 1
    for name, v in (("epochs", epochs), ("steps", steps), ("eval_every", eval_every)):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if clip_grad_norm is not None and clip_grad_norm <= 0:
        raise ValueError(f"clip_grad_norm must be > 0, got {clip_grad_norm}")
    if isinstance(early_stopping, int):
        early_stopping = EarlyStopping(patience=early_stopping)
    if early_stopping is not None and val_loader is None:
        raise ValueError("early_stopping needs a val_loader to watch the validation loss")
    callbacks = [getattr(cb, "on_step", cb) for cb in callbacks]
    total = steps
    if total is None and hasattr(train_loader, "__len__"):
        total = epochs * len(train_loader)
    bar = tqdm(total=total, disable=not progress or rank != 0, unit="step")
    history, last_finite, step, epoch = History(), None, 0, 0
    model.train()
    try:
        while (epochs is None or epoch < epochs) and not history.stop_reason \
                and (steps is None or step < steps):
            n_batches = 0
            for batch in train_loader:
                rec = train_step(model, optimizer, batch, loss_fn, step=step, epoch=epoch,
                                 accumulation=accumulation, after_backward=after_backward,
                                 clip_grad_norm=clip_grad_norm, last_finite=last_finite,
                                 group=group, rank=rank, world_size=world_size,
                                 flops_per_sample=flops_per_sample, peak_flops=peak_flops)
                if scheduler is not None:
                    scheduler.step()
                last_finite, step, n_batches = rec.loss, step + 1, n_batches + 1
                end_of_epoch = hasattr(train_loader, "__len__") and \
                    n_batches == len(train_loader)
                done = steps is not None and step >= steps
                if val_loader is not None and (end_of_epoch or done or
                                               (eval_every and step % eval_every == 0)):
                    _validate(model, val_loader, loss_fn, rec, history, early_stopping)
                history.records.append(rec)
                bar.update(1)
                bar.set_postfix(loss=f"{rec.loss:.4g}", samples_s=f"{rec.samples_per_s:.0f}")
                try:
                    for cb in callbacks:
                        cb(rec)
                except StopTraining:
                    history.stop_reason = "callback"
                if done or history.stop_reason:
                    break
            if n_batches == 0:
                raise ValueError("train_loader yielded no batches")
            epoch += 1
    finally:
        bar.close()
    if early_stopping is not None:
        history.best_step = early_stopping.best_step
        if early_stopping.restore_best and early_stopping.best_state is not None:
            model.load_state_dict(early_stopping.best_state)
    return history


def _validate(model, val_loader, loss_fn, rec: StepRecord, history: History,
              early_stopping: EarlyStopping | None) -> None:
    metrics = evaluate(model, val_loader, loss_fn)
    rec.extra.update(metrics)
    history.evals.append({"step": rec.step, "epoch": rec.epoch, **metrics})
    if early_stopping is not None and early_stopping.update(metrics["val_loss"], rec.step,
                                                            model):
        history.stop_reason = "early_stopping"
