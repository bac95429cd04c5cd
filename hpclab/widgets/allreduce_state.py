"""From a real all-reduce trace to pictures: who holds which partial sums after each step.

    msgs = record_trace("ring", world_size=4)          # run on 4 local processes, traced
    replay = Replay(msgs, world_size=4, nbytes=msgs_total)
    replay.steps                  # the algorithm's steps, in order
    replay.holdings(k)            # holdings[r][c] = set of ranks whose data piece c of
                                  # rank r's vector contains, after k steps
    replay.step_cost(k, params, n)   # α–β–γ seconds of step k for an n-byte vector

The vector is cut into pieces of the smallest message's size (ring: n/p; halving-doubling
on p' = 2^⌊log₂p⌋ ranks: n/p'; naive and tree: the whole vector). A message carrying
`nbytes` from piece `chunk` covers pieces chunk … chunk + nbytes/piece − 1. Sums and
copies are both unions of contributor sets: after the all-reduce every piece of every
rank holds {0, …, p−1}, which `Replay.complete()` checks.

Cost of one step, each rank's link sending and receiving its own messages one by one:

    t_step = k·α + B·β' + R·γ
    k = most messages one rank sends or receives in the step, B = most bytes,
    R = most bytes one rank reduces, β' = β₂ if some rank sends and receives at once.

Summed over the steps this is `hpclab.comm.cost_model`'s formula for each algorithm.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from hpclab.comm.cost_model import Params

COPY_PHASES = ("all-gather", "broadcast", "fold out")
# A teaching default (a fast cluster network) when nothing was measured: α = 5 µs,
# 1/β = 10 GB/s, 1/γ = 20 GB/s. `hpclab bench comm` measures the real ones.
ASSUMED = Params(alpha=5e-6, beta=1e-10, gamma=5e-11)


def _traced_all_reduce(ctx, algorithm: str, numel: int):
    import torch

    from hpclab import comm
    from hpclab.comm import gather_traces, tracing

    x = torch.full((numel,), float(ctx.rank + 1))
    with tracing() as trace:
        comm.all_reduce(x, algorithm=algorithm)
    expected = ctx.world_size * (ctx.world_size + 1) / 2
    if not bool((x == expected).all()):
        raise RuntimeError(f"{algorithm} all-reduce gave a wrong sum on {ctx.where()}")
    return gather_traces(trace, timeout=ctx.timeout)


def record_trace(algorithm: str, world_size: int = 4, numel: int | None = None,
                 cluster=None, timeout: float = 60.0) -> tuple[list, int]:
    """Run a traced all-reduce of `numel` float32 values (default 256 per rank, small
    enough to travel unsegmented) on `world_size` local processes, or on every engine of
    `cluster`; return (all ranks' messages, vector bytes)."""
    if cluster is not None:
        world_size = cluster.world_size
    numel = numel or 256 * world_size
    if cluster is not None:
        msgs = cluster.run(_traced_all_reduce, algorithm, numel, timeout=timeout)[0]
    else:
        from hpclab.cluster.spawn import run_local
        msgs = run_local(_traced_all_reduce, world_size, algorithm, numel, timeout=timeout)[0]
    return msgs, 4 * numel


@dataclass
class Move:
    src: int
    dst: int
    pieces: range
    nbytes: int
    phase: str
    seconds: float        # measured: from posting the send to its completion


class Replay:
    def __init__(self, messages, world_size: int, nbytes: int):
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if nbytes < 1:
            raise ValueError(f"nbytes must be >= 1, got {nbytes}")
        self.p, self.nbytes = world_size, nbytes
        msgs = sorted(messages, key=lambda m: (m.call, m.step, m.t_start))
        self.piece_bytes = min((m.nbytes for m in msgs), default=nbytes)
        self.n_pieces = max(round(nbytes / self.piece_bytes), 1)
        by_step = defaultdict(list)
        for m in msgs:
            count = max(round(m.nbytes / self.piece_bytes), 1)
            by_step[(m.call, m.step)].append(Move(m.src, m.dst, range(m.chunk, m.chunk + count),
                                                  m.nbytes, m.phase, m.t_end - m.t_start))
        self.steps: list[list[Move]] = [by_step[k] for k in sorted(by_step)]
        self._states = [[[{r} for _ in range(self.n_pieces)] for r in range(self.p)]]
        for moves in self.steps:
            before = self._states[-1]
            after = [[set(s) for s in row] for row in before]
            for mv in moves:      # a step's messages travel together: read the old state
                for c in mv.pieces:
                    after[mv.dst][c] |= before[mv.src][c]
            self._states.append(after)

    def __len__(self) -> int:
        return len(self.steps)

    def holdings(self, k: int) -> list[list[set]]:
        """Contributor sets per rank and piece after the first k steps (0 <= k <= len)."""
        if not 0 <= k <= len(self.steps):
            raise ValueError(f"k must be in [0, {len(self.steps)}], got {k}")
        return self._states[k]

    def complete(self) -> bool:
        everyone = set(range(self.p))
        return all(s == everyone for row in self._states[-1] for s in row)

    def phase(self, k: int) -> str:
        return ", ".join(sorted({mv.phase for mv in self.steps[k]}))

    def step_cost(self, k: int, params: Params = ASSUMED, nbytes: float | None = None) -> float:
        """Model seconds of step k when the whole vector is `nbytes` (default: traced)."""
        scale = (nbytes or self.nbytes) / self.nbytes
        sent, recv = defaultdict(list), defaultdict(list)
        reduced = defaultdict(float)
        for mv in self.steps[k]:
            sent[mv.src].append(mv.nbytes * scale)
            recv[mv.dst].append(mv.nbytes * scale)
            if mv.phase not in COPY_PHASES:
                reduced[mv.dst] += mv.nbytes * scale
        count = max(len(v) for v in (*sent.values(), *recv.values()))
        most = max(sum(v) for v in (*sent.values(), *recv.values()))
        duplex = any(r in recv for r in sent)
        beta = params.beta2 if duplex else params.beta
        return count * params.alpha + most * beta + max(reduced.values(), default=0.0) * params.gamma

    def total_cost(self, params: Params = ASSUMED, nbytes: float | None = None) -> float:
        return sum(self.step_cost(k, params, nbytes) for k in range(len(self.steps)))

    def measured(self, k: int) -> float:
        """Longest message of step k in the real run (seconds)."""
        return max(mv.seconds for mv in self.steps[k])
