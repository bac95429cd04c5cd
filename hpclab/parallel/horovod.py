"""A Horovod-style distributed optimizer: wrap the optimizer, not the model.

Horovod (Sergeev & Del Balso, 2018) made data parallelism a two-line change:

    broadcast_parameters(model.state_dict(), root_rank=0)     # replicas start equal
    opt = DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1),
                               named_parameters=model.named_parameters())
    loss.backward(); opt.step()                                # step() averages first

Each parameter gets a hook; once its gradient has been accumulated
`backward_passes_per_step` times, its all-reduce (op="avg", any hpclab.comm algorithm) is
submitted to one communication thread, so it overlaps the rest of backward — the same
launch path as ddp.py, a `ThreadPoolExecutor(max_workers=1)` that keeps the tensors in the
same order on every rank. `step()` waits for all of them (`synchronize()`) and then runs
the wrapped optimizer:  θ ← update(θ, (1/p) Σ_r g_r).

Compared with our DistributedDataParallel (ddp.py): one message per tensor instead of
buckets (Horovod fuses small tensors in a background thread; we keep it readable), and
the wait happens in step() rather than at the end of backward.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time

import torch
import torch.distributed as dist

import hpclab.comm


@torch.no_grad()
def broadcast_parameters(state: dict, root_rank: int = 0, group=None) -> None:
    """Copy rank `root_rank`'s tensors of `state` (e.g. model.state_dict()) to every rank."""
    for tensor in state.values():
        if torch.is_tensor(tensor):
            dist.broadcast(tensor, src=root_rank, group=group)


class DistributedOptimizer:
    def __init__(self, optimizer: torch.optim.Optimizer, named_parameters=None,
                 algorithm: str = "torch", group=None, backward_passes_per_step: int = 1,
                 timeout: float = 60.0):
        if backward_passes_per_step < 1:
            raise ValueError(f"backward_passes_per_step must be >= 1, "
                             f"got {backward_passes_per_step}")
        self.optimizer = optimizer
        self.algorithm, self.group, self.timeout = algorithm, group, timeout
        self.world_size = dist.get_world_size(group)
        self.backward_passes_per_step = backward_passes_per_step
        params = ([p for _, p in named_parameters] if named_parameters is not None else
                  [p for g in optimizer.param_groups for p in g["params"]])
        self._params = [p for p in params if p.requires_grad]
        self._counts = {id(p): 0 for p in self._params}
        self._pending: list[tuple[torch.Tensor, concurrent.futures.Future]] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="hpclab-horovod-comm")
        for p in self._params:
            p.register_post_accumulate_grad_hook(self._on_grad_ready)

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def _on_grad_ready(self, p: torch.Tensor) -> None:
        self._counts[id(p)] += 1
        if self._counts[id(p)] < self.backward_passes_per_step:
            return
        flat = p.grad.detach().reshape(-1).clone()
        self._pending.append((p, self._executor.submit(
            hpclab.comm.all_reduce, flat, op="avg", algorithm=self.algorithm,
            group=self.group, timeout=self.timeout)))

    def synchronize(self) -> None:
        """Wait for every launched all-reduce and put the averages into p.grad."""
        for i, (p, future) in enumerate(self._pending):
            try:
                flat = future.result(timeout=self.timeout)
            except Exception as exc:
                if future.done():   # the all-reduce itself failed: its error names the peer
                    raise
                raise TimeoutError(f"all-reduce of gradient {i} did not finish within "
                                   f"{self.timeout} s on rank {dist.get_rank(self.group)} on host "
                                   f"{socket.gethostname()}; a peer rank may have died "
                                   "or be stuck: restart the engines") from exc
            p.grad.copy_(flat.view_as(p.grad))
        self._pending.clear()
        for p in self._params:
            self._counts[id(p)] = 0

    def step(self, closure=None):
        t0 = time.perf_counter()
        self.synchronize()
        self.last_exposed_comm = time.perf_counter() - t0
        return self.optimizer.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def close(self) -> None:
        """Stop the communication thread."""
        self._executor.shutdown(wait=False)
