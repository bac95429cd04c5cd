"""Collectives built from point-to-point messages, their traces, and their cost model.

    import hpclab.comm as comm
    comm.all_reduce(x, op="sum", algorithm="ring")   # in place, like dist.all_reduce
    comm.ALGORITHMS["all_reduce"]                     # naive, parameter_server, ring, ...
    with comm.tracing() as trace:                      # every message this rank sends
        comm.all_reduce(x, algorithm="tree")
    print(trace.table())
    comm.model.predict("ring", nbytes=4 << 20, p=4, params)   # α–β–γ prediction
    comm.all_reduce(x, algorithm="auto")   # the model picks, with measured costs (auto.py)

One file per algorithm, each reading as its phases: naive.py, parameter_server.py,
ring.py, recursive_doubling.py, halving_doubling.py, tree.py; torch_backend.py delegates
to torch.distributed. p2p.py is the only file that touches torch.distributed's send/recv.
"""

from hpclab.comm import model
from hpclab.comm.auto import calibrate, choose
from hpclab.comm.collectives import (
                                     ALGORITHMS,
                                     all_gather,
                                     all_reduce,
                                     broadcast,
                                     reduce,
                                     reduce_scatter,
)
from hpclab.comm.errors import CommError, CommTimeout
from hpclab.comm.ops import OPS
from hpclab.comm.trace import Message, Trace, gather_traces, table, timeline, tracing

__all__ = ["ALGORITHMS", "OPS", "CommError", "CommTimeout", "Message", "Trace",
           "all_gather", "all_reduce", "broadcast", "calibrate", "choose", "gather_traces",
           "model", "reduce", "reduce_scatter", "table", "timeline", "tracing"]
