"""Starting, attaching to and stopping ipyparallel clusters, always within a time limit.

Used by `connect()` and `Cluster`; a student rarely calls these directly.

    ipp_cluster, client = start_engines(LocalLauncher(), n=2, timeout=60)
    ...
    stop_owned(ipp_cluster)          # engines, nannies, controller: none left behind

Why the process bookkeeping: ipyparallel stops what it started, but an engine killed with
SIGKILL leaves its *nanny* (the watcher process that reports the death) re-parented, and an
engine stuck in a C++ collective ignores SIGTERM. So we note every process of the cluster
while it is healthy and make sure each one is gone after stopping.
"""

from __future__ import annotations

import logging
import os
import time

from hpclab.cluster.errors import ClusterError, ClusterTimeout
from hpclab.cluster.security import ensure_private

# An engine takes seconds to exit on SIGTERM (its nanny lingers longer still), and
# ipyparallel waits 5 s per engine before SIGKILL. Our engines hold nothing worth saving
# once their process group is destroyed, so they get 1 s.
_STOP_GRACE_S = 1.0


def _shorten_grace(ipp_cluster) -> None:
    ipp_cluster.log.setLevel(logging.ERROR)   # "did not exit after TERM" is expected here
    for engine_set in ipp_cluster.engines.values():
        for launcher in getattr(engine_set, "launchers", {}).values():
            if hasattr(launcher, "stop_seconds_until_kill"):
                launcher.stop_seconds_until_kill = int(_STOP_GRACE_S)


def _tree(pids) -> set[int]:
    """pids and all their descendants that exist now."""
    import psutil
    out = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out.add(pid)
            out.update(c.pid for c in proc.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return out


def cluster_processes(ipp_cluster) -> set[int]:
    """Local pids of the controller, the engines and their helpers (nannies, hub workers)."""
    roots = []
    ctrl = getattr(ipp_cluster.controller, "process", None)
    if ctrl is not None:
        roots.append(ctrl.pid)
    for engine_set in ipp_cluster.engines.values():
        for launcher in getattr(engine_set, "launchers", {}).values():
            if getattr(launcher, "pid", None):
                roots.append(launcher.pid)
    return _tree(roots)


def _reap(pids: set[int], grace: float = _STOP_GRACE_S) -> None:
    """SIGTERM the pids still alive, SIGKILL those alive `grace` seconds later."""
    import psutil
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


def _new_ipp_cluster(launcher, n: int):
    import ipyparallel as ipp
    kwargs = {"log_level": logging.WARNING, **launcher.cluster_kwargs(n)}
    return ipp.Cluster(n=n, **kwargs)


def _wait_for(client, n: int, timeout: float, launcher, t0: float) -> None:
    try:
        client.wait_for_engines(n, timeout=timeout, interactive=False)
    except TimeoutError:
        waited = time.monotonic() - t0
        raise ClusterTimeout(
            f"only {len(client.ids)} of {n} engines registered within {timeout:g} s. "
            f"{launcher.diagnose(waited)}") from None


def start_engines(launcher, n: int, timeout: float):
    """Start a controller and n engines with `launcher`; (ipp.Cluster, Client) or an error.

    Anything started is stopped again if the engines do not all register in time.
    """
    t0 = time.monotonic()
    ipp_cluster = _new_ipp_cluster(launcher, n)
    client = None
    try:
        ipp_cluster.start_controller_sync()
        ipp_cluster.start_engines_sync(n)
        client = ipp_cluster.connect_client_sync()
        _wait_for(client, n, timeout, launcher, t0)
        # From here on a dead engine is reported by hpclab as a RankError; ipyparallel would
        # also dump the engine's whole log into the notebook.
        ipp_cluster.log.setLevel(logging.ERROR)
        return ipp_cluster, client
    except BaseException:
        if client is not None:
            client.close()
        stop_owned(ipp_cluster, set())
        raise


def replace_engines(ipp_cluster, client, n: int, timeout: float, launcher,
                    known_pids: set[int]) -> list[int]:
    """Stop this cluster's engines (however broken), start n fresh ones; their engine ids.

    The controller may list the old engines for a while (until their heartbeats time out),
    so we wait for n engines that were not there before rather than for n engines.
    """
    t0 = time.monotonic()
    old_ids = set(client.ids)
    engine_pids = _tree(known_pids)
    ctrl = getattr(ipp_cluster.controller, "process", None)
    engine_pids -= _tree([ctrl.pid]) if ctrl is not None else set()
    _shorten_grace(ipp_cluster)
    try:
        _reap(engine_pids)
        ipp_cluster.stop_engines_sync()
    finally:
        _reap(engine_pids)
    ipp_cluster.start_engines_sync(n)
    deadline = t0 + timeout
    while len(new := set(client.ids) - old_ids) < n:
        if time.monotonic() > deadline:
            raise ClusterTimeout(
                f"only {len(new)} of {n} fresh engines registered within {timeout:g} s. "
                f"{launcher.diagnose(time.monotonic() - t0)}")
        time.sleep(0.05)
    return sorted(new)[:n]


def stop_owned(ipp_cluster, known_pids: set[int]) -> None:
    """Stop engines and controller we started, then make sure no process is left.

    `known_pids`: the cluster's local processes noted while it was healthy
    (cluster_processes); empty for engines on other hosts, which the launcher stops.
    """
    pids = set(known_pids) | cluster_processes(ipp_cluster)
    _shorten_grace(ipp_cluster)
    try:
        _reap(pids)                  # all at once: 1 s in total rather than 1 s per engine
        ipp_cluster.stop_cluster_sync()   # then the launchers' own clean-up (files, scancel)
    except Exception as exc:  # noqa: BLE001 - keep going: the reaping below prevents orphans
        logging.getLogger("hpclab").warning("ipyparallel stop_cluster failed: %s", exc)
    finally:
        _reap(pids | cluster_processes(ipp_cluster))


def attach_client(profile, cluster_id, connection_file, n, timeout: float):
    """(Client, engine ids) for a cluster someone else started; n engines, or all."""
    import ipyparallel as ipp
    try:
        if connection_file is not None:
            connection_file = os.path.expanduser(str(connection_file))
            if not os.path.isfile(connection_file):   # ipyparallel would wait for it to appear
                raise FileNotFoundError(f"no connection file {connection_file}")
            ensure_private(connection_file)   # its key runs code on every engine
            client = ipp.Client(str(connection_file), timeout=timeout)
        else:
            client = ipp.Client(profile=profile or "default", cluster_id=cluster_id or "",
                                timeout=timeout)
    except (OSError, TimeoutError) as exc:
        where = connection_file or f"profile={profile or 'default'!r}, cluster_id={cluster_id!r}"
        reason = str(exc).strip().rstrip(".")
        raise ClusterError(f"could not attach to the cluster at {where}: {reason}. Is it running "
                           "(`ipcluster list`)? Start it with `ipcluster start -n 4`, or use "
                           "hpclab.connect(n=4) to start engines here") from exc
    try:
        need = n or 1
        try:
            client.wait_for_engines(need, timeout=timeout, interactive=False)
        except TimeoutError:
            raise ClusterTimeout(f"the cluster answered but only {len(client.ids)} of "
                                 f"{need} engines registered within {timeout:g} s; start more "
                                 "engines (ipcluster engines -n ...) or ask for fewer") from None
        ids = sorted(client.ids)
        return client, (ids if n is None else ids[:n])
    except BaseException:
        client.close()
        raise


def leave_groups(client, engine_ids, timeout: float) -> None:
    """Destroy the process group on each live engine; never blocks past `timeout`."""
    from ipyparallel.error import KernelError

    from hpclab.cluster import engine
    alive = set(client.ids)
    ars = [client[eid].apply_async(engine.leave_group) for eid in engine_ids if eid in alive]
    deadline = time.monotonic() + timeout
    for ar in ars:
        try:
            ar.get(max(0.0, deadline - time.monotonic()))
        except (KernelError, TimeoutError) as exc:   # busy or dead: stopped anyway, or not ours
            logging.getLogger("hpclab.cluster").debug("leave_group: %s", exc)
