"""Starting, attaching to and stopping ipyparallel clusters, always within a time limit.

Used by `connect()` and `Cluster`; a student rarely calls these directly.

    ipp_cluster, client = start_engines(LocalLauncher(), n=2, timeout=60)
    ...
    stop_owned(ipp_cluster, client, pids)   # engines, nannies, controller: none left behind

Engines are stopped the way ipyparallel stops them cleanly: a shutdown request, after which
the engine exits with status 0 and its nanny (the watcher process that reports an engine's
death) tells the controller. SIGTERM is not clean: an engine's SIGTERM handler stops its
event loop under a pending future, so every SIGTERMed engine prints a traceback ("Event loop
stopped before Future completed") and exits with status 1, and ipyparallel then logs its
whole output. An engine that does not follow the request within `_STOP_GRACE_S` (stuck in a
C++ collective) is killed with SIGKILL, which prints nothing; after that ipyparallel stops
the controller and removes the launchers' files, and we make sure every process noted while
the cluster was healthy is gone (an engine killed with SIGKILL leaves its nanny behind).
"""

from __future__ import annotations

import logging
import os
import time

import ipyparallel as ipp
import psutil
from ipyparallel.error import KernelError
from traitlets.config import Config

from hpclab.cluster import engine
from hpclab.cluster.errors import ClusterError, ClusterTimeout
from hpclab.cluster.security import ensure_private

# An engine follows a shutdown request in about a second; one that has not after
# _STOP_GRACE_S is stuck. The controller, stopped by ipyparallel with SIGTERM, gets as long.
_STOP_GRACE_S = 3.0
_KILL_WAIT_S = 1.0   # for the kernel to reap a SIGKILLed process

log = logging.getLogger("hpclab.cluster")


def _tree(pids) -> set[int]:
    """pids and all their descendants that exist now."""
    out = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out.add(pid)
            out.update(c.pid for c in proc.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return out


def _engine_processes(ipp_cluster) -> set[int]:
    """Local pids of the engines and their nannies."""
    return _tree([launcher.pid for engine_set in ipp_cluster.engines.values()
                  for launcher in getattr(engine_set, "launchers", {}).values()
                  if getattr(launcher, "pid", None)])


def cluster_processes(ipp_cluster) -> set[int]:
    """Local pids of the controller, the engines and their helpers (nannies, hub workers)."""
    ctrl = getattr(ipp_cluster.controller, "process", None)
    return (_tree([ctrl.pid]) if ctrl is not None else set()) | _engine_processes(ipp_cluster)


def _signal(pids: set[int], send) -> list[psutil.Process]:
    """`send(process)` (psutil's kill or terminate) to each pid still alive."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            send(proc)
            procs.append(proc)
        except psutil.NoSuchProcess:
            pass
    return procs


def _kill(pids: set[int]) -> None:
    """SIGKILL the pids still alive, and wait for them to be gone."""
    psutil.wait_procs(_signal(pids, psutil.Process.kill), timeout=_KILL_WAIT_S)


def _reap(pids: set[int], grace: float = _STOP_GRACE_S) -> None:
    """SIGTERM the pids still alive, SIGKILL those alive `grace` seconds later."""
    _, alive = psutil.wait_procs(_signal(pids, psutil.Process.terminate), timeout=grace)
    _kill({proc.pid for proc in alive})


def _shorten_grace(ipp_cluster) -> None:
    """ipyparallel waits 5 s per process between SIGTERM and SIGKILL; ours get _STOP_GRACE_S."""
    launchers = [ipp_cluster.controller] + [
        launcher for engine_set in ipp_cluster.engines.values()
        for launcher in [engine_set, *getattr(engine_set, "launchers", {}).values()]]
    for launcher in launchers:
        if hasattr(launcher, "stop_seconds_until_kill"):
            launcher.stop_seconds_until_kill = int(_STOP_GRACE_S)


def _new_ipp_cluster(launcher, n: int):
    kwargs = {"log_level": logging.WARNING, **launcher.cluster_kwargs(n)}
    config = kwargs.pop("config", None) or Config()
    # every engine imports torch in the background while it registers (engine.PRELOAD)
    config.EngineLauncher.engine_args = [f"--IPEngine.startup_command={engine.PRELOAD}"]
    return ipp.Cluster(n=n, config=config, **kwargs)


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
        stop_owned(ipp_cluster, client, set())
        raise


def _stop_engines(ipp_cluster, client) -> None:
    """Ask every live engine to shut down, and wait (at most _STOP_GRACE_S) until it has:
    local engines until their processes are gone (those left get SIGKILL), engines on
    other hosts until the controller has unregistered them (their launcher stops the
    rest)."""
    asked = set(client.ids) if client is not None else set()
    if asked:
        try:
            client.shutdown(targets=sorted(asked), block=False)
        except Exception as exc:  # noqa: BLE001 - a vanished engine: the SIGKILL below remains
            log.debug("shutdown request: %s", exc)
    procs = []
    for pid in _engine_processes(ipp_cluster):
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + (_STOP_GRACE_S if asked else 0.0)
    if procs:
        _, alive = psutil.wait_procs(procs, timeout=max(0.0, deadline - time.monotonic()))
        _kill({proc.pid for proc in alive})
    else:
        while asked & set(client.ids) and time.monotonic() < deadline:
            time.sleep(0.1)


def replace_engines(ipp_cluster, client, n: int, timeout: float, launcher,
                    known_pids: set[int]) -> list[int]:
    """Stop this cluster's engines (however broken), start n fresh ones; their engine ids.

    ipyparallel's restart_engines stops and starts the engine set (its launcher's
    clean-up, scancel for Slurm); the controller may list the old engines for a while
    (until their nannies or heartbeats tell it), so we wait for n engines that were not
    there before rather than for n engines.
    """
    t0 = time.monotonic()
    old_ids = set(client.ids)
    ctrl = getattr(ipp_cluster.controller, "process", None)
    leftovers = _tree(known_pids) - (_tree([ctrl.pid]) if ctrl is not None else set())
    _stop_engines(ipp_cluster, client)
    _kill(leftovers)                    # nannies of engines that were SIGKILLed earlier
    _shorten_grace(ipp_cluster)
    ipp_cluster.restart_engines_sync()
    deadline = t0 + timeout
    while len(new := set(client.ids) - old_ids) < n:
        if time.monotonic() > deadline:
            raise ClusterTimeout(
                f"only {len(new)} of {n} fresh engines registered within {timeout:g} s. "
                f"{launcher.diagnose(time.monotonic() - t0)}")
        time.sleep(0.05)
    return sorted(new)[:n]


def stop_owned(ipp_cluster, client, known_pids: set[int]) -> None:
    """Stop engines and controller we started, then make sure no process is left.

    `client`: connected to the cluster (None if it never connected); closed here.
    `known_pids`: the cluster's local processes noted while it was healthy
    (cluster_processes); empty for engines on other hosts, which the launcher stops.
    """
    pids = set(known_pids) | cluster_processes(ipp_cluster)
    try:
        _stop_engines(ipp_cluster, client)
        if client is not None:
            client.close()
        _shorten_grace(ipp_cluster)
        ipp_cluster.stop_cluster_sync()   # the controller, the launchers' files, scancel
    except Exception as exc:  # noqa: BLE001 - keep going: the reaping below prevents orphans
        log.warning("stopping the ipyparallel cluster failed: %s", exc)
    finally:
        _reap(pids | cluster_processes(ipp_cluster))


def attach_client(profile, cluster_id, connection_file, n, timeout: float):
    """(Client, engine ids) for a cluster someone else started; n engines, or all."""
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
    alive = [eid for eid in engine_ids if eid in set(client.ids)]
    if not alive:
        return
    ar = client[alive].apply_async(engine.leave_group)
    try:
        ar.get(timeout)
    except (KernelError, TimeoutError) as exc:   # busy or dead: stopped anyway, or not ours
        log.debug("leave_group: %s", exc)
