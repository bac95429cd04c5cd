"""`hpclab doctor`: is this machine (or cluster) ready for the course? One line per check.

    $ hpclab doctor                    # versions, GPUs, Slurm, network, ipyparallel, security,
                                       # and a 2-engine all-reduce on this machine
    $ hpclab doctor --engines slurm --partition gpu --time 5   # smoke test through Slurm
    $ hpclab doctor --fix              # also make connection files private (chmod 600)
    $ hpclab doctor --no-smoke         # skip the engines (a second instead of ~15)
    $ SLURM_CONF=/tmp/hpclab-vcluster/slurm.conf hpclab doctor --engines slurm
                                       # a virtual cluster (hpclab vcluster up): its nodes,
                                       # links and Slurm states, then engines on it

Each line is PASS, FAIL (with the fix on the next line) or ABSENT: an optional piece that is
simply not here (no GPU or Slurm on a laptop) is ABSENT, not a failure, so the exit status is
nonzero only when something that is configured is broken.

The security check uses hpclab.cluster.security (connection files readable by their owner
only), which connect() applies too.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hpclab.cluster import vcluster, vcluster_net
from hpclab.cluster.errors import ClusterError
from hpclab.cluster.net import interfaces, reachable_ip
from hpclab.cluster.security import default_profile_dir, ensure_private, key_files, secure_profile  # noqa: F401
from hpclab.cluster.slurm_diagnostics import explain_slurm_error, first_line, slurm_command

PASS, FAIL, ABSENT = "PASS", "FAIL", "ABSENT"


@dataclass
class Check:
    name: str
    status: str           # PASS | FAIL | ABSENT
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<6} {self.name:<16} {self.detail}"
        return text + (f"\n{'':23}fix: {self.fix}" if self.status == FAIL and self.fix else "")


# --- the checks -------------------------------------------------------------------------
def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", PASS if ok else FAIL, f"{platform.python_version()} ({sys.executable})",
                 "hpclab needs Python >= 3.10: create the venv with a newer python3")


def check_torch() -> Check:
    try:
        import torch
    except ImportError as exc:
        return Check("torch", FAIL, f"not importable: {exc}", "make setup (installs torch)")
    import torch.distributed as dist
    return Check("torch", PASS, f"{torch.__version__}, distributed: gloo="
                 f"{dist.is_gloo_available()} nccl={dist.is_nccl_available()}")


def check_cuda() -> Check:
    import torch
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return Check("cuda", PASS, f"CUDA {torch.version.cuda}, {len(names)} GPU(s): "
                     + ", ".join(sorted(set(names))))
    if shutil.which("nvidia-smi"):   # the hardware is here, torch cannot use it: broken
        return Check("cuda", FAIL, f"nvidia-smi exists but torch {torch.__version__} sees no "
                     "GPU", "install the CUDA build of torch (`make setup TORCH=torch`) or "
                     "check the driver with `nvidia-smi`")
    return Check("cuda", ABSENT, f"no GPU (torch {torch.__version__}); training runs on CPUs")


def check_nccl() -> Check:
    import torch
    if not torch.cuda.is_available():
        return Check("nccl", ABSENT, "no GPU, so no NCCL; gloo carries the collectives")
    try:
        version = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception as exc:  # noqa: BLE001 (any failure here means NCCL is unusable)
        return Check("nccl", FAIL, f"not usable: {exc}", "install a torch build with NCCL")
    return Check("nccl", PASS, f"NCCL {version}")


def check_slurm() -> Check:
    if shutil.which("sbatch") is None:
        return Check("slurm", ABSENT, "no sbatch on PATH (not a Slurm submit host)")
    try:
        ping = slurm_command(["scontrol", "ping"], timeout=20)
        if ping.returncode != 0 or " is UP" not in ping.stdout:
            raise ClusterError(explain_slurm_error("Unable to contact slurm controller: "
                                                   + first_line(ping)))
        parts = slurm_command(["sinfo", "-h", "-o", "%P %a %D %c %G"], timeout=20).stdout
    except ClusterError as exc:
        advice, _, said = str(exc).partition("\n(Slurm said: ")
        if "configuration source" in said or "Unable to process configuration" in said:
            return Check("slurm", ABSENT, "Slurm's commands are installed but not configured "
                         "(no /etc/slurm/slurm.conf, no SLURM_CONF)")
        return Check("slurm", FAIL, (said.rstrip(")") or advice)[:160], advice)
    summary = "; ".join(" ".join(line.split()[:1] + line.split()[2:]) for line in
                        parts.splitlines()[:4])
    return Check("slurm", PASS, f"slurmctld up; partitions (nodes cpus gres): {summary}")


def check_vcluster(state_dir: Path | str = vcluster.STATE_DIR) -> Check:
    """A virtual cluster (`hpclab vcluster up`) recorded here: its nodes, links, Slurm."""
    vc = vcluster.VCluster.load(state_dir)
    if vc is None:
        return Check("vcluster", ABSENT, f"no virtual cluster in {state_dir} "
                     "(`sudo hpclab vcluster up --nodes 2 --link 1gbit` makes one)")
    states = vc.node_states()
    present = set(vcluster_net.netns_list())
    nodes = ", ".join(f"{n['name']} {n['ip']} {states.get(n['name'], 'no answer')}"
                      for n in vc.nodes)
    rates = sorted({vcluster_net.link_rate(n["veth"]) or "unlimited" for n in vc.nodes})
    detail = f"{len(vc.nodes)} nodes ({nodes}), links {'/'.join(rates)}"
    gone = [n["netns"] for n in vc.nodes if n["netns"] not in present]
    sick = [n["name"] for n in vc.nodes
            if states.get(n["name"], "").rstrip("~#") not in ("idle", "mixed", "allocated")]
    if gone or sick:
        return Check("vcluster", FAIL, detail + (f"; namespaces gone: {', '.join(gone)}"
                                                 if gone else f"; not idle: {', '.join(sick)}"),
                     f"see {vc.state_dir}/log; restart it: sudo hpclab vcluster down && "
                     "sudo hpclab vcluster up")
    if os.environ.get("SLURM_CONF") != str(vc.conf):
        detail += f"; to use it: export SLURM_CONF={vc.conf}"
    return Check("vcluster", PASS, detail)


def check_network() -> Check:
    ifaces = interfaces()
    text = ", ".join(f"{n}={ip}" for n, ip in ifaces)
    if not any(not ip.startswith("127.") for _, ip in ifaces):
        return Check("network", ABSENT, f"loopback only ({text}): engines must run here")
    fast = [n for n, _ in ifaces if n.startswith("ib")]
    return Check("network", PASS, f"{text}; controller would listen on {reachable_ip()}"
                 + (f"; InfiniBand: {', '.join(fast)}" if fast else ""))


def check_ipyparallel(profile_dir: Path) -> Check:
    try:
        import ipyparallel
    except ImportError as exc:
        return Check("ipyparallel", FAIL, f"not importable: {exc}", "pip install ipyparallel")
    detail = f"{ipyparallel.__version__}, profile {profile_dir}"
    for name in ("ipcluster_config.py", "ipcontroller_config.py"):
        conf = profile_dir / name
        text = conf.read_text(errors="replace") if conf.exists() else ""
        if any(f"{k} = '{v}'" in text.replace('"', "'") for k in ("controller_ip", "ip")
               for v in ("*", "0.0.0.0")):
            return Check("ipyparallel", FAIL, detail + f": {conf} makes the controller listen "
                         "on every interface", "set c.Cluster.controller_ip to the address "
                         "of the cluster-internal network (see course/deploy/README.md)")
        if text:
            detail += f", {name} present"
    return Check("ipyparallel", PASS, detail)


def check_permissions(profile_dir: Path, fix: bool) -> Check:
    files = key_files(profile_dir)
    problems = secure_profile(profile_dir, fix=fix)
    if problems:
        return Check("permissions", FAIL, problems[0].split(":")[0] + f" ({len(problems)} "
                     "problem(s))", problems[0].split("; ", 1)[-1] + "; or `hpclab doctor --fix`")
    return Check("permissions", PASS, f"{len(files)} key file(s) under {profile_dir}/security "
                 "and the Jupyter runtime dir, all owner-only (0600)")


def _smoke(ctx):
    import torch
    import torch.distributed as dist
    t = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(t)
    return t.item()


def check_smoke(engines: str = "local", timeout: float = 120.0, **launcher_kwargs) -> Check:
    """2 engines through hpclab.connect, an all-reduce of 1 + 2 that must give 3 on both."""
    import hpclab
    t0 = time.perf_counter()
    try:
        with hpclab.connect(2, engines=engines, timeout=timeout, **launcher_kwargs) as cluster:
            sums, hosts = cluster.run(_smoke), cluster.hosts
    except Exception as exc:  # noqa: BLE001 (every failure is the finding to report)
        text = str(exc).strip()
        return Check("smoke test", FAIL, f"{type(exc).__name__}: {text.splitlines()[0][:160]}",
                     "\n".join(text.splitlines()[1:4]) or "run hpclab.connect(2) in Python "
                     "to see the whole error")
    if sums != [3.0, 3.0]:
        return Check("smoke test", FAIL, f"all-reduce of [1, 2] gave {sums}, expected [3, 3]",
                     "the process group is broken: check GLOO_SOCKET_IFNAME / firewalls")
    return Check("smoke test", PASS, f"2 {engines} engines on {', '.join(sorted(set(hosts)))}: "
                 f"all-reduce 1+2=3 on both, {time.perf_counter() - t0:.1f} s")


def run_checks(args) -> list[Check]:
    profile_dir = Path(args.profile_dir) if args.profile_dir else default_profile_dir()
    checks = [check_python(), check_torch(), check_cuda(), check_nccl(), check_slurm(),
              check_vcluster(getattr(args, "vcluster_dir", vcluster.STATE_DIR)), check_network(), check_ipyparallel(profile_dir),
              check_permissions(profile_dir, args.fix)]
    if not args.no_smoke:
        kw = {k: v for k, v in (("partition", args.partition), ("time", args.time)) if v}
        checks.append(check_smoke(args.engines, args.timeout, **kw))
    return checks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hpclab doctor", description=__doc__.split("\n")[0])
    p.add_argument("--no-smoke", action="store_true", help="skip the 2-engine all-reduce")
    p.add_argument("--engines", default="local", choices=["local", "slurm", "mpi"])
    p.add_argument("--partition", default="", help="Slurm partition for --engines slurm")
    p.add_argument("--time", default="", help="Slurm walltime for --engines slurm")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for engines to start")
    p.add_argument("--profile-dir", default="", help="ipyparallel profile (default: default)")
    p.add_argument("--fix", action="store_true", help="chmod 600 our connection files")
    p.add_argument("--vcluster-dir", default=str(vcluster.STATE_DIR),
                   help="state directory of a virtual cluster (hpclab vcluster up)")
    args = p.parse_args(argv)
    checks = run_checks(args)
    for c in checks:
        print(c.line(), flush=True)
    failed = [c.name for c in checks if c.status == FAIL]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} fine"
          + (f"; broken: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
