"""A pipeline schedule, written down: what each rank computes, in which order.

A model is cut into S = p·v pieces ("virtual stages") s = 0 … S−1; rank r holds the v
model chunks c = 0 … v−1 with s = c·p + r (v = 1: rank r holds stage r). A batch is cut
into m micro-batches i = 0 … m−1. A schedule is, for every rank, a list of actions

    Action("F", i, c)   forward of micro-batch i through chunk c of this rank
    Action("B", i, c)   backward of micro-batch i through chunk c of this rank

and nothing else: sends and receives follow from it (an F on s > 0 first receives a_{s−1},
an F on s < S−1 sends a_s on; a B on s < S−1 first receives ∂J/∂a_s, a B on s > 0 sends
∂J/∂a_{s−1} back). GPipe (pipeline.py), 1F1B (pipeline_1f1b.py) and interleaved 1F1B
(pipeline_interleaved.py) are each a pure function (p, m, r) -> list of actions, easy to
print next to the slide:

    >>> from hpclab.parallel.pipeline_1f1b import one_f_one_b
    >>> print(table(one_f_one_b, p=4, m=8))
    rank 0: F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7
    ...

`run_schedule` (pipeline_executor.py) runs any such list on the ranks. Here, without any
process: `check` (every micro-batch forward and backward once, B after its F),
`simulate` (the ideal timeline with equal stages; it finds deadlocks), `bubble` (its
idle fraction) and `peak_in_flight` (micro-batches whose activations a rank holds at its
peak; the memory calculator's n_i).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Action(NamedTuple):
    kind: str        # "F" or "B"
    micro: int       # micro-batch i
    chunk: int = 0   # model chunk c of this rank (interleaved); 0 otherwise

    def __repr__(self) -> str:
        return f"{self.kind}{self.micro}" + (f".{self.chunk}" if self.chunk else "")


Schedule = Callable[..., list]   # (p, m, r, ...) -> list of Action


def as_actions(actions) -> list[Action]:
    """Actions from tuples ("F", i) or ("F", i, c), as a student may write them."""
    out = []
    for a in actions:
        if not isinstance(a, (tuple, list)) or len(a) not in (2, 3) or a[0] not in ("F", "B"):
            raise ValueError(f"an action is ('F' or 'B', micro-batch[, chunk]), got {a!r}")
        out.append(Action(a[0], int(a[1]), int(a[2]) if len(a) == 3 else 0))
    return out


def table(schedule: Schedule, p: int, m: int, **kw) -> str:
    """Every rank's list on one line each: `rank 0: F0 F1 B0 ...` (F1.1: chunk 1)."""
    return "\n".join(f"rank {r}: " + " ".join(map(repr, as_actions(schedule(p, m, r, **kw))))
                     for r in range(p))


def check(lists: list, m: int, v: int = 1) -> None:
    """Each rank runs F(i, c) and B(i, c) once for every i < m, c < v, B after its F;
    a ValueError names the rank and the action otherwise."""
    for r, actions in enumerate(lists):
        check_rank(actions, m, v, r)


def check_rank(actions, m: int, v: int, r: int, backward: bool = True) -> list[Action]:
    """`check` for rank r's list alone (backward=False: forwards only, for inference);
    returns the list as Actions."""
    actions, done = as_actions(actions), set()
    for a in actions:
        if not (0 <= a.micro < m and 0 <= a.chunk < v):
            raise ValueError(f"rank {r}: {a!r} is outside micro-batches 0..{m - 1}, "
                             f"chunks 0..{v - 1}")
        if (a.kind, a.micro, a.chunk) in done:
            raise ValueError(f"rank {r} runs {a!r} twice")
        if a.kind == "B" and ("F", a.micro, a.chunk) not in done:
            raise ValueError(f"rank {r} runs {a!r} before its forward")
        if a.kind == "B" and not backward:
            raise ValueError(f"rank {r}: a forward-only schedule has no backward, got {a!r}")
        done.add((a.kind, a.micro, a.chunk))
    missing = [Action(k, i, c) for k in ("FB" if backward else "F") for c in range(v)
               for i in range(m) if (k, i, c) not in done]
    if missing:
        raise ValueError(f"rank {r} never runs {missing}")
    return actions


def simulate(lists: list, t_f: float = 1.0, t_b: float = 2.0) -> list[tuple]:
    """The timeline of equal stages and free messages: (rank, kind, i, c, start, end).

    t_f, t_b: forward and backward time of a whole stage (one chunk costs 1/v of it).
    Each rank runs its list in order; an action starts when the rank is free and its
    input is there:

        F(i, s) after F(i, s−1)          B(i, s) after B(i, s+1) (s = S−1: after F(i, s))

    A schedule in which some ranks wait for each other forever raises a ValueError
    saying who waits for what (the run on processes would time out there).
    """
    p = len(lists)
    lists = [as_actions(a) for a in lists]
    v = 1 + max((a.chunk for acts in lists for a in acts), default=0)
    last = p * v - 1
    end: dict[tuple, float] = {}       # (kind, i, virtual stage) -> end time
    free, pos, events = [0.0] * p, [0] * p, []

    def needs(r, a):
        s = a.chunk * p + r
        if a.kind == "F":
            return None if s == 0 else ("F", a.micro, s - 1)
        return ("F", a.micro, s) if s == last else ("B", a.micro, s + 1)

    while any(pos[r] < len(lists[r]) for r in range(p)):
        progressed = False
        for r in range(p):
            while pos[r] < len(lists[r]):
                a = lists[r][pos[r]]
                dep = needs(r, a)
                if dep is not None and dep not in end:
                    break
                start = max(free[r], end[dep] if dep else 0.0)
                free[r] = start + (t_f if a.kind == "F" else t_b) / v
                end[(a.kind, a.micro, a.chunk * p + r)] = free[r]
                events.append((r, a.kind, a.micro, a.chunk, start, free[r]))
                pos[r] += 1
                progressed = True
        if not progressed:
            waits = []
            for r in range(p):
                if pos[r] < len(lists[r]):
                    kind, i, s = needs(r, lists[r][pos[r]])
                    waits.append(f"rank {r} at {lists[r][pos[r]]!r} waits for {kind}{i} "
                                 f"of stage {s}")
            raise ValueError("deadlock: " + "; ".join(waits))
    return events


def bubble(events: list) -> float:
    """Idle fraction of a step: 1 − Σ busy time / (p × step time), events as
    (rank, kind, i, c, start, end) from `simulate` or a measured PipelineTimeline."""
    p = 1 + max(e[0] for e in events)
    t0, t1 = min(e[-2] for e in events), max(e[-1] for e in events)
    return 1.0 - sum(e[-1] - e[-2] for e in events) / (p * (t1 - t0))


def peak_in_flight(actions) -> int:
    """Most micro-batch chunks forwarded and not yet backwarded at once: the activations
    a rank holds at its peak (in chunks; v chunks are one stage's worth)."""
    held = peak = 0
    for a in as_actions(actions):
        held += 1 if a.kind == "F" else -1
        peak = max(peak, held)
    return peak
