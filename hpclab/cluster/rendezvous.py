"""Where the ranks meet: rank, world size and master address from Slurm's or torchrun's environment.

A training script started by `srun` (one task per rank) or by `torchrun` (one per node,
which starts the ranks) finds everything it needs in its environment:

    rdv = rendezvous.from_env()          # torchrun's variables if set, else Slurm's
    ctx = rdv.init_process_group()       # torch.distributed joined -> DistContext
    ctx.log("hello")                     # [rank 3/4 n2] hello

    Slurm (srun)                  torchrun                meaning
    SLURM_PROCID                  RANK                    rank r, 0 .. p-1
    SLURM_NTASKS                  WORLD_SIZE              p, ranks in the job step
    SLURM_LOCALID                 LOCAL_RANK              index of the rank on its node
    SLURM_NODEID                  GROUP_RANK              index of the node
    SLURM_STEP_TASKS_PER_NODE     LOCAL_WORLD_SIZE        ranks per node ("2(x2)" = 2, 2)
    first host of                 MASTER_ADDR             where rank 0 listens
      SLURM_JOB_NODELIST
    (MASTER_PORT or 29500)        MASTER_PORT

SLURM_JOB_NODELIST is in Slurm's hostlist syntax, `n[1-2],gpu[08-10]`; `expand_hostlist`
expands it as `scontrol show hostnames` does (tests compare the two). Rank 0 runs on
the first host of the list, because srun numbers tasks node by node in that order. The
host's address is what DNS says, else the NodeAddr that Slurm has for it (`scontrol show
node`): on the virtual cluster the node names do not resolve.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from itertools import product

import torch
import torch.distributed as dist

from hpclab.cluster.context import DistContext
from hpclab.cluster.net import interface_of

DEFAULT_PORT = 29500          # torchrun's default MASTER_PORT

_GROUP = re.compile(r"\[([^\]]*)\]")


class RendezvousError(RuntimeError):
    """The environment does not say where the ranks meet; the message names the variable."""


def _expand_one(host: str) -> list[str]:
    """`gpu[08-10]c[1,3]` -> gpu08c1 gpu08c3 gpu09c1 ... (every bracket group multiplies)."""
    parts, choices, last = [], [], 0
    for m in _GROUP.finditer(host):
        parts.append(host[last:m.start()])
        values = []
        for item in m.group(1).split(","):
            lo, _, hi = item.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise ValueError(f"bad range {item!r} in hostlist {host!r}: "
                                 "expected N or N-M inside [...]")
            hi = hi or lo
            if int(hi) < int(lo):
                raise ValueError(f"range {item!r} in hostlist {host!r} runs backwards")
            # a leading zero fixes the width: n[08-10] -> n08 n09 n10
            values += [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
        choices.append(values)
        last = m.end()
    parts.append(host[last:])
    if "[" in parts[-1] or "]" in parts[-1]:
        raise ValueError(f"unbalanced brackets in hostlist {host!r}")
    names = []
    for combo in product(*choices):
        names.append("".join(p + c for p, c in zip(parts, combo)) + parts[-1])
    return names


def expand_hostlist(hostlist: str) -> list[str]:
    """Slurm's hostlist `n[1-3],login` -> ['n1', 'n2', 'n3', 'login'], in order.

    Commas inside brackets separate ranges, commas outside separate hosts.
    """
    hosts, depth, start = [], 0, 0
    for i, ch in enumerate(hostlist + ","):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            if hostlist[start:i]:
                hosts += _expand_one(hostlist[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced brackets in hostlist {hostlist!r}")
    return hosts


def tasks_per_node(spec: str) -> list[int]:
    """Slurm's SLURM_TASKS_PER_NODE `2(x3),1` -> [2, 2, 2, 1]."""
    counts = []
    for item in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not m:
            raise ValueError(f"cannot read tasks per node {spec!r}: expected e.g. '2(x2),1'")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts


def host_address(host: str) -> str:
    """The IPv4 address other nodes reach `host` on: DNS, else Slurm's NodeAddr."""
    try:
        return socket.gethostbyname(host)
    except OSError:
        pass
    try:
        out = subprocess.run(["scontrol", "show", "node", host, "-o"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    m = re.search(r"\bNodeAddr=(\S+)", out)
    if m:
        return m.group(1)
    raise RendezvousError(f"cannot find the address of host {host!r}: its name does not "
                          "resolve and `scontrol show node` does not know it; set MASTER_ADDR "
                          "to an address of the first node")


def _need(env: Mapping[str, str], name: str, launcher: str) -> int:
    value = env.get(name)
    if value is None:
        raise RendezvousError(f"{name} is not set: this is not a process started by {launcher} "
                              f"(run the script with `srun ...` inside an sbatch job, or with "
                              f"torchrun), or set {name} yourself")
    try:
        return int(value)
    except ValueError:
        raise RendezvousError(f"{name} must be an integer, got {value!r}") from None


@dataclass(frozen=True)
class Rendezvous:
    """Who this process is and where rank 0 listens."""

    rank: int
    world_size: int
    local_rank: int
    node: int
    ranks_per_node: int          # 0 when the nodes hold different numbers of ranks
    master_addr: str
    master_port: int
    launcher: str                # "slurm" or "torchrun"

    def env(self) -> dict[str, str]:
        """The variables torch.distributed's env:// reads (and torchrun sets)."""
        out = {"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size),
               "LOCAL_RANK": str(self.local_rank), "GROUP_RANK": str(self.node),
               "MASTER_ADDR": self.master_addr, "MASTER_PORT": str(self.master_port)}
        if self.ranks_per_node:
            out["LOCAL_WORLD_SIZE"] = str(self.ranks_per_node)
        return out

    def init_process_group(self, backend: str = "gloo", timeout: float = 60.0) -> DistContext:
        """Join torch.distributed (env://) and return this rank's DistContext.

        For gloo, GLOO_SOCKET_IFNAME (if unset) becomes the interface this node reaches
        the master on: gloo otherwise binds to whatever the hostname resolves to.
        """
        os.environ.update(self.env())
        if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ:
            ifname = _interface_towards(self.master_addr)
            if ifname:
                os.environ["GLOO_SOCKET_IFNAME"] = ifname
        device = torch.device("cpu")
        if backend == "nccl":
            # with --gpus-per-task=1 each task sees one GPU (CUDA_VISIBLE_DEVICES), cuda:0
            index = self.local_rank % torch.cuda.device_count()
            torch.cuda.set_device(index)
            device = torch.device(f"cuda:{index}")
        try:
            dist.init_process_group(backend, init_method="env://", rank=self.rank,
                                    world_size=self.world_size,
                                    timeout=timedelta(seconds=timeout))
        except Exception as exc:     # torch raises DistStoreError, RuntimeError, ...
            raise RendezvousError(
                f"rank {self.rank} on host {socket.gethostname()} could not join the group at "
                f"{self.master_addr}:{self.master_port} within {timeout:g} s ({exc}); check "
                "that every rank started, and that the port is free on the first node") from exc
        return DistContext(rank=self.rank, world_size=self.world_size,
                           local_rank=self.local_rank, device=device, backend=backend,
                           timeout=timeout, node=self.node, ranks_per_node=self.ranks_per_node)


def _interface_towards(addr: str) -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((addr, 9))      # no packet is sent: the kernel picks the route
            return interface_of(s.getsockname()[0])
    except OSError:
        return None


def from_slurm(environ: Mapping[str, str] | None = None) -> Rendezvous:
    """The rendezvous of a task started by `srun` (one task per rank)."""
    env = os.environ if environ is None else environ
    rank = _need(env, "SLURM_PROCID", "srun")
    world = _need(env, "SLURM_NTASKS", "srun")
    local = _need(env, "SLURM_LOCALID", "srun")
    node = _need(env, "SLURM_NODEID", "srun")
    # a step may use fewer nodes than its job: rank 0 is on the step's first node
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodelist:
        raise RendezvousError("SLURM_JOB_NODELIST is not set: run the script with srun inside "
                              "an sbatch or salloc job")
    per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or ""
    counts = tasks_per_node(per_node) if per_node else []
    master = env.get("MASTER_ADDR") or host_address(expand_hostlist(nodelist)[0])
    return Rendezvous(rank=rank, world_size=world, local_rank=local, node=node,
                      ranks_per_node=counts[0] if counts and len(set(counts)) == 1 else 0,
                      master_addr=master,
                      master_port=int(env.get("MASTER_PORT", DEFAULT_PORT)), launcher="slurm")


def from_torchrun(environ: Mapping[str, str] | None = None) -> Rendezvous:
    """The rendezvous of a rank started by torchrun (it sets every variable)."""
    env = os.environ if environ is None else environ
    values = {name: _need(env, name, "torchrun")
              for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    if not env.get("MASTER_ADDR"):
        raise RendezvousError("MASTER_ADDR is not set: this is not a process started by "
                              "torchrun, or set MASTER_ADDR yourself")
    return Rendezvous(rank=values["RANK"], world_size=values["WORLD_SIZE"],
                      local_rank=values["LOCAL_RANK"], node=int(env.get("GROUP_RANK", "0")),
                      ranks_per_node=int(env.get("LOCAL_WORLD_SIZE", "0")),
                      master_addr=env["MASTER_ADDR"], master_port=values["MASTER_PORT"],
                      launcher="torchrun")


def from_env(environ: Mapping[str, str] | None = None) -> Rendezvous:
    """torchrun's variables when RANK is set (torchrun under srun has both), else Slurm's."""
    env = os.environ if environ is None else environ
    if "RANK" in env:
        return from_torchrun(env)
    if "SLURM_PROCID" in env:
        return from_slurm(env)
    raise RendezvousError("neither RANK (torchrun) nor SLURM_PROCID (srun) is set: start the "
                          "script with `srun python -m ...` in an sbatch job, or with torchrun")
