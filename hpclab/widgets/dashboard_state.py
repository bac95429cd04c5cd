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


@dataclass
class RankSeries:
    steps: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    throughput: list = field(default_factory=list)
    times: list = field(default_factory=list)       # record.time (wall clock)
    split: list = field(default_factory=list)       # (compute, comm, optim, other)
    val_steps: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    ordered: bool = True        # steps strictly increasing (no repeats, e.g. after a resume)


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
        for r in records:
            if isinstance(r, dict):
                r = StepRecord.from_dict(r)
            s = self.ranks[r.rank]
            if s.steps and r.step <= s.steps[-1]:
                s.ordered = False
            s.steps.append(r.step)
            s.loss.append(float(r.loss))
            s.throughput.append(r.samples_per_s)
            s.times.append(r.time)
            compute = r.t_forward + r.t_backward
            other = max(r.t_step - compute - r.t_comm - r.t_optim, 0.0)
            s.split.append((compute, r.t_comm, r.t_optim, other))
            if "val_loss" in r.extra and r.extra["val_loss"] is not None:
                s.val_steps.append(r.step)
                s.val_loss.append(float(r.extra["val_loss"]))
            self.world_size = max(self.world_size, r.world_size, r.rank + 1)
            self.n_records += 1

    # -- aggregates -------------------------------------------------------------------
    def _by_step(self, attr: str) -> dict[int, list[float]]:
        out: dict[int, list[float]] = defaultdict(list)
        for s in self.ranks.values():
            for k, v in zip(s.steps, getattr(s, attr)):
                out[k].append(v)
        return out

    def _single(self, attr: str) -> tuple[list[int], list[float]] | None:
        """One rank, steps in order: its own series is the aggregate (no O(n) regrouping
        on the training thread of a single-process fit, however long the run)."""
        if len(self.ranks) != 1:
            return None
        (s,) = self.ranks.values()
        return (list(s.steps), list(getattr(s, attr))) if s.ordered else None

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
            for k, v in zip(s.val_steps, s.val_loss):
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
        rows = [row for r in ranks for row in self.ranks[r].split[-self.window:]]
        if not rows:
            return (0.0, 0.0, 0.0, 0.0)
        return tuple(sum(col) / len(rows) for col in zip(*rows))

    @property
    def steps_done(self) -> int:
        """Steps every rank has finished (the slowest rank sets the pace)."""
        if not self.ranks:
            return 0
        return min(len(s.steps) for s in self.ranks.values())

    @property
    def progress(self) -> float:
        if not self.total_steps:
            return 0.0
        return min(self.steps_done / self.total_steps, 1.0)

    def seconds_per_step(self) -> float | None:
        """Wall time per step over the last `window` steps of the slowest rank."""
        worst = None
        for s in self.ranks.values():
            t = s.times[-(self.window + 1):]
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
        last = [s for s in self.ranks.values() if s.steps]
        if not last:
            return None, None
        return (sum(s.loss[-1] for s in last) / len(last), sum(s.throughput[-1] for s in last))

    @property
    def n_points(self) -> int:
        """Points on the loss plot: what the browser test watches grow."""
        return sum(len(s.steps) for s in self.ranks.values())
