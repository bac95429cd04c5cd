"""Per-step training metrics: the record every loop emits and every widget draws.

One `StepRecord` per rank per step. The single-process loop (`hpclab.train`), the
data-parallel trainer (`hpclab.parallel`) and the dashboard (`hpclab.widgets`) all speak
this format, so a plot written for one works for the others.

Times are wall-clock seconds for this step on this rank:

    t_step = t_forward + t_backward + t_comm + t_optim + t_other

where t_comm is the *exposed* communication time (waiting for gradients after backward
finished), not the communication hidden behind backward. Token models add
extra["tokens"] and extra["tokens_per_s"]; with model FLOPs and a peak (hpclab.flops),
extra["model_flops"] and extra["mfu"], read through the properties of the same names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class StepRecord:
    step: int
    loss: float
    rank: int = 0
    world_size: int = 1
    epoch: int = 0
    samples: int = 0                 # samples processed by this rank in this step
    t_step: float = 0.0
    t_forward: float = 0.0
    t_backward: float = 0.0
    t_comm: float = 0.0
    t_optim: float = 0.0
    time: float = 0.0                # time.time() when the step finished
    lr: float | None = None
    extra: dict = field(default_factory=dict)   # e.g. {"val_loss": ..., "tokens": ...}

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.t_step if self.t_step > 0 else 0.0

    @property
    def tokens_per_s(self) -> float | None:
        return self.extra.get("tokens_per_s")

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilisation of this step (0 … 1), if the loop knew the FLOPs."""
        return self.extra.get("mfu")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["samples_per_s"] = self.samples_per_s
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StepRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)
