"""What the training dashboard shows, computed from StepRecords (no widgets here).

Each rank sends one `hpclab.metrics.StepRecord` per step. From them:

    loss_r(k)        the loss rank r saw at step k             (one line per rank)
    loss(k)          = mean_r loss_r(k)                        (the aggregate line)
    thr_r(k)         = samples_r(k) / t_step_r(k)              samples/s of rank r
    thr(k)           = sum_r thr_r(k)                          the job's samples/s
    time split       mean over the last `window` steps of
                     compute = t_forward + t_backward, comm = t_comm, optim = t_optim,
                     other = t_step - (compute + comm + optim)
    progress         = steps every rank has finished / total_steps
    ETA              = (total_steps - done) * (wall time per step over the last window)

A validation loss travels in `record.extra["val_loss"]` and is drawn as points.

    state = DashboardState(total_steps=100)
    state.add(records)           # any order, any ranks
    state.loss_aggregate()       # (steps, mean loss)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from hpclab.metrics import StepRecord


def split_of(r: StepRecord) -> tuple[float, float, float, float]:
    """(compute, comm, optim, other) seconds of one step."""
    compute = r.t_forward + r.t_backward
    return compute, r.t_comm, r.t_optim, max(r.t_step - compute - r.t_comm - r.t_optim, 0.0)


@dataclass
class RankSeries:
    """One rank's records, in arrival order; the series are read off them when asked
    (adding a record is one append: it happens every step, the reading twice a second)."""

    records: list = field(default_factory=list)
    ordered: bool = True        # steps strictly increasing (no repeats, e.g. after a resume)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def steps(self) -> list[int]:
        return [r.step for r in self.records]

    @property
    def loss(self) -> list[float]:
        return [float(r.loss) for r in self.records]

    @property
    def throughput(self) -> list[float]:
        return [r.samples_per_s for r in self.records]

    def split(self, last: int) -> list[tuple[float, float, float, float]]:
        """(compute, comm, optim, other) of the `last` newest steps."""
        return [split_of(r) for r in self.records[-last:]]

    @property
    def val(self) -> list[tuple[int, float]]:
        """(step, validation loss) of the records that carry one."""
        return [(r.step, float(r.extra["val_loss"])) for r in self.records
                if r.extra and r.extra.get("val_loss") is not None]


class DashboardState:
    def __init__(self, total_steps: int | None = None, window: int = 20):
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"total_steps must be >= 1 or None, got {total_steps}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.total_steps = total_steps
        self.window = window
        self.ranks: dict[int, RankSeries] = defaultdict(RankSeries)
        self.world_size = 1
        self.n_records = 0

    def add(self, records) -> None:
        if isinstance(records, StepRecord):
            records = [records]
        world = self.world_size
        for r in records:
            if type(r) is dict:
                r = StepRecord.from_dict(r)
            s = self.ranks[r.rank]
            if s.records and r.step <= s.records[-1].step:
                s.ordered = False
            s.records.append(r)
            if r.world_size > world or r.rank >= world:
                world = max(world, r.world_size, r.rank + 1)
            self.n_records += 1
        self.world_size = world

    # -- aggregates -------------------------------------------------------------------
    def _by_step(self, attr: str) -> dict[int, list[float]]:
        out: dict[int, list[float]] = defaultdict(list)
        for s in self.ranks.values():
            for k, v in zip(s.steps, getattr(s, attr)):
                out[k].append(v)
        return out

    def _single(self, attr: str) -> tuple[list[int], list[float]] | None:
        """One rank, steps in order: its own series is the aggregate (no regrouping)."""
        if len(self.ranks) != 1:
            return None
        (s,) = self.ranks.values()
        return (s.steps, getattr(s, attr)) if s.ordered else None

    def loss_aggregate(self) -> tuple[list[int], list[float]]:
        """Mean loss over the ranks that reported each step."""
        if (single := self._single("loss")) is not None:
            return single
        by = self._by_step("loss")
        steps = sorted(by)
        return steps, [sum(by[k]) / len(by[k]) for k in steps]

    def val_aggregate(self) -> tuple[list[int], list[float]]:
        by = self._by_step_val()
        steps = sorted(by)
        return steps, [sum(by[k]) / len(by[k]) for k in steps]

    def _by_step_val(self) -> dict[int, list[float]]:
        out: dict[int, list[float]] = defaultdict(list)
        for s in self.ranks.values():
            for k, v in s.val:
                out[k].append(v)
        return out

    def throughput_aggregate(self) -> tuple[list[int], list[float]]:
        """Job throughput: sum of per-rank samples/s, at steps every rank has reported."""
        if (single := self._single("throughput")) is not None:
            return single
        by = self._by_step("throughput")
        n = len(self.ranks)
        steps = sorted(k for k in by if len(by[k]) == n)
        return steps, [sum(by[k]) for k in steps]

    def time_split(self, rank: int | None = None) -> tuple[float, float, float, float]:
        """Mean (compute, comm, optim, other) seconds per step over the last `window` steps;
        rank=None averages over ranks."""
        ranks = [rank] if rank is not None else sorted(self.ranks)
        rows = [row for r in ranks for row in self.ranks[r].split(self.window)]
        if not rows:
            return (0.0, 0.0, 0.0, 0.0)
        return tuple(sum(col) / len(rows) for col in zip(*rows))

    @property
    def steps_done(self) -> int:
        """Steps every rank has finished (the slowest rank sets the pace)."""
        if not self.ranks:
            return 0
        return min(len(s) for s in self.ranks.values())

    @property
    def progress(self) -> float:
        if not self.total_steps:
            return 0.0
        return min(self.steps_done / self.total_steps, 1.0)

    def seconds_per_step(self) -> float | None:
        """Wall time per step over the last `window` steps of the slowest rank."""
        worst = None
        for s in self.ranks.values():
            t = [r.time for r in s.records[-(self.window + 1):]]
            if len(t) >= 2 and t[-1] > t[0]:
                per = (t[-1] - t[0]) / (len(t) - 1)
                worst = per if worst is None else max(worst, per)
        return worst

    def eta(self) -> float | None:
        """Seconds until total_steps, or None when unknown."""
        per = self.seconds_per_step()
        if per is None or not self.total_steps:
            return None
        return max(self.total_steps - self.steps_done, 0) * per

    def latest(self) -> tuple[float | None, float | None]:
        """(mean of each rank's last loss, sum of each rank's last samples/s): O(ranks),
        for a status line refreshed twice a second however long the run."""
        last = [s.records[-1] for s in self.ranks.values() if s.records]
        if not last:
            return None, None
        return sum(float(r.loss) for r in last) / len(last), sum(r.samples_per_s for r in last)

    @property
    def n_points(self) -> int:
        """Points on the loss plot: what the browser test watches grow."""
        return sum(len(s) for s in self.ranks.values())
