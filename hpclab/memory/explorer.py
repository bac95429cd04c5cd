"""The memory explorer's state: one choice of model, run and parallelism, and what each
GPU then holds. No widgets here (hpclab.widgets.memory_explorer draws it), so a lecture
cell or a test can use it directly:

    st = ExplorerState(preset="Llama 3 8B", seq=4096, dp=8, zero=3)
    st.ranks()            # one RankMemory per pipeline stage (per_rank.py)
    st.peak_gb, st.fits   # the fullest rank in GB, and whether it fits in gpu_gb
    st.update(tp=2, sp=True, recompute="selective")    # validated; raises ValueError

GB are decimal (1e9 bytes), as GPU data sheets count them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cache

from hpclab.problems.text import CharTokenizer, load_text
from hpclab.problems.transformer import TransformerConfig

from .activations import RECOMPUTE
from .per_rank import SCHEDULES, Parallelism, RankMemory, Training, stage_memories
from .presets import GPT3_175B, LLAMA3_8B, LLAMA3_70B, LLAMA3_405B, tiny_shape
from .shapes import TransformerShape
from .states import MOMENTS, PRECISIONS

GB = 1e9
PARTS = ("parameters", "gradients", "optimizer", "activations")


@cache
def presets() -> dict[str, TransformerShape]:
    """Name -> shape: the course's tiny transformer (the shipped corpus's vocabulary,
    default TransformerConfig) up to Llama 3 405B."""
    vocab = CharTokenizer.from_text(load_text()).vocab_size
    tiny = tiny_shape(TransformerConfig(vocab_size=vocab))
    return {"tiny transformer": tiny, "Llama 3 8B": LLAMA3_8B, "Llama 3 70B": LLAMA3_70B,
            "GPT-3 175B": GPT3_175B, "Llama 3 405B": LLAMA3_405B}


@dataclass
class ExplorerState:
    preset: str = "Llama 3 8B"
    seq: int = 4096                   # s
    micro_batch: int = 1              # b
    precision: str = "mixed (bf16 + fp32 master)"
    optimizer: str = "adam"
    recompute: str = "none"
    zero: int = 0
    dp: int = 1                       # N_d
    tp: int = 1                       # t
    pp: int = 1                       # p
    sp: bool = False
    microbatches: int = 1             # m
    schedule: str = "1f1b"
    gpu_gb: float = 80.0

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise ValueError, naming the value, for a choice the calculator cannot take."""
        if self.preset not in presets():
            raise ValueError(f"preset must be one of {list(presets())}, got {self.preset!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got "
                             f"{self.precision!r}")
        if self.gpu_gb <= 0:
            raise ValueError(f"gpu_gb must be > 0, got {self.gpu_gb}")
        self.parallelism().check(self.shape)
        self.training()

    def update(self, **changes) -> ExplorerState:
        """Apply `changes` if together they are valid; otherwise raise and keep the state."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown settings {unknown}; choose from {sorted(known)}")
        replace(self, **changes)                  # validates (its __post_init__)
        for name, value in changes.items():
            setattr(self, name, value)
        return self

    @property
    def shape(self) -> TransformerShape:
        return presets()[self.preset]

    def training(self) -> Training:
        return Training(seq=self.seq, micro_batch=self.micro_batch,
                        precision=PRECISIONS[self.precision], optimizer=self.optimizer,
                        recompute=self.recompute)

    def parallelism(self) -> Parallelism:
        return Parallelism(dp=self.dp, tp=self.tp, pp=self.pp, sp=self.sp, zero=self.zero,
                           microbatches=self.microbatches, schedule=self.schedule)

    def ranks(self) -> list[RankMemory]:
        return stage_memories(self.shape, self.training(), self.parallelism())

    def bars_gb(self) -> dict[str, list[float]]:
        """Per part, GB on one rank of each pipeline stage: the stacked bars."""
        parts = [r.parts() for r in self.ranks()]
        return {part: [p[part] / GB for p in parts] for part in PARTS}

    @property
    def peak_gb(self) -> float:
        return max(r.total for r in self.ranks()) / GB

    @property
    def fits(self) -> bool:
        return self.peak_gb <= self.gpu_gb

    def summary(self) -> str:
        par = self.parallelism()
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"{self.preset}: Ψ = {_count(self.shape.parameters)} parameters on "
                f"{par.world_size} GPU{'s' if par.world_size > 1 else ''} (N_d={par.dp}, t={par.tp}, p={par.pp}); the fullest "
                f"rank holds {_size(self.peak_gb * GB)}: {verdict} on a {self.gpu_gb:g} GB GPU")


def _count(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


CHOICES = {"optimizer": sorted(MOMENTS), "recompute": list(RECOMPUTE),
           "schedule": list(SCHEDULES), "precision": list(PRECISIONS), "zero": [0, 1, 2, 3]}
