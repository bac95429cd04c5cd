"""Trace mode: record every message a collective sends, to print it or draw it.

    with hpclab.comm.tracing() as trace:
        hpclab.comm.all_reduce(x, algorithm="ring")
    print(trace.table())                      # this rank's messages
    everyone = hpclab.comm.gather_traces(trace)   # rank 0: all ranks' messages, else None
    print(timeline(everyone))                 # one line per step: 0→1 c2  1→2 c0 ...

Each message this rank sends becomes one `Message` (times in seconds from `time.time()`,
so traces of ranks on one host share a clock; across hosts they are as good as NTP):

    step       the algorithm's step (messages of one step can be in flight together)
    src, dst   sender and receiver, as ranks of the group
    chunk      which of the algorithm's p pieces of the vector travels (0 = whole vector)
    nbytes     payload size
    t_start    when the send was posted;  t_end: when this rank saw it complete
    phase      e.g. "reduce-scatter", "all-gather", "gather", "broadcast", "fold"
    call       0, 1, 2 ... : which collective call inside this `tracing()` block
    collective "all_reduce", "broadcast", ...;  algorithm: "ring", "tree", ...
    segment    index of the segment within the chunk (ring_pipelined cuts chunks)

The tracing block is found through a context variable, so code that runs collectives
needs no extra argument and untraced code pays one `is None` check per message.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_CURRENT: contextvars.ContextVar[Trace | None] = contextvars.ContextVar(
    "hpclab_comm_trace", default=None)


@dataclass
class Message:
    step: int
    src: int
    dst: int
    chunk: int
    nbytes: int
    t_start: float
    t_end: float
    phase: str
    call: int = 0
    collective: str = ""
    algorithm: str = ""
    segment: int = 0

    @property
    def seconds(self) -> float:
        return self.t_end - self.t_start


@dataclass
class Trace:
    """The messages recorded in one `tracing()` block, in the order they were sent."""
    messages: list[Message] = field(default_factory=list)
    calls: int = 0

    def begin(self, collective: str, algorithm: str) -> int:
        """Start a new collective call; returns its number (Message.call)."""
        self.calls += 1
        return self.calls - 1

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def table(self) -> str:
        return table(self.messages)


@contextmanager
def tracing() -> Iterator[Trace]:
    """Record every message sent by hpclab.comm collectives inside the block."""
    trace = Trace()
    token = _CURRENT.set(trace)
    try:
        yield trace
    finally:
        _CURRENT.reset(token)


def current_trace() -> Trace | None:
    return _CURRENT.get()


def table(messages: list[Message]) -> str:
    """Messages as an aligned text table; times in ms from the first message's start."""
    head = (f"{'call':>4} {'algorithm':<18} {'phase':<15} {'step':>4} {'src':>3} {'dst':>3} "
            f"{'chunk':>5} {'seg':>3} {'bytes':>10} {'start ms':>9} {'ms':>8}")
    if not messages:
        return head + "\n(no messages)"
    t0 = min(m.t_start for m in messages)
    rows = [f"{m.call:>4} {m.algorithm:<18} {m.phase:<15} {m.step:>4} {m.src:>3} {m.dst:>3} "
            f"{m.chunk:>5} {m.segment:>3} {m.nbytes:>10} {1e3 * (m.t_start - t0):>9.3f} "
            f"{1e3 * m.seconds:>8.3f}" for m in messages]
    return "\n".join([head, *rows])


def timeline(messages: list[Message]) -> str:
    """One line per step: who sends which chunk to whom (segments merged), e.g.

        step  0 reduce-scatter | 0→1 c3  1→2 c0  2→3 c1  3→0 c2
    """
    steps: dict[tuple, dict] = {}
    for m in sorted(messages, key=lambda m: (m.call, m.step, m.src, m.dst)):
        steps.setdefault((m.call, m.step, m.phase), {})[(m.src, m.dst, m.chunk)] = None
    return "\n".join(f"step {step:>2} {phase:<15}| " +
                     "  ".join(f"{src}→{dst} c{chunk}" for src, dst, chunk in arrows)
                     for (_, step, phase), arrows in steps.items())
