"""`plan(...)`: every configuration of a world size, predicted, ranked, optionally measured;
`table(rows)` renders them, `verdict(rows)` compares the predicted best with the measured.

    from hpclab.plan import plan, table, verdict
    rows = plan(world=4, model="tiny")                    # predicted only, ~10 s
    print(table(rows))
    rows = plan(world=4, model="tiny", measure=True)      # + every configuration run
    print(table(rows)); print(verdict(rows))
    rows = plan(world=1024, model="gpt3-175b", gpu="a100")  # on paper, data-sheet GPU

Models: "tiny" (the tiny transformer, measured on this machine's ranks: layer times with
layer_times.py, message costs with comm.measure.calibrate) and the published shapes of
hpclab.memory.presets on a data-sheet GPU (datasheet.py). A configuration fits when its
fullest rank's bytes (hpclab.memory) are within the memory budget (default: the GPU's
HBM; for "tiny" no limit unless memory_gb is given).
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

from hpclab.comm.cost_model import Params
from hpclab.memory import GB, GPT3_175B, LLAMA3_8B, LLAMA3_70B, LLAMA3_405B, MIXED, tiny_shape
from hpclab.problems.transformer import TransformerConfig

from . import measure as measuring
from .configs import MICRO_BATCHES, Layout, configurations
from .datasheet import GPUS, DatasheetCompute, link_costs
from .layer_times import LayerTimes, measure_layer_times
from .predict import Machine, Prediction, Workload, predict_layout

TINY = TransformerConfig(vocab_size=64, block_size=64, d_model=64, n_layers=4, n_heads=4)
TINY_BATCH = 16
# the published shapes with a sequence length and a global batch of sequences to plan for
PAPER = {"gpt3-175b": (GPT3_175B, 2048, 1536), "llama3-8b": (LLAMA3_8B, 8192, 512),
         "llama3-70b": (LLAMA3_70B, 8192, 1024), "llama3-405b": (LLAMA3_405B, 8192, 2048)}
MODELS = ("tiny", *PAPER)
PAPER_MICRO_BATCHES = tuple(1 << k for k in range(13))   # 1 … 4096


@dataclass
class Row:
    layout: Layout
    prediction: Prediction
    fits: bool
    measured: float | None = None      # seconds per step, when measured

    @property
    def predicted(self) -> float:
        return self.prediction.step


def tiny_machine(cfg: TransformerConfig, world: int, layouts, batch: int,
                 memory_bytes: float | None = None) -> Machine:
    """This machine: `world` local ranks on its cores, layer times at every (b, t) the
    layouts use (one core each, layer_times.py), and the message costs (measure.py)."""
    shards = {(batch // (x.dp * x.micro_batches), x.tp) for x in layouts}
    times: LayerTimes = measure_layer_times(cfg, shards)
    costs = measuring.local_costs(world) if world > 1 else Params(0.0, 0.0, 0.0)
    return Machine(times, costs, memory_bytes, name=f"{world} local ranks",
                   cores=os.cpu_count())


def plan(world: int = 4, model: str = "tiny", batch: int | None = None,
         memory_gb: float | None = None, measure: bool = False, gpu: str = "a100",
         micro_batches=None, sequence_parallel=(False,), recompute: str | None = None,
         steps: int = 5, rounds: int = 1, select=None,
         machine: Machine | None = None, progress=None) -> list[Row]:
    """Every configuration for `world` ranks, ranked by predicted step time (module
    docstring); measure=True runs each one ("tiny" only), `rounds` times over all of
    them in turn, keeping each one's best round (a median over `steps` steps).
    micro_batches: the m to try (default 1, 2, 4, 8 for "tiny", powers of 2 up to
    4096 on paper); recompute: "none" (default for "tiny"), "selective" (default on paper, as
    Megatron-LM trains) or "full". select(layout) -> bool keeps a subset. `machine` reuses a Machine (e.g. from an earlier
    call's tiny_machine); `progress`, if given, is called with each measured Row."""
    if model == "tiny":
        cfg, batch = TINY, batch or TINY_BATCH
        work = Workload(tiny_shape(cfg), batch, cfg.block_size, recompute=recompute or "none")
        micro_batches = micro_batches or MICRO_BATCHES
    elif model in PAPER:
        if measure:
            raise ValueError(f"{model} is planned on paper (a data-sheet GPU); only "
                             f"model='tiny' can be measured here")
        shape, seq, default_batch = PAPER[model]
        work = Workload(shape, batch or default_batch, seq, precision=MIXED,
                        recompute=recompute or "selective")
        micro_batches = micro_batches or PAPER_MICRO_BATCHES
    else:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    layouts = configurations(world, work.shape, work.batch, micro_batches=micro_batches,
                             sequence_parallel=sequence_parallel, seq=work.seq)
    if select is not None:
        layouts = [x for x in layouts if select(x)]
    if not layouts:
        raise ValueError(f"no configuration of {world} ranks splits {work.shape.name} with "
                         f"B={work.batch}: check that the world size's factors divide the "
                         f"heads ({work.shape.heads}) and the batch")
    budget = None if memory_gb is None else memory_gb * GB
    if machine is None:
        if model == "tiny":
            machine = tiny_machine(TINY, world, layouts, work.batch, budget)
        else:
            g = GPUS[gpu]
            machine = Machine(DatasheetCompute(g, work.shape), lambda span: link_costs(g, span),
                              budget or g.memory_bytes, name=g.name)
    limit = machine.memory_bytes if budget is None else budget
    rows = []
    for layout in layouts:
        p = predict_layout(work, layout, machine)
        rows.append(Row(layout, p, limit is None or p.memory.total <= limit))
    rows.sort(key=lambda r: (r.predicted, r.prediction.memory.total))
    if measure:
        for _ in range(rounds):   # the best round: on a shared machine others only add time
            for row in rows:
                t = measuring.step_seconds(row.layout, TINY, work.batch, steps)
                row.measured = t if row.measured is None else min(row.measured, t)
                if progress:
                    progress(row)
    return rows


def verdict(rows: list[Row], tolerance: float = 0.10) -> dict:
    """Among the measured rows that fit: the predicted best, the measured best, and whether
    the predicted best's measured time is within `tolerance` of the measured best's."""
    measured = [r for r in rows if r.measured is not None and r.fits]
    if not measured:
        raise ValueError("no measured configuration that fits: call plan(..., measure=True)")
    predicted_best = min(measured, key=lambda r: r.predicted)
    measured_best = min(measured, key=lambda r: r.measured)
    ratio = predicted_best.measured / measured_best.measured
    errors = [abs(r.predicted / r.measured - 1) for r in measured]
    return {"predicted_best": predicted_best.layout, "measured_best": measured_best.layout,
            "ratio": ratio, "within": ratio <= 1 + tolerance, "tolerance": tolerance,
            "measured": len(measured), "median_error": statistics.median(errors)}


def _layout_cells(x: Layout) -> list[str]:
    return [str(x.dp), str(x.tp), str(x.pp), str(x.micro_batches), str(x.zero),
            x.schedule if x.pp > 1 else "-", "sp" if x.sequence_parallel else ""]


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def table(rows: list[Row], top: int | None = None, markdown: bool = True) -> str:
    """The ranked rows: dp tp pp m zero schedule | predicted ms (by term) | memory/rank |
    fits | measured ms and measured/predicted, when measured."""
    measured = any(r.measured is not None for r in rows)
    head = ["#", "dp", "tp", "pp", "m", "zero", "schedule", "sp", "predicted ms",
            "compute", "TP", "PP", "DP", "opt", "memory/rank", "fits"]
    if measured:
        head += ["measured ms", "meas/pred"]
    body = []
    for i, r in enumerate(rows[:top] if top else rows, 1):
        p = r.prediction
        cells = [str(i), *_layout_cells(r.layout), f"{1e3 * r.predicted:.2f}",
                 *(f"{1e3 * x:.2f}" for x in (p.compute, p.tp, p.pp, p.dp, p.optimizer)),
                 _bytes(p.memory.total), "yes" if r.fits else "NO"]
        if measured:
            cells += ([f"{1e3 * r.measured:.2f}", f"{r.measured / r.predicted:.2f}"]
                      if r.measured is not None else ["-", "-"])
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(cells, widths))
                     for cells in [head, *body])


__all__ = ["MODELS", "TINY", "TINY_BATCH", "Row", "plan", "table",
           "tiny_machine", "verdict"]
