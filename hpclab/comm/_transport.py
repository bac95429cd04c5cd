"""How the Comm verbs move bytes (private to p2p.py; algorithm files never import it).

- pieces: a message over `PIECE_BYTES` travels as 1 MiB pieces, one torch.distributed
  send/recv each, so a receiver can add piece k while piece k+1 is on the wire;
- receive slots (`Inbox`): what is added in lands first in a few reusable slots, the next
  receives already posted while the caller adds the current piece;
- a scratch pool: the slots are kept from call to call, per thread (a DDP communication
  thread never shares one with the notebook's), at most `POOL_BYTES` each. Memory not
  touched yet is mapped in page by page while the kernel copies a message into it
  (0.3–0.4 ms per 2 MiB on the 2-core course VM), which is why NCCL and gloo keep their
  buffers too. After an error a posted receive may still write into a slot: it is
  dropped, not returned.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Self

import torch
import torch.distributed as dist

# gloo over TCP moves one 32 MiB message at about half the speed of 32 messages of 1 MiB
# (measured on the 2-core course VM), so larger messages travel as 1 MiB pieces.
PIECE_BYTES = 1 << 20
POOL_BYTES = 64 << 20   # per thread: a few inboxes of 2 MiB segments, with room to spare

_local = threading.local()


@dataclass
class Pending:
    """A posted send or receive (one torch.distributed Work per piece of the message)."""
    works: list
    kind: str                 # "send" or "recv"
    peer: int
    step: int
    phase: str
    message: Any = None       # the trace entry of a send, finished on wait
    waited: int = 0           # pieces already waited for (a second wait on a gloo Work
                              # blocks forever)


def pieces(x: torch.Tensor, nbytes: int = PIECE_BYTES) -> list[torch.Tensor]:
    """Views of at most `nbytes` each covering the flat x ([] when x is empty)."""
    return list(x.split(max(1, nbytes // x.element_size()))) if x.numel() else []


def post(kind: str, tensor: torch.Tensor, peer: int, group) -> list:
    """isend/irecv every piece of `tensor` to/from `peer`; the Works, in order."""
    if kind == "send":
        return [dist.isend(q, group=group, group_dst=peer) for q in pieces(tensor)]
    return [dist.irecv(q, group=group, group_src=peer) for q in pieces(tensor)]


def take(numel: int, like: torch.Tensor) -> torch.Tensor:
    """A flat buffer of at least `numel` elements with like's dtype and device (contents
    undefined): the smallest free one in this thread's pool that fits, else a new one."""
    free = pool()
    fits = [i for i, b in enumerate(free)
            if b.dtype == like.dtype and b.device == like.device and b.numel() >= numel]
    if fits:
        return free.pop(min(fits, key=lambda i: free[i].numel()))
    return torch.empty(numel, dtype=like.dtype, device=like.device)


def give(buffer: torch.Tensor) -> None:
    """Return a buffer from `take` to the pool (the oldest go past POOL_BYTES)."""
    free = pool()
    free.append(buffer)
    while pooled_bytes() > POOL_BYTES:
        free.pop(0)


def pool() -> list[torch.Tensor]:
    """This thread's free buffers."""
    return _local.__dict__.setdefault("free", [])


def pooled_bytes() -> int:
    return sum(b.numel() * b.element_size() for b in pool())


class Inbox:
    """Receive a known sequence of messages from one peer into a few reusable slots.

        with Inbox(comm, src, sizes=[...], like=x, steps=[...], phase=...) as inbox:
            for size in sizes:
                piece = inbox.next()      # waits for the next message; a view into a slot

    The next `slots − 1` receives stay posted while the caller uses the current one.
    """

    def __init__(self, comm, src: int, sizes: list[int], like: torch.Tensor, *,
                 steps: list[int], phase: str, slots: int = 4):
        self.comm, self.src, self.sizes, self.steps, self.phase = comm, src, sizes, steps, phase
        capacity = max(sizes, default=0)
        self.slots = [take(capacity, like) for _ in range(min(slots, len(sizes)))]
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
        if self.index > 0:   # the caller is done with the previous message: reuse its slot
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
                give(slot)
        self.slots = []
