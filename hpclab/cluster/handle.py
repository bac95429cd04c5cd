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
import sys
import time
from concurrent.futures import FIRST_EXCEPTION
from dataclasses import dataclass

import psutil
from ipyparallel.error import CompositeError, KernelError

from hpclab.cluster.errors import RankError

log = logging.getLogger("hpclab.cluster")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")   # IPython colours remote tracebacks
_LIVENESS_S = 0.5   # how often wait() looks for engine processes gone from this host
_GRACE_S = 1.0      # after a first failure, time for the news of a dead peer to arrive

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
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class RunHandle:
    """One ipyparallel AsyncResult over the engines in rank order, explained as an SPMD call.

    `async_result` comes from a DirectView whose targets are the engines in rank order
    (`client[engine_ids].apply_async(...)`), so its results are already ordered by rank;
    `split()` gives the per-rank parts, to tell which rank failed, died or stayed silent.
    """

    def __init__(self, client, async_result, ranks: list[RankMeta], timeout: float,
                 fn_name: str, echo: bool = True):
        self._client = client
        self._ar = async_result
        self._parts = async_result.split()
        self._ranks = ranks
        self.timeout = timeout
        self.fn_name = fn_name
        self._echo = echo
        self._started = time.monotonic()
        self._first_failure: float | None = None
        self._echoed = False

    # -- state ------------------------------------------------------------------------
    def _failed(self) -> list[int]:
        return [r for r, part in enumerate(self._parts) if part.ready() and not part.successful()]

    def _dead(self) -> list[int]:
        """Ranks whose engine process is gone (seen by the engine's nanny, or by pid)."""
        here, failed = socket.gethostname(), set(self._failed())
        return [r for r, m in enumerate(self._ranks)
                if r in failed and self._error_name(r) == "EngineError"
                or m.host == here and _pid_gone(m.pid)]

    def _exception(self, r: int) -> Exception | None:
        """The error rank r finished with (RemoteError / EngineError), None if it succeeded."""
        try:
            self._parts[r].get(0)
        except CompositeError as exc:
            # with one engine split() returns the call itself, whose errors come wrapped
            try:
                exc.raise_exception()
            except KernelError as inner:
                return inner
        except (KernelError, TimeoutError) as exc:
            return exc
        return None

    def _error_name(self, r: int) -> str | None:
        exc = self._exception(r)   # RemoteError carries the remote exception's name
        return None if exc is None else getattr(exc, "ename", type(exc).__name__)

    def ready(self) -> bool:
        """True when every rank finished, or one failed and its peers had time to report."""
        if self._ar.ready():
            return True
        if self._failed() or self._dead():
            if self._first_failure is None:
                self._first_failure = time.monotonic()
            return time.monotonic() - self._first_failure > _GRACE_S
        return False

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to `timeout` seconds (default: the call's timeout); True when ready.

        Waits on the AsyncResult until all ranks finish or one fails; every _LIVENESS_S
        it also looks whether an engine process on this host has vanished (a rank the
        controller has not yet noticed is dead).
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.ready():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._first_failure is not None:   # a rank failed: its peers' news is due
                self._ar.wait(min(left, _GRACE_S))
            else:
                self._ar.wait(min(left, _LIVENESS_S), return_when=FIRST_EXCEPTION)
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
            silent = [r for r, part in enumerate(self._parts) if not part.ready()]
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
        return self._ar.get(0)

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
        running = [r for r, part in enumerate(self._parts) if not part.ready()]
        alive = set(self._client.ids)
        targets = [self._ranks[r].engine_id for r in running
                   if self._ranks[r].engine_id in alive]
        if not targets:
            return
        try:
            self._client.abort([self._parts[r] for r in running], targets=targets, block=False)
            self._client.send_signal(signal.SIGINT, targets=targets, block=False)
        except Exception as exc:  # noqa: BLE001 - an engine vanishing mid-abort is the case we handle
            log.debug("abort of %s: %s", targets, exc)

    def _print_outputs(self) -> None:
        """Show what each rank printed, in rank order (ctx.log prefixes the rank itself)."""
        if not self._echo or self._echoed:
            return
        self._echoed = True
        for out, err in zip(self._ar.stdout, self._ar.stderr):
            if out:
                print(out, end="" if out.endswith("\n") else "\n", flush=True)
            if err:
                print(err, end="" if err.endswith("\n") else "\n", file=sys.stderr, flush=True)

    def __repr__(self) -> str:
        state = "ready" if self.ready() else f"running for {self.elapsed:.1f} s"
        return f"<RunHandle {self.fn_name} on {len(self._parts)} ranks: {state}>"
