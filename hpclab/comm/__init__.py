"""Collectives built from point-to-point messages, their traces, and their cost model.

    import hpclab.comm as comm
    comm.all_reduce(x, op="sum", algorithm="ring")   # in place, like dist.all_reduce
    comm.ALGORITHMS["all_reduce"]                     # naive, parameter_server, ring, ...
    with comm.tracing() as trace:                      # every message this rank sends
        comm.all_reduce(x, algorithm="tree")
    print(trace.table())
    comm.cost_model.predict("ring", nbytes=4 << 20, p=4, params=params)   # α–β–γ
    costs = comm.calibrate(group)                      # measured message costs, every rank
    comm.all_reduce(x, algorithm="auto", costs=costs)  # the cost model picks by size

One file per algorithm, each reading as its phases: naive.py, parameter_server.py,
ring.py (and its pipelined twin ring_pipelined.py), recursive_doubling.py,
halving_doubling.py, tree.py, hierarchical.py (rings inside and across nodes, for
clusters of several nodes); torch_backend.py delegates to torch.distributed. They are
written in the verbs of `Comm` (p2p.py); how the bytes travel is _transport.py's.
"""

from hpclab.comm import cost_model
from hpclab.comm.collectives import (
    ALGORITHMS,
    all_gather,
    all_reduce,
    broadcast,
    gather_traces,
    reduce,
    reduce_scatter,
)
from hpclab.comm.cost_model import MeasuredCosts, Params, TwoLevel, best_algorithm
from hpclab.comm.errors import CommError, CommTimeout
from hpclab.comm.measure import calibrate
from hpclab.comm.ops import OPS
from hpclab.comm.p2p import Comm, split
from hpclab.comm.trace import Message, Trace, table, timeline, tracing

__all__ = ["ALGORITHMS", "OPS", "Comm", "CommError", "CommTimeout", "MeasuredCosts",
           "Message", "Params", "Trace", "TwoLevel", "all_gather", "all_reduce", "best_algorithm",
           "broadcast", "calibrate", "cost_model", "gather_traces", "reduce",
           "reduce_scatter", "split", "table", "timeline", "tracing"]
