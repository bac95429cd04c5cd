"""Run any pipeline schedule (pipeline_schedule.py) on the ranks with our p2p verbs.

    from hpclab.parallel.pipeline_1f1b import one_f_one_b
    stage = split_sequential(model, ctx.world_size)[ctx.rank]
    timeline = PipelineTimeline()
    loss = run_schedule(one_f_one_b(ctx.world_size, 8, ctx.rank), stage, ctx,
                        x if ctx.rank == 0 else None, y if ctx.rank == ctx.world_size - 1 else None,
                        loss_fn=F.cross_entropy, n_micro=8, timeline=timeline, name="1f1b")
    # loss on the last rank; every chunk holds ∂J/∂θ in .grad; timeline.events: who did what when

Rank r walks its own list. For F(i, c) on virtual stage s = c·p + r it takes micro-batch
i of x (s = 0) or receives a_{s−1} from rank (s − 1) mod p, runs the chunk, and sends a_s
to rank (s + 1) mod p; on the last stage it computes the loss, weighted by the
micro-batch's share of the batch so that the gradients add up to the whole batch's. For
B(i, c) it receives ∂J/∂a_s (none on the last stage), runs backward through the graph kept
since F(i, c), and sends ∂J/∂a_{s−1} back.

Why it cannot deadlock on a valid schedule: every send is posted (`comm.isend`) and
waited for only once it has completed or at the end of the step, so a rank never blocks on a send — a blocking send of
a multi-MiB activation would wait for the receiver, which may itself be waiting to send.
A rank blocks only on the receive it needs next. Messages between two ranks arrive in the
order they were sent, which need not be the order the receiver uses them (interleaved
1F1B sends activations and gradients over the same link), so each message is preceded by
a small header naming (activation|gradient, micro-batch, stage, dtype, shape); messages
received ahead of their use wait in a dictionary. A schedule whose ranks wait for each
other (`simulate` finds that in advance) fails at the first receive that passes the
timeout, with a `CommTimeout` naming the rank, its host, the peer and the step.

Traces (`hpclab.comm.tracing()`) record one message per activation or gradient sent:
step = the action's position in this rank's list, phase = "forward" (activation) or
"backward" (gradient), chunk = the micro-batch i, segment = the model chunk c,
algorithm = `name`; the headers are not traced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from hpclab.comm import Comm
from hpclab.parallel.pipeline_schedule import check_rank

DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64)
_HEADER = 12            # kind, micro-batch, stage, dtype, ndim, up to 7 dimensions
ACTIVATION, GRADIENT = 0, 1


class Event(NamedTuple):
    """One computation of a rank: F or B of micro-batch `micro` through chunk `chunk`."""
    rank: int
    kind: str
    micro: int
    chunk: int
    t_start: float      # time.perf_counter(): one clock for all processes of a host
    t_end: float


@dataclass
class PipelineTimeline:
    """What a rank computed when (drawn by pipeline_timeline.py, the bubble from it), and
    the most micro-batch chunks whose activations it held at once."""
    events: list[Event] = field(default_factory=list)
    peak_in_flight: int = 0


def run_schedule(actions, chunks: nn.Module | list[nn.Module], ctx, x: torch.Tensor | None,
                 y: torch.Tensor | None, loss_fn, n_micro: int, *,
                 timeline: PipelineTimeline | None = None, timeout: float | None = None,
                 name: str = "pipeline"):
    """Run this rank's `actions` ((kind, i[, c]) tuples) over its v model `chunks`.

    x is needed on rank 0, y on the last rank; loss_fn averages over its batch. With
    loss_fn=None the schedule holds forwards only (inference, under no_grad) and the last
    rank returns the model's outputs; otherwise it returns the loss. Other ranks: None.
    """
    rank, p = ctx.rank, ctx.world_size
    chunks = list(chunks) if isinstance(chunks, (list, tuple)) else [chunks]
    v, last_stage = len(chunks), p * len(chunks) - 1
    if n_micro < 1:
        raise ValueError(f"n_micro must be >= 1, got {n_micro}")
    training = loss_fn is not None
    actions = check_rank(actions, n_micro, v, rank, backward=training)
    if rank == 0 and x is None:
        raise ValueError("rank 0 (the first stage) needs the input batch x")
    if rank == p - 1 and training and y is None:
        raise ValueError(f"rank {rank} (the last stage) needs the targets y")
    timeout = ctx.timeout if timeout is None else timeout
    comm = Comm.of(ctx.group, timeout, collective="pipeline", algorithm=name)
    link = _Link(comm, Comm.of(ctx.group, timeout, collective="pipeline", algorithm=name,
                               trace=None))
    xs = x.tensor_split(n_micro) if rank == 0 else None
    ys = y.tensor_split(n_micro) if rank == p - 1 and training else None
    batch = len(y) if ys is not None else None
    kept, outs, total = {}, {}, 0.0        # kept: (i, c) -> (input, output) until B(i, c)

    with torch.set_grad_enabled(training):
        for step, (kind, i, c) in enumerate(actions):
            s = c * p + rank
            if kind == "F":
                inp = xs[i] if s == 0 else link.receive(
                    (ACTIVATION, i, s), (rank - 1) % p, step, "forward")
                if s > 0 and training:
                    inp.requires_grad_()
                t0 = time.perf_counter()
                out = chunks[c](inp)
                if s == last_stage and training:   # an empty micro-batch (m > batch) adds 0
                    out = loss_fn(out, ys[i]) * (len(ys[i]) / batch) if len(ys[i]) else out.sum()
                    total += float(out.detach())
                _mark(timeline, rank, "F", i, c, t0)
                if s < last_stage:
                    link.send(out.detach(), (ACTIVATION, i, s + 1), (rank + 1) % p, step,
                              "forward", i, c)
                if training:
                    kept[(i, c)] = (inp, out)
                    if timeline is not None:
                        timeline.peak_in_flight = max(timeline.peak_in_flight, len(kept))
                elif s == last_stage:
                    outs[i] = out
            else:
                grad = None if s == last_stage else link.receive(
                    (GRADIENT, i, s), (rank + 1) % p, step, "backward")
                inp, out = kept.pop((i, c))
                t0 = time.perf_counter()
                out.backward(grad)
                _mark(timeline, rank, "B", i, c, t0)
                if s > 0:
                    g = inp.grad if inp.grad is not None else torch.zeros_like(inp)
                    link.send(g, (GRADIENT, i, s - 1), (rank - 1) % p, step, "backward", i, c)
    link.finish()
    if rank != p - 1:
        return None
    return total if training else torch.cat([outs[i] for i in range(n_micro)])


def _mark(timeline, rank, kind, i, c, t0):
    if timeline is not None:
        timeline.events.append(Event(rank, kind, i, c, t0, time.perf_counter()))


class _Link:
    """Headed messages to and from the neighbours: posted sends, keyed receives."""

    def __init__(self, comm: Comm, meta: Comm):
        self.comm, self.meta = comm, meta          # meta: the headers, untraced
        self.sends: list = []
        self.early: dict[tuple, torch.Tensor] = {}  # received before they are needed

    def send(self, t, key, dst, step, phase, micro, chunk):
        if dst == self.comm.rank:                  # p = 1 with v > 1 chunks: hand it over
            self.early[key] = t.detach().clone()
            return
        if t.dim() > _HEADER - 5 or t.dtype not in DTYPES:
            raise ValueError(f"rank {self.comm.rank}: can send tensors of up to "
                             f"{_HEADER - 5} dimensions and dtypes {DTYPES}, got "
                             f"{t.dim()} dimensions of {t.dtype}")
        header = torch.zeros(_HEADER, dtype=torch.int64)
        header[:5] = torch.tensor([*key, DTYPES.index(t.dtype), t.dim()])
        header[5:5 + t.dim()] = torch.tensor(t.shape, dtype=torch.int64)
        t = t.contiguous()
        self.sends += [(self.meta.isend(header, dst, step=step, phase=phase), header),
                       (self.comm.isend(t, dst, step=step, phase=phase, chunk=micro,
                                        segment=chunk), t)]
        # let go of the buffers already on their way (a gradient sent back is a new tensor)
        done = [(h, b) for h, b in self.sends
                if h is None or all(w.is_completed() for w in h.works)]
        self.comm.wait(*(h for h, _ in done))
        self.sends = [(h, b) for h, b in self.sends if all(h is not d for d, _ in done)]

    def receive(self, key, src, step, phase) -> torch.Tensor:
        """The message `key`; messages from src that come first are kept for later."""
        while key not in self.early:
            header = torch.empty(_HEADER, dtype=torch.int64)
            self.meta.recv(header, src, step=step, phase=phase)
            kind, micro, stage, dtype, ndim = header[:5].tolist()
            t = torch.empty(header[5:5 + ndim].tolist(), dtype=DTYPES[dtype])
            self.comm.recv(t, src, step=step, phase=phase)
            self.early[(kind, micro, stage)] = t
        return self.early.pop(key)

    def finish(self):
        """Wait for every posted send (each at most the timeout)."""
        self.comm.wait(*(h for h, _ in self.sends))
        self.sends = []
