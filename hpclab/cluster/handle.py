"""The handle `cluster.run_async(fn)` returns: one running SPMD call, one result per rank.

    h = cluster.run_async(train, epochs=3)
    h.ready()               # all ranks finished (or one failed)?
    h.wait(timeout=5)       # -> True when finished, False if still running after 5 s
    h.get(timeout=60)       # -> [result of rank 0, rank 1, ...] or RankError
    h.abort()               # drop queued work and interrupt the ranks still running

Failures are turned into `RankError`s a student can act on. A rank that *died* is
reported before a rank that merely raised, because when rank 1 is killed mid-collective,
rank 0's collective fails too ("connection closed by peer"): the dead rank is the cause.
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import time
from dataclasses import dataclass

from hpclab.cluster.errors import RankError

log = logging.getLogger("hpclab.cluster")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")   # IPython colours remote tracebacks
_POLL_S = 0.05    # how often wait() looks at the results
_GRACE_S = 1.0    # after a first failure, time for the news of a dead peer to arrive

RESTART_HINT = ("To get fresh engines and a fresh process group: cluster.restart() "
                "(or cluster.close() and hpclab.connect() again).")


@dataclass
class RankMeta:
    """What the client knows about one rank, for error messages."""
    rank: int
    engine_id: int
    host: str
    pid: int


def _pid_gone(pid: int) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class RunHandle:
    """Per-rank ipyparallel AsyncResults, collected and explained as one SPMD call."""

    def __init__(self, client, async_results: list, ranks: list[RankMeta], timeout: float,
                 fn_name: str, echo: bool = True):
        self._client = client
        self._ars = async_results
        self._ranks = ranks
        self.timeout = timeout
        self.fn_name = fn_name
        self._echo = echo
        self._started = time.monotonic()
        self._first_failure: float | None = None
        self._echoed = False

    # -- state ------------------------------------------------------------------------
    def _failed(self) -> list[int]:
        return [r for r, ar in enumerate(self._ars) if ar.ready() and not ar.successful()]

    def _dead(self) -> list[int]:
        """Ranks whose engine process is gone (seen by the engine's nanny, or by pid)."""
        here = socket.gethostname()
        dead = []
        for r, ar in enumerate(self._ars):
            if ar.ready() and not ar.successful() and self._error_name(r) == "EngineError" or self._ranks[r].host == here and _pid_gone(self._ranks[r].pid):
                dead.append(r)
        return dead

    def _exception(self, r: int) -> Exception | None:
        """The error rank r finished with (RemoteError / EngineError), None if it succeeded."""
        from ipyparallel.error import KernelError
        try:
            self._ars[r].get(0)
        except (KernelError, TimeoutError) as exc:
            return exc
        return None

    def _error_name(self, r: int) -> str | None:
        exc = self._exception(r)   # RemoteError carries the remote exception's name
        return None if exc is None else getattr(exc, "ename", type(exc).__name__)

    def ready(self) -> bool:
        """True when every rank finished, or one failed and its peers had time to report."""
        if all(ar.ready() for ar in self._ars):
            return True
        if self._failed() or self._dead():
            if self._first_failure is None:
                self._first_failure = time.monotonic()
            return time.monotonic() - self._first_failure > _GRACE_S
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to `timeout` seconds (default: the call's timeout); True when ready."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    # -- results ----------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> list:
        """Results ordered by rank; RankError if a rank failed, died or stayed silent."""
        timeout = self.timeout if timeout is None else timeout
        try:
            finished = self.wait(timeout)
        except KeyboardInterrupt:   # the notebook's stop button: stop the ranks too
            self.abort()
            raise
        self._print_outputs()
        if not finished:
            silent = [r for r, ar in enumerate(self._ars) if not ar.ready()]
            self.abort()
            m = self._ranks[silent[0]]
            raise RankError(
                f"{self.fn_name}: rank {m.rank} (pid {m.pid} on host {m.host}) did not answer "
                f"within {timeout:g} s (silent ranks: {silent}). It may be waiting for a peer "
                "in a collective, or the work needs longer: pass timeout=... to cluster.run. "
                f"The silent ranks were interrupted. If the cluster misbehaves: {RESTART_HINT}",
                rank=m.rank, host=m.host, pid=m.pid)
        dead, failed = self._dead(), self._failed()
        if dead or failed:
            self.abort()
            self._raise_for(dead[0] if dead else failed[0], died=bool(dead))
        return [ar.get(0) for ar in self._ars]

    def _raise_for(self, r: int, died: bool):
        m = self._ranks[r]
        who = f"rank {m.rank} (pid {m.pid} on host {m.host})"
        if died:
            raise RankError(
                f"{self.fn_name}: {who} died (its engine process is gone); its peers' "
                f"collectives fail or time out after the process-group timeout. {RESTART_HINT}",
                rank=m.rank, host=m.host, pid=m.pid)
        exc = self._exception(r)
        tb = getattr(exc, "traceback", None) or ""
        tb = _ANSI.sub("", tb if isinstance(tb, str) else "\n".join(tb))
        ename = getattr(exc, "ename", type(exc).__name__)
        evalue = getattr(exc, "evalue", str(exc))
        raise RankError(
            f"{self.fn_name}: {who} raised {ename}: {evalue}\n(full remote traceback: "
            "err.remote_traceback). Fix the error and run again. If other ranks were left "
            f"waiting in a collective: {RESTART_HINT}",
            rank=m.rank, host=m.host, pid=m.pid, remote_traceback=tb) from None

    def abort(self) -> None:
        """Drop work still queued and interrupt (SIGINT) the ranks that are running.

        Python code stops at once with KeyboardInterrupt; a rank blocked inside a C++
        collective stops only when the process-group timeout fires.
        """
        running = [r for r, ar in enumerate(self._ars) if not ar.ready()]
        if not running:
            return
        alive = set(self._client.ids)
        targets = [self._ranks[r].engine_id for r in running
                   if self._ranks[r].engine_id in alive]
        if not targets:
            return
        try:
            self._client.abort([self._ars[r] for r in running], targets=targets, block=False)
            self._client.send_signal(signal.SIGINT, targets=targets, block=False)
        except Exception as exc:  # noqa: BLE001 - an engine vanishing mid-abort is the case we handle
            log.debug("abort of %s: %s", targets, exc)

    def _print_outputs(self) -> None:
        """Show what each rank printed, in rank order (ctx.log prefixes the rank itself)."""
        if not self._echo or self._echoed:
            return
        self._echoed = True
        for ar in self._ars:
            out, err = ar.stdout, ar.stderr
            if out:
                print(out, end="" if out.endswith("\n") else "\n", flush=True)
            if err:
                import sys
                print(err, end="" if err.endswith("\n") else "\n", file=sys.stderr, flush=True)

    def __repr__(self) -> str:
        state = "ready" if self.ready() else f"running for {self.elapsed:.1f} s"
        return f"<RunHandle {self.fn_name} on {len(self._ars)} ranks: {state}>"
