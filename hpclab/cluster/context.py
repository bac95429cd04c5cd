"""The distributed context: who am I, who are my peers, where do my tensors live.

Every piece of distributed code in hpclab receives a `DistContext` explicitly (no
module-level globals), whether it runs on an ipyparallel engine (`cluster.run(fn)` calls
`fn(ctx, ...)`), in processes spawned on this machine (`hpclab.cluster.spawn.run_local`) or
under torchrun (`DistContext.from_env()`).

    def hello(ctx):
        ctx.log("I am rank", ctx.rank, "of", ctx.world_size, "on", ctx.device)
        ctx.print0("only rank 0 prints this")

The topology: `local_rank` (index on its node), `node` (index of the node) and
`ranks_per_node`; ranks are numbered node by node (rank = node·ranks_per_node +
local_rank), as connect() and run_local(..., ranks_per_node=k) number them. They are also
in the environment under torchrun's names (LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK), which
is where the hierarchical collectives read them when not told.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int = 0
    host: str = field(default_factory=socket.gethostname)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = "gloo"
    group: Any = None          # None means torch.distributed's default group
    timeout: float = 60.0      # seconds any wait may take before it is an error
    node: int = 0              # index of this rank's node (host), nodes ordered as ranks are
    ranks_per_node: int = 0    # ranks on each node (0: unknown, taken as world_size)

    @property
    def local_world_size(self) -> int:
        """Ranks on this rank's node (torchrun's LOCAL_WORLD_SIZE)."""
        return self.ranks_per_node or self.world_size

    @property
    def nodes(self) -> int:
        return self.world_size // self.local_world_size

    def print0(self, *args, **kwargs) -> None:
        """print on rank 0 only (the notebook would otherwise see world_size copies)."""
        if self.rank == 0:
            print(*args, **kwargs, flush=True)

    def log(self, *args, sep: str = " ", end: str = "\n", file=None) -> None:
        """print with a `[rank r/p host]` prefix, the line in one write.

        Ranks of a node share one stdout (torchrun's, the Slurm output file): print's
        piece-by-piece writes of an unbuffered stream would interleave their lines."""
        line = sep.join([f"[rank {self.rank}/{self.world_size} {self.host}]", *map(str, args)])
        out = sys.stdout if file is None else file
        out.write(line + end)
        out.flush()

    def where(self) -> str:
        """`rank r on host h`: the phrase every distributed error message uses."""
        return f"rank {self.rank} on host {self.host}"

    @classmethod
    def from_env(cls, timeout: float = 60.0) -> DistContext:
        """Context of an already-initialised process group (torchrun, mp.spawn, engines)."""
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised: call "
                               "dist.init_process_group(...) first, or use hpclab.connect()")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        backend = dist.get_backend()
        device = (torch.device(f"cuda:{local_rank}") if backend == "nccl"
                  else torch.device("cpu"))
        # torchrun's names: LOCAL_WORLD_SIZE ranks per node, GROUP_RANK the node's index
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(),
                   local_rank=local_rank, device=device, backend=backend, timeout=timeout,
                   node=int(os.environ.get("GROUP_RANK", "0")),
                   ranks_per_node=int(os.environ.get("LOCAL_WORLD_SIZE", "0")))
