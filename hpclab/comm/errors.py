"""Errors raised by hpclab.comm when a peer does not answer.

A collective built from point-to-point messages fails at one message: this rank waited for
peer q at step s and q never sent (it died, is stuck elsewhere, or runs a different
collective). The error says exactly that, so a student can look at rank q's log:

    try:
        hpclab.comm.all_reduce(x, algorithm="ring", timeout=10)
    except CommTimeout as err:
        print(err.rank, err.host, err.peer, err.step, err.phase)

After either error the process group is unusable (gloo closes the connection): recreate it
(`cluster.restart()`, or destroy and re-initialise the process group).
"""

from __future__ import annotations


class CommError(RuntimeError):
    """A message to or from `peer` failed; the message names rank, host, peer and step."""

    def __init__(self, message: str, *, rank: int, host: str, peer: int, step: int,
                 phase: str, algorithm: str):
        super().__init__(message)
        self.rank, self.host, self.peer = rank, host, peer
        self.step, self.phase, self.algorithm = step, phase, algorithm


class CommTimeout(CommError, TimeoutError):
    """The peer stayed silent for longer than the collective's timeout."""
