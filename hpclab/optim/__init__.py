"""Optimizers written from scratch, drop-in replacements for torch.optim.

    import hpclab.optim as optim
    opt = optim.Adam(model.parameters(), lr=1e-3)          # same arguments as torch.optim
    sched = optim.WarmupCosine(opt, warmup_steps=100, total_steps=1000)
    ...
    loss.backward(); optim.clip_grad_norm_(model.parameters(), 1.0); opt.step()

One file per algorithm (gd.py, sgd.py, adagrad.py, rmsprop.py, adam.py, adamw.py,
adamax.py, lamb.py); each holds the formula as a plain per-tensor function (`adam_step`
...) with the math in its docstring, a `_foreach` twin, and the class. base.py holds the
shared plumbing, schedules.py the learning-rate schedules, clip.py gradient clipping,
fused_adam.py a torch.compile'd Adam and pitfalls.py a deliberately WRONG Adam for the
lecture.
"""

from .adagrad import Adagrad, adagrad_step
from .adam import Adam, adam_step
from .adamax import Adamax, adamax_step
from .adamw import AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .fused_adam import FusedAdam, FusedAdamW
from .gd import GD, gd_step
from .lamb import LAMB, lamb_step
from .rmsprop import RMSprop, rmsprop_step
from .schedules import Cosine, LinearWarmup, StepDecay, WarmupCosine
from .sgd import SGD, sgd_step

Lamb = LAMB  # the spelling torch_optimizer uses

__all__ = [
    "GD", "LAMB", "SGD", "Adagrad", "Adam", "AdamW", "Adamax", "Cosine", "FusedAdam",
    "FusedAdamW", "Lamb", "LinearWarmup", "RMSprop", "StepDecay", "WarmupCosine",
    "adagrad_step", "adam_step", "adamax_step", "clip_grad_norm_", "clip_grad_value_",
    "gd_step", "lamb_step", "rmsprop_step", "sgd_step",
]
