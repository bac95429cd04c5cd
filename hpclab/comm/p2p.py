"""The communicator every algorithm is written in: post, wait, never hang.

`Comm` knows who this rank is in the group, how long a wait may take, and which trace to
record into. The algorithms use its verbs and nothing else of torch.distributed:

    h = comm.isend(piece, dst, step=s, phase="reduce-scatter", chunk=c)   # post, return
    h = comm.irecv(buffer, src, step=s, phase="reduce-scatter")
    comm.wait(h, ...)                        # block, at most `timeout`, for each handle
    comm.send(...), comm.recv(...)           # post and wait
    comm.exchange(piece, dst, buffer, src, step=s, phase=...)   # send and receive at once
    comm.exchange_reduce(piece, dst, x, src, op, step=s, ...)   # ... and x ← x ⊕ received
    comm.recv_reduce(x, src, op, step=s, ...)                   # x ← x ⊕ received
    with comm.inbox(src, sizes, like=x, steps=..., phase=...) as inbox:   # a stream of
        piece = inbox.next()                                    # messages from one peer

Messages of zero elements are skipped (both sides know the sizes, so both skip). How the
bytes travel (1 MiB pieces, reusable receive slots) is _transport.py's business. A wait
that times out, or a peer that dies, raises `CommTimeout` / `CommError` naming this rank,
its host, the peer, the step and the phase.

`split(x, p)` cuts a flat tensor into p chunk views (no copies): the algorithms work in
place on one flat buffer.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from hpclab.comm._transport import Inbox, Pending, pieces, post
from hpclab.comm.errors import CommError, CommTimeout
from hpclab.comm.ops import combine_
from hpclab.comm.trace import Message, Trace, current_trace

DEFAULT_TIMEOUT = 60.0  # seconds; a lecture-room default: long enough for a busy laptop


@dataclass
class Comm:
    rank: int
    world_size: int
    group: Any = None
    timeout: timedelta = timedelta(seconds=DEFAULT_TIMEOUT)
    collective: str = ""
    algorithm: str = ""
    trace: Trace | None = None
    call: int = 0
    host: str = field(default_factory=socket.gethostname)

    @classmethod
    def of(cls, group=None, timeout: float | timedelta | None = None, *, collective: str = "",
           algorithm: str = "", trace: Trace | None | str = "current") -> Comm:
        """The Comm of this process in `group` (None = the default group)."""
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised: call "
                               "dist.init_process_group(...) first, or use hpclab.connect()")
        rank = dist.get_rank(group)
        if rank < 0:
            raise ValueError(f"this process (global rank {dist.get_rank()}) is not a member "
                             f"of the group passed to {collective or 'the collective'}")
        trace = current_trace() if trace == "current" else trace
        call = trace.begin(collective, algorithm) if trace is not None else 0
        return cls(rank=rank, world_size=dist.get_world_size(group), group=group,
                   timeout=as_timedelta(timeout), collective=collective,
                   algorithm=algorithm, trace=trace, call=call)

    def isend(self, tensor: torch.Tensor, dst: int, *, step: int, phase: str, chunk: int = 0,
              segment: int = 0) -> Pending | None:
        if tensor.numel() == 0:
            return None
        message = None
        if self.trace is not None:
            message = Message(step, self.rank, dst, chunk, tensor.numel() * tensor.element_size(),
                              time.time(), float("nan"), phase, self.call, self.collective,
                              self.algorithm, segment)
            self.trace.messages.append(message)
        return Pending(post("send", tensor, dst, self.group), "send", dst, step, phase, message)

    def irecv(self, tensor: torch.Tensor, src: int, *, step: int, phase: str) -> Pending | None:
        if tensor.numel() == 0:
            return None
        return Pending(post("recv", tensor, src, self.group), "recv", src, step, phase)

    def wait(self, *handles: Pending | None) -> None:
        for h in handles:
            if h is not None:
                self._wait_piece(h, len(h.works) - 1)
                if h.message is not None:
                    h.message.t_end = time.time()

    def send(self, tensor, dst, *, step: int, phase: str, chunk: int = 0) -> None:
        self.wait(self.isend(tensor, dst, step=step, phase=phase, chunk=chunk))

    def recv(self, tensor, src, *, step: int, phase: str) -> None:
        self.wait(self.irecv(tensor, src, step=step, phase=phase))

    def exchange(self, send: torch.Tensor, dst: int, recv: torch.Tensor, src: int, *,
                 step: int, phase: str, chunk: int = 0) -> None:
        """Send `send` to dst while receiving `recv` from src (full duplex), then wait."""
        r = self.irecv(recv, src, step=step, phase=phase)
        s = self.isend(send, dst, step=step, phase=phase, chunk=chunk)
        self.wait(r, s)

    def exchange_reduce(self, send: torch.Tensor, dst: int, x: torch.Tensor, src: int,
                        op: str, *, step: int, phase: str, chunk: int = 0) -> None:
        """Send `send` to dst while x ← x ⊕ (src's vector of x's size), piece by piece as
        it arrives (adding piece k overlaps the transfer of piece k+1; no x-sized buffer).
        `send` may be x itself: a piece of x is changed only once it has been sent."""
        mine = pieces(x)
        with self.inbox(src, [q.numel() for q in mine], x, steps=[step] * len(mine),
                        phase=phase) as inbox:
            out = self.isend(send, dst, step=step, phase=phase, chunk=chunk)
            for k, piece in enumerate(mine):
                theirs = inbox.next()
                if out is not None and k < len(out.works) and send.data_ptr() == x.data_ptr():
                    self._wait_piece(out, k)
                combine_(piece, theirs, op)
        self.wait(out)

    def recv_reduce(self, x: torch.Tensor, src: int, op: str, *, step: int, phase: str) -> None:
        """x ← x ⊕ (src's vector of x's size), piece by piece as it arrives."""
        self.exchange_reduce(x[:0], src, x, src, op, step=step, phase=phase)

    def inbox(self, src: int, sizes: list[int], like: torch.Tensor, *, steps: list[int],
              phase: str) -> Inbox:
        """Receive messages of `sizes` elements (like's dtype) from src, one after another,
        into a few reusable slots, the next ones posted ahead; use as a `with` block."""
        return Inbox(self, src, sizes, like, steps=steps, phase=phase)

    def _wait_piece(self, h: Pending, k: int) -> None:
        """Wait until pieces 0..k of a message are done."""
        while h.waited <= k:
            start = time.monotonic()
            try:
                h.works[h.waited].wait(timeout=self.timeout)
            except RuntimeError as exc:
                raise self._error(h, exc, time.monotonic() - start) from exc
            h.waited += 1

    def _error(self, h: Pending, exc: Exception, waited: float) -> CommError:
        peer = f"rank {h.peer}" if h.peer >= 0 else "the other ranks"
        its, is_ = ("its", "is") if h.peer >= 0 else ("their", "are")
        what = (f"rank {self.rank} on host {self.host}, waiting to "
                f"{'receive from' if h.kind == 'recv' else 'send to'} {peer} at step "
                f"{h.step} ({h.phase}) of {self.collective} algorithm={self.algorithm!r}")
        limit = self.timeout.total_seconds()
        timed_out = "timed out" in str(exc).lower() or waited >= 0.9 * limit
        info = {"rank": self.rank, "host": self.host, "peer": h.peer, "step": h.step,
                "phase": h.phase, "algorithm": self.algorithm}
        if timed_out:
            return CommTimeout(
                f"{what}: no answer within {limit:g} s. {peer.capitalize()} may have died, "
                f"be stuck, or be running a different collective, size or algorithm; check "
                f"{its} log. The process group is unusable now: restart the "
                f"cluster (or re-create the group) and pass a larger timeout= if {peer} "
                f"{is_} only slow.", **info)
        return CommError(f"{what}: the message failed ({exc}). {peer.capitalize()} probably "
                         f"died; check {its} log, then restart the cluster (or re-create the "
                         f"group).", **info)

    def wrap(self, work, what: str) -> Pending:
        """A torch.distributed Work (algorithm="torch") as a handle `wait` can bound."""
        return Pending([work], "recv", -1, 0, f"torch.distributed.{what}")


def as_timedelta(timeout: float | timedelta | None) -> timedelta:
    if timeout is None:
        return timedelta(seconds=DEFAULT_TIMEOUT)
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not seconds > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return timedelta(seconds=seconds)


def split(x: torch.Tensor, p: int) -> list[torch.Tensor]:
    """p contiguous views of the flat x, as torch.tensor_split cuts them: the first
    n mod p chunks have ⌈n/p⌉ elements, the others ⌊n/p⌋ (some may be empty)."""
    return list(torch.tensor_split(x, p))
