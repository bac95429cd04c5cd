"""Errors a student can act on when a cluster misbehaves.

Every distributed failure in hpclab.cluster ends in one of these, and the message always
says *who* (rank, host, pid) and *what to try next*:

    ClusterError     the cluster could not be set up (bad request, launcher problem)
    ClusterTimeout   engines did not register in time (message includes the launcher's
                     diagnosis: queue state, log file)
    RankError        one rank died, failed or stayed silent during `cluster.run(...)`

    try:
        cluster.run(train_step)
    except RankError as err:
        print(err.rank, err.host, err.pid)   # then: cluster.restart()
"""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The cluster could not be started or attached to; the message says how to fix it."""


class ClusterTimeout(ClusterError, TimeoutError):
    """Engines did not register (or a call did not finish) within the allowed time."""


class RankError(ClusterError):
    """One rank failed, died or stayed silent. `rank`, `host` and `pid` say which."""

    def __init__(self, message: str, *, rank: int | None = None, host: str | None = None,
                 pid: int | None = None, remote_traceback: str | None = None):
        super().__init__(message)
        self.rank = rank
        self.host = host
        self.pid = pid
        self.remote_traceback = remote_traceback
