"""A training job running on the engines, seen from the notebook.

    job = trainer.fit(steps=500)          # returns at once
    job.subscribe(lambda rec: ...)        # called for every StepRecord as it arrives
    job.history                           # StepRecords so far (all ranks)
    job.stop()                            # ask the ranks to stop (and checkpoint)
    job.wait(timeout=None)                # -> history; RankError names a failed rank/host

While the job runs, the notebook stays free: records arrive on a background thread
(live.py), so a dashboard can redraw from a callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hpclab.cluster.errors import RankError
from hpclab.metrics import StepRecord


class Job:
    def __init__(self, handle, receiver, steps: int, grace: float = 10.0):
        self._handle = handle        # hpclab.cluster.handle.RunHandle
        self._receiver = receiver    # LiveReceiver or None
        self.steps = steps
        self._grace = grace
        self._results: list[dict] | None = None
        self._final: list[StepRecord] | None = None
        self._error: BaseException | None = None
        self._stop_sent: float | None = None

    # -- live --------------------------------------------------------------------------
    @property
    def history(self) -> list[StepRecord]:
        """Every StepRecord so far, all ranks, in arrival order (complete after wait())."""
        if self._final is not None:
            return list(self._final)
        return list(self._receiver.history) if self._receiver is not None else []

    def subscribe(self, callback: Callable[[StepRecord], None]) -> None:
        """`callback(record)` on every record (also those already received), from a
        background thread; keep it short (append to a list, update a plot)."""
        if self._receiver is None:
            raise RuntimeError("this job was started with live=False: no records stream; "
                               "read job.history after job.wait()")
        self._receiver.subscribe(callback)

    @property
    def latencies(self) -> list[float]:
        """Seconds from the end of each step on its engine to its arrival here."""
        return list(self._receiver.latencies) if self._receiver is not None else []

    def latest_step(self) -> int:
        h = self.history
        return max((r.step for r in h), default=0)

    # -- control -----------------------------------------------------------------------
    def done(self) -> bool:
        return self._results is not None or self._error is not None or self._handle.ready()

    def stop(self) -> None:
        """Ask every rank to stop after the step at which they next agree (at most
        `stop_check_every` steps); with a checkpoint folder they checkpoint first."""
        if self._receiver is None:
            self._handle.abort()
            return
        self._receiver.request_stop()
        self._stop_sent = time.monotonic()

    def wait(self, timeout: float | None = None) -> list[StepRecord]:
        """Block until every rank finished; return the full history.

        Raises hpclab.cluster.RankError naming the rank and host if one failed or died,
        TimeoutError if `timeout` seconds pass first (the job keeps running).
        """
        if self._error is not None:
            raise self._error
        if self._results is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._handle.ready():
                if self._stop_sent is not None and self._receiver is not None:
                    # PUB/SUB drops messages to late subscribers: repeat until they stop
                    self._receiver.request_stop()
                    if time.monotonic() - self._stop_sent > self._grace:
                        self._handle.abort()
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job still running after {timeout} s "
                                       f"(latest step {self.latest_step()} of {self.steps}); "
                                       "call job.wait() again, or job.stop()")
                time.sleep(0.1)
            try:
                self._results = self._handle.get(timeout=0)
            except RankError as exc:
                self._error = RankError(f"{exc}\nCheckpoints already written are intact: on "
                                        "fresh engines, trainer.fit(..., resume='latest') "
                                        "continues from the last one.", rank=exc.rank,
                                        host=exc.host, pid=exc.pid,
                                        remote_traceback=exc.remote_traceback)
                self._close()
                raise self._error from None
            except BaseException as exc:
                self._error = exc
                self._close()
                raise
            self._final = [StepRecord.from_dict(d) for res in self._results
                           for d in res["records"]]
            self._close()
        return list(self._final)

    @property
    def results(self) -> list[dict]:
        """Per-rank return values of the training function (after wait())."""
        self.wait()
        return self._results

    @property
    def stopped(self) -> bool:
        return bool(self._results) and any(r["stopped"] for r in self._results)

    def _close(self) -> None:
        if self._receiver is not None:
            # give records still in flight a moment to land, for subscribers
            time.sleep(0.2)
            self._receiver.close()

    def __repr__(self) -> str:
        state = "done" if self.done() else f"running, step {self.latest_step()}/{self.steps}"
        return f"<Job {state}>"
