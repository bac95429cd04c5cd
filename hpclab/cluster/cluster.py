"""Connect a notebook to a cluster: `hpclab.connect(n)` -> `Cluster`.

    import hpclab
    with hpclab.connect(n=4) as cluster:          # 4 engines on this machine
        print(cluster.info())                     # ranks, hosts, pids, devices, memory
        cluster.run(lambda ctx: ctx.rank)         # fn(ctx, ...) on every rank -> [0, 1, 2, 3]

    hpclab.connect(n=8, engines="slurm", partition="gpu")     # engines in a Slurm job
    hpclab.connect(profile="default", cluster_id="abc")       # attach to a running cluster
    hpclab.connect(connection_file="ipcontroller-client.json")

On connect every engine gets a rank (ordered by host, then engine id), the world size p,
a local rank (its index on its host), a node index and the ranks per node, and a device (`cuda:<local_rank>` when the host has
GPUs, else cpu), and joins a torch.distributed group (NCCL on GPUs, gloo on CPUs) whose
rendezvous is rank 0's outward IP and a port rank 0 binds itself (a TCPStore on port 0). Every wait is bounded by
`timeout` seconds (engine registration, each `run`, and each collective inside it); a dead
or silent rank raises `RankError` naming it. Closing stops the engines and controller this
call started; an attached cluster is left running, only its process group is destroyed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

from ipyparallel import Reference, serialize

from hpclab.cluster import engine
from hpclab.cluster.errors import ClusterError, RankError
from hpclab.cluster.handle import RESTART_HINT, RankMeta, RunHandle
from hpclab.cluster.info import ClusterInfo, gather_info
from hpclab.cluster.launchers import EngineLauncher, get_launcher
from hpclab.cluster.lifecycle import (
    attach_client,
    cluster_processes,
    leave_groups,
    replace_engines,
    start_engines,
    stop_owned,
)

BACKENDS = ("gloo", "nccl")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of engines) must be an int >= 1, got {n!r}")
    return n


def connect(n: int | None = None, engines: str | EngineLauncher = "local", *,
            profile: str | None = None, cluster_id: str | None = None,
            connection_file: str | None = None, timeout: float = 60.0,
            backend: str | None = None, **launcher_kwargs) -> Cluster:
    """Start n engines (default $HPCLAB_ENGINES or 2), or attach to a running cluster."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None (automatic), "
                         f"got {backend!r}")
    attach = any(v is not None for v in (profile, cluster_id, connection_file))
    if attach:
        if launcher_kwargs or engines != "local":
            raise ValueError("attaching (profile=/cluster_id=/connection_file=) uses the "
                             "engines already running: drop engines= and launcher options "
                             f"{sorted(launcher_kwargs)}")
        n = None if n is None else _check_n(n)
        client, ids = attach_client(profile, cluster_id, connection_file, n, timeout)
        return Cluster(client, None, None, engine_ids=ids, timeout=timeout, backend=backend)
    n = _check_n(int(os.environ.get("HPCLAB_ENGINES", "2")) if n is None else n)
    launcher = get_launcher(engines, **launcher_kwargs)
    launcher.preflight(n)
    ipp_cluster, client = start_engines(launcher, n, timeout)
    return Cluster(client, ipp_cluster, launcher, timeout=timeout, backend=backend)


class Cluster:
    """A client connected to p engines that share one torch.distributed process group.

    Use `connect()` to make one. `timeout` (seconds) bounds every call; change
    `cluster.timeout` for a longer default, or pass `timeout=` to `run`.
    """

    def __init__(self, client, ipp_cluster, launcher: EngineLauncher | None, *,
                 engine_ids: list[int] | None = None, timeout: float = 60.0,
                 backend: str | None = None):
        self._client = client
        self._engine_ids = engine_ids      # the engines to use; None = all registered
        self._ipp_cluster = ipp_cluster          # None when attached: not ours to stop
        self._launcher = launcher
        self.timeout = float(timeout)
        self._backend_request = backend
        self._closed = False
        self._handles: list[RunHandle] = []
        self.backend = "gloo"
        self.ranks: list[RankMeta] = []
        self.facts: list[dict] = []
        self._pids: set[int] = set()       # local processes to reap on close (owned only)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    # -- set-up ---------------------------------------------------------------------
    def _call(self, metas: list[RankMeta], f: Callable, *args) -> list:
        """f(*args) on the engines of `metas` (in that order), one result each, bounded."""
        ar = self._client[[m.engine_id for m in metas]].apply_async(f, *args)
        return RunHandle(self._client, ar, metas, self.timeout, f.__name__, echo=False).get()

    def _setup(self) -> None:
        """Describe the engines, order them into ranks, join one process group."""
        ids = sorted(self._engine_ids or self._client.ids)
        if self.owns_engines and not self._launcher.remote:
            self._pids = cluster_processes(self._ipp_cluster)
        # cloudpickle ships a notebook function with the modules it uses (torch, dist ...);
        # describe() switches the engines to it too.
        serialize.use_cloudpickle()
        # before ranks exist an error can only name the engine
        facts = self._call([RankMeta(i, eid, f"? (engine {eid})", -1)
                            for i, eid in enumerate(ids)], engine.describe)
        order = sorted(range(len(ids)), key=lambda i: (facts[i]["host"], ids[i]))
        self.facts = [facts[i] for i in order]
        per_host: dict[str, int] = {}
        self.ranks = []
        for rank, f in enumerate(self.facts):
            f["local_rank"] = per_host.get(f["host"], 0)
            per_host[f["host"]] = f["local_rank"] + 1
            self.ranks.append(RankMeta(rank, ids[order[rank]], f["host"], f["pid"]))
        self.backend = self._choose_backend(per_host)
        for f in self.facts:
            f["device"] = f"cuda:{f['local_rank']}" if self.backend == "nccl" else "cpu"
        p, addr = len(self.ranks), self.facts[0]["ip"]
        port = self._call(self.ranks[:1], engine.open_store, addr, p, self.timeout)[0]
        remote = bool(self._launcher is None or self._launcher.remote or len(per_host) > 1)
        node_of = {h: i for i, h in enumerate(sorted(per_host))}
        # ranks_per_node only when every node has the same number (else 0: not uniform)
        k = next(iter(per_host.values())) if len(set(per_host.values())) == 1 else 0
        for f in self.facts:
            f["node"] = node_of[f["host"]]
        plan = {m.engine_id: (m.rank, self.facts[m.rank]["local_rank"],
                              max(1, (self.facts[m.rank]["cpus"] or 1) // per_host[m.host]),
                              node_of[m.host], k)
                for m in self.ranks}
        self._call(self.ranks, engine.join_group, plan, p, addr, port, self.backend,
                   self.timeout, remote)
        self.rendezvous = f"tcp://{addr}:{port}"

    def _choose_backend(self, per_host: dict[str, int]) -> str:
        gpus = {f["host"]: len(f["gpus"]) for f in self.facts}
        backend = self._backend_request or ("nccl" if all(gpus.values()) else "gloo")
        if backend == "nccl":
            short = {h: (k, gpus[h]) for h, k in per_host.items() if k > gpus[h]}
            if short:
                h, (k, g) = next(iter(short.items()))
                raise ClusterError(f"backend 'nccl' needs one GPU per engine, but host {h} "
                                   f"has {k} engines and {g} GPUs: ask for fewer engines "
                                   "per node, or backend='gloo'")
        return backend

    # -- the SPMD call -------------------------------------------------------------
    def run_async(self, fn: Callable[..., Any], *args, timeout: float | None = None,
                  **kwargs) -> RunHandle:
        """Start fn(ctx, *args, **kwargs) on every rank; returns at once with a handle."""
        self._check_open()
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        name = getattr(fn, "__name__", "fn")
        alive = set(self._client.ids)
        for m in self.ranks:   # the controller has unregistered its engine: it is gone
            if m.engine_id not in alive:
                raise RankError(f"{name}: rank {m.rank} (pid {m.pid} on host {m.host}) died "
                                f"(its engine left the controller). {RESTART_HINT}",
                                rank=m.rank, host=m.host, pid=m.pid)
        ar = self._client[self.engine_ids].apply_async(
            engine.call, fn, Reference(engine.CTX_NAME), args, kwargs)
        handle = RunHandle(self._client, ar, self.ranks,
                           self.timeout if timeout is None else timeout,
                           name)
        self._handles = [h for h in self._handles if not h.ready()] + [handle]
        return handle

    def run(self, fn: Callable[..., Any], *args, timeout: float | None = None,
            **kwargs) -> list:
        """fn(ctx, *args, **kwargs) on every rank; the results ordered by rank."""
        return self.run_async(fn, *args, timeout=timeout, **kwargs).get()

    # -- looking at it -------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return len(self.ranks)

    @property
    def hosts(self) -> list[str]:
        return [m.host for m in self.ranks]

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.ranks]

    @property
    def engine_ids(self) -> list[int]:
        return [m.engine_id for m in self.ranks]

    @property
    def owns_engines(self) -> bool:
        """True when this object started the engines (and close() stops them)."""
        return self._ipp_cluster is not None

    def info(self, timeout: float = 5.0) -> ClusterInfo:
        """Table of ranks: host, pid, device, CPUs, memory, GPUs, torch, status."""
        self._check_open()
        return gather_info(self._client, self.ranks, self.facts, timeout)

    # -- life cycle ----------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClusterError("this cluster is closed: connect again with hpclab.connect()")

    def restart(self) -> Cluster:
        """Fresh engines (when this object started them) and a fresh process group.

        For an attached cluster the engines are not ours to replace: the process group is
        rebuilt on the engines that are alive; dead ones must be restarted by whoever
        started them (ipcluster, your job script), then connect again.
        """
        self._check_open()
        n = self.world_size
        for h in self._handles:
            h.abort()
        if self.owns_engines:
            self._engine_ids = replace_engines(self._ipp_cluster, self._client, n,
                                               self.timeout, self._launcher, self._pids)
        else:
            leave_groups(self._client, self.engine_ids, timeout=5.0)
            alive = set(self._client.ids)
            dead = [m for m in self.ranks if m.engine_id not in alive]
            if dead:
                m = dead[0]
                raise RankError(f"rank {m.rank} (pid {m.pid} on host {m.host}) is dead and this "
                                "cluster was attached, not started, by hpclab: restart its "
                                "engines (ipcluster / job script), then hpclab.connect() again",
                                rank=m.rank, host=m.host, pid=m.pid)
        self.ranks, self._handles = [], []
        self._setup()
        return self

    def close(self) -> None:
        """Destroy the process groups; stop engines and controller if this call made them.

        The order matters: every engine leaves its process group first (gloo closes its
        connections while all peers are alive), then the engines are asked to shut down
        (lifecycle.stop_owned), so nothing prints a traceback on the way out.
        """
        if self._closed:
            return
        self._closed = True
        busy = any(not h.ready() for h in self._handles)
        for h in self._handles:
            h.abort()
        try:
            # Engines we stop lose their group anyway; busy ones would only delay us.
            if not (self.owns_engines and busy):
                leave_groups(self._client, self.engine_ids, timeout=2.0 if busy else 5.0)
        finally:
            if self.owns_engines:
                stop_owned(self._ipp_cluster, self._client, self._pids)
            else:
                self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.backend}, {self.world_size} ranks"
        hosts = sorted(set(self.hosts)) or ["?"]
        where = "started here" if self.owns_engines else "attached"
        return f"<hpclab Cluster {state} on {', '.join(hosts)} ({where})>"
