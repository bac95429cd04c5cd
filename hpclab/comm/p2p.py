"""The point-to-point layer every algorithm is written in: post, wait, never hang.

`Comm` knows who this rank is in the group, how long a wait may take, and which trace to
record into. Algorithms use four verbs:

    h = comm.isend(piece, dst, step=s, phase="reduce-scatter", chunk=c)   # post, return
    h = comm.irecv(buffer, src, step=s, phase="reduce-scatter")
    comm.wait(h, ...)                        # block, at most `timeout`, for each handle
    comm.exchange(piece, dst, buffer, src, step=s, phase=...)  # send and receive at once

plus blocking `send`/`recv`. Messages of zero elements are skipped (both sides know the
sizes, so both skip); messages over 1 MiB travel as 1 MiB pieces. `Inbox` receives a
known sequence of pieces into a few reusable buffers (the pipelined ring uses it);
`recv_reduce` and `exchange_reduce` add an incoming vector into x piece by piece. A wait that times out, or a peer that dies, raises `CommTimeout` /
`CommError` naming this rank, its host, the peer, the step and the phase.

`split(x, p)` and `segments(x, nbytes)` cut a flat tensor into views (no copies): the
algorithms work in place on one flat buffer.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Self

import torch
import torch.distributed as dist

from hpclab.comm import scratch
from hpclab.comm.errors import CommError, CommTimeout
from hpclab.comm.ops import combine_
from hpclab.comm.trace import Message, Trace, current_trace

DEFAULT_TIMEOUT = 60.0  # seconds; a lecture-room default: long enough for a busy laptop
# gloo over TCP moves one 32 MiB message at about half the speed of 32 messages of 1 MiB
# (measured on the course machine), so larger messages travel as 1 MiB pieces.
PIECE_BYTES = 1 << 20


@dataclass
class Pending:
    """A posted send or receive (one torch.distributed Work per piece of the message)."""
    works: list
    kind: str                 # "send" or "recv"
    peer: int
    step: int
    phase: str
    message: Message | None = None   # the trace entry of a send, finished on wait
    waited: int = 0                  # pieces already waited for (gloo's wait is not
                                     # idempotent: a second wait blocks forever)


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

    # -- the four verbs -------------------------------------------------------------------
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
        works = [dist.isend(piece, group=self.group, group_dst=dst)
                 for piece in segments(tensor, PIECE_BYTES)]
        return Pending(works, "send", dst, step, phase, message)

    def irecv(self, tensor: torch.Tensor, src: int, *, step: int, phase: str) -> Pending | None:
        if tensor.numel() == 0:
            return None
        works = [dist.irecv(piece, group=self.group, group_src=src)
                 for piece in segments(tensor, PIECE_BYTES)]
        return Pending(works, "recv", src, step, phase)

    def wait(self, *handles: Pending | None) -> None:
        for h in handles:
            if h is None:
                continue
            while h.waited < len(h.works):
                self.wait_piece(h, h.waited)
            if h.message is not None:
                h.message.t_end = time.time()

    def wait_piece(self, h: Pending, k: int) -> None:
        """Wait until pieces 0..k of a message are done (pieces are PIECE_BYTES long)."""
        while h.waited <= k:
            start = time.monotonic()
            try:
                h.works[h.waited].wait(timeout=self.timeout)
            except RuntimeError as exc:
                raise self._error(h, exc, time.monotonic() - start) from exc
            h.waited += 1

    def exchange(self, send: torch.Tensor, dst: int, recv: torch.Tensor, src: int, *,
                 step: int, phase: str, chunk: int = 0) -> None:
        """Send `send` to dst while receiving `recv` from src (full duplex), then wait."""
        r = self.irecv(recv, src, step=step, phase=phase)
        s = self.isend(send, dst, step=step, phase=phase, chunk=chunk)
        self.wait(r, s)

    def recv_reduce(self, x: torch.Tensor, src: int, op: str, *, step: int, phase: str) -> None:
        """x ← x ⊕ (src's vector of x's size), piece by piece as it arrives: no x-sized
        buffer, and adding piece k overlaps the transfer of piece k+1."""
        self.exchange_reduce(x[:0], src, x, src, op, step=step, phase=phase)

    def exchange_reduce(self, send: torch.Tensor, dst: int, x: torch.Tensor, src: int,
                        op: str, *, step: int, phase: str, chunk: int = 0) -> None:
        """Send `send` to dst while x ← x ⊕ (src's vector of x's size), piece by piece.
        `send` may be x itself: a piece of x is changed only once it has been sent."""
        pieces = segments(x, PIECE_BYTES)
        with Inbox(self, src, [q.numel() for q in pieces], x, steps=[step] * len(pieces),
                   phase=phase) as inbox:
            out = self.isend(send, dst, step=step, phase=phase, chunk=chunk)
            for k, mine in enumerate(pieces):
                theirs = inbox.next()
                if out is not None and k < len(out.works) and send.data_ptr() == x.data_ptr():
                    self.wait_piece(out, k)
                combine_(mine, theirs, op)
        self.wait(out)

    def send(self, tensor, dst, *, step: int, phase: str, chunk: int = 0) -> None:
        self.wait(self.isend(tensor, dst, step=step, phase=phase, chunk=chunk))

    def recv(self, tensor, src, *, step: int, phase: str) -> None:
        self.wait(self.irecv(tensor, src, step=step, phase=phase))

    # -- errors a student can act on ------------------------------------------------------
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


class Inbox:
    """Receive a known sequence of pieces from one peer into a few reusable slots.

        with Inbox(comm, src, sizes=[...], like=x, steps=[...], phase="reduce-scatter") as inbox:
            for size in sizes:
                piece = inbox.next()      # waits for the next piece; a view into a slot

    The next `slots − 1` receives stay posted while the caller adds the current piece, so
    transfer and reduction overlap; a slot is reused once the caller asks for the piece
    after it. A few segment-sized slots rather than a chunk-sized buffer, and the slots
    come from `scratch`, kept from call to call: fresh memory is mapped in page by page
    while the message is copied into it (0.3–0.4 ms per 2 MiB here). Leaving the `with`
    block normally gives the slots back; after an error they are dropped, since a posted
    receive may still write into them.
    """

    def __init__(self, comm: Comm, src: int, sizes: list[int], like: torch.Tensor, *,
                 steps: list[int], phase: str, slots: int = 4):
        self.comm, self.src, self.sizes, self.steps, self.phase = comm, src, sizes, steps, phase
        capacity = max(sizes, default=0)
        self.slots = [scratch.take(capacity, like) for _ in range(min(slots, len(sizes)))]
        self.posted: dict[int, tuple[Pending | None, torch.Tensor]] = {}
        self.index = 0
        for i in range(len(self.slots)):
            self._post(i)

    def _post(self, i: int) -> None:
        if i < len(self.sizes):
            buffer = self.slots[i % len(self.slots)][:self.sizes[i]]
            self.posted[i] = (self.comm.irecv(buffer, self.src, step=self.steps[i],
                                              phase=self.phase), buffer)

    def next(self) -> torch.Tensor:
        if self.index > 0:   # the caller is done with the previous piece: reuse its slot
            self._post(self.index - 1 + len(self.slots))
        handle, buffer = self.posted.pop(self.index)
        self.comm.wait(handle)
        self.index += 1
        return buffer

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None and not self.posted:   # every receive done: the slots are free
            for slot in self.slots:
                scratch.give(slot)
        self.slots = []


def as_timedelta(timeout: float | timedelta | None) -> timedelta:
    if timeout is None:
        return timedelta(seconds=DEFAULT_TIMEOUT)
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not seconds > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return timedelta(seconds=seconds)


def split(x: torch.Tensor, p: int) -> list[torch.Tensor]:
    """p contiguous views of the flat x; sizes differ by at most one (some may be empty)."""
    n = x.numel()
    return [x[c * n // p:(c + 1) * n // p] for c in range(p)]


def segments(x: torch.Tensor, nbytes: int) -> list[torch.Tensor]:
    """Views of at most `nbytes` each covering the flat x ([] when x is empty)."""
    if x.numel() == 0:
        return []
    return list(x.split(max(1, nbytes // x.element_size())))
