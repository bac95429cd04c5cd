"""Checks that the exercises' hidden tests use to see *how* a solution works.

Where the gradient is the exercise (B1: ∇J = 1/n Xᵀ(Xθ − y) written out), a submission
that asks autograd for it computes the right numbers and must still lose the points:

    from hpclab.exercise_checks import autograd_used
    with autograd_used() as used:
        g = mse_gradient(X, y, theta)
    assert not used, f"mse_gradient used autograd: {used}"

`used` lists what ran, e.g. ["backward pass"]. Reverse mode in every spelling
(`loss.backward()`, `torch.autograd.grad`, `torch.func.grad`, `torch.autograd.functional`)
goes through the autograd engine's `run_backward`, which is counted; forward mode
(`torch.func.jacfwd`, `torch.autograd.forward_ad`) makes dual tensors, which a
TorchFunctionMode sees.

Where a file must be written atomically (D4's checkpoint), `file_operations` logs what a
save does to files and `atomic_write_problems` says what in that log is not atomic (see
the end of this file).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from torch.autograd.variable import Variable
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from hpclab.cluster.spawn import run_local


class _CountingEngine:
    """Stands in for torch's autograd engine and counts the backward passes it runs."""

    def __init__(self, engine):
        self.engine, self.calls = engine, 0

    def run_backward(self, *args, **kwargs):
        self.calls += 1
        return self.engine.run_backward(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.engine, name)


class _DualTensorSpy(TorchFunctionMode):
    """Notes when forward-mode AD makes a dual tensor."""

    def __init__(self):
        super().__init__()
        self.duals = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "_make_dual":
            self.duals += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def autograd_used():
    """Yield a list that, on exit, names the automatic differentiation that ran inside."""
    used: list[str] = []
    engine = Variable._execution_engine
    counting = _CountingEngine(engine)
    Variable._execution_engine = counting
    try:
        with _DualTensorSpy() as spy:
            yield used
    finally:
        Variable._execution_engine = engine
        if counting.calls:
            used.append(f"{counting.calls} backward pass(es) (backward, autograd.grad, torch.func.grad)")
        if spy.duals:
            used.append("forward-mode AD (torch.func.jacfwd, forward_ad)")


# -- which collectives ran ---------------------------------------------------------------
# Where the collectives are the exercise (D5: the ZeRO-1 step is a reduce-scatter and an
# all-gather, not an all-reduce), the trace of hpclab.comm's messages says which ran, and
# `collectives_used` (below) catches a detour through torch.distributed, which leaves no
# trace: hpclab.comm's own collectives reach torch only as point-to-point sends.
#
#     with tracing() as trace, collectives_used() as ops:
#         zero1_step(...)
#     sent_by_collective(trace.messages, rank)   # {"reduce_scatter": 132, "all_gather": 132}
#     assert not [op for op in ops if op not in POINT_TO_POINT], ops   # e.g. ["allreduce_"]


def sent_by_collective(messages, rank: int) -> dict[str, int]:
    """Bytes that `rank` sent, per collective, in hpclab.comm trace `messages`."""
    out: dict[str, int] = {}
    for m in messages:
        if m.src == rank:
            out[m.collective] = out.get(m.collective, 0) + m.nbytes
    return out

# Where a save must be atomic (D4: write a temporary file beside the target, fsync,
# os.replace), the grader watches the save's file operations:
#
#     from hpclab.exercise_checks import atomic_write_problems, file_operations
#     log = file_operations(save_checkpoint, path, model, optimizer, 3)
#     problems = atomic_write_problems(log, path)
#     assert not problems, "; ".join(problems)
#
# Python's audit hooks (PEP 578) report every `open` (path, mode), `os.rename` and
# `os.replace` (src, dst) and shutil copy; a profile hook sees calls of os.fsync and
# os.fdatasync. They observe and replace nothing. An audit hook cannot be removed, so the
# function runs in a forked process (run_local with one rank) and only the log comes back.

_AUDITED = ("open", "os.rename", "shutil.copyfile", "shutil.move")


def _plain(a):
    return os.fsdecode(a) if isinstance(a, (str, bytes, os.PathLike)) else a


def _traced(ctx, fn, args, kwargs):
    log: list[tuple] = []

    def audit(event, hook_args):
        if event in _AUDITED:
            log.append((event, *[_plain(a) for a in hook_args[:2]]))

    def profile(frame, event, arg):
        if event == "c_call" and arg in (os.fsync, os.fdatasync):
            log.append(("fsync",))

    sys.addaudithook(audit)
    sys.setprofile(profile)
    try:
        fn(*args, **kwargs)
    finally:
        sys.setprofile(None)
    return log


def file_operations(fn: Callable, *args, timeout: float = 60.0, **kwargs) -> list[tuple]:
    """The file operations of fn(*args, **kwargs), in order, run in a forked process:
    ("open", path, mode), ("os.rename", src, dst) (also os.replace, Path.replace),
    ("shutil.copyfile", src, dst), ("fsync",). fn's side effects on files stay."""
    [log] = run_local(_traced, 1, fn, args, kwargs, timeout=timeout)
    return log


def atomic_write_problems(log: list[tuple], target: str | os.PathLike) -> list[str]:
    """What in a `file_operations` log keeps the write of `target` from being atomic:
    empty when a temporary file in target's folder was fsynced and renamed onto it."""
    target = os.path.realpath(target)
    problems = []
    opened = [e for e in log if e[0] == "open" and isinstance(e[1], str)
              and os.path.realpath(e[1]) == target and isinstance(e[2], str)
              and set(e[2]) & set("wax+")]
    if opened:
        problems.append(f"{target} itself was opened for writing ({opened[0]}): a crash "
                        "mid-write leaves it truncated; write a temporary file instead")
    renames = [i for i, e in enumerate(log) if e[0] == "os.rename"
               and os.path.realpath(e[2]) == target]
    if not renames:
        problems.append(f"nothing was renamed onto {target}: finish with os.replace(tmp, "
                        "target), the step readers see all at once")
        return problems
    src = log[renames[-1]][1]
    if os.path.dirname(os.path.realpath(src)) != os.path.dirname(target):
        problems.append(f"the temporary file {src} is not in {os.path.dirname(target)}: "
                        "a rename is atomic only within one file system, so keep it beside "
                        "the target")
    if not any(e[0] == "fsync" for e in log[:renames[-1]]):
        problems.append("no os.fsync before os.replace: the rename can reach the disk "
                        "before the data, leaving an empty file after a power loss")
    return problems

# --- Which torch.distributed operations ran (exercises C1, D1) --------------------------
#
#     from hpclab.exercise_checks import collectives_used
#     with collectives_used() as ops:
#         all_reduce_bucket(ctx, grads)
#     assert ops.count("allreduce_") == 1, ops
#
# Every torch.distributed call, however it was imported (`dist.all_reduce`,
# `from torch.distributed import all_reduce`, a process group's own method), reaches the
# dispatcher as an operator of the c10d namespace (allreduce_, broadcast_, send, recv_,
# ...), where a TorchDispatchMode sees it; replacing `dist.all_reduce` by a counting
# wrapper would miss a name bound before the wrapper was installed.


class _CollectiveSpy(TorchDispatchMode):
    """Records the c10d operators (torch.distributed's calls) that run inside it."""

    def __init__(self, ops: list[str]):
        super().__init__()
        self.ops = ops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "c10d":
            self.ops.append(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


# the c10d operators of torch.distributed's send/recv/isend/irecv, which hpclab.comm uses
POINT_TO_POINT = ("send", "recv_", "recv_any_source_")


@contextmanager
def collectives_used():
    """Yield a list that names, in order, the torch.distributed operators run inside:
    "allreduce_", "broadcast_", "allgather_", "reduce_scatter_", "send", "recv_", ..."""
    ops: list[str] = []
    with _CollectiveSpy(ops):
        yield ops


# --- Slurm batch scripts (exercise A1) --------------------------------------------------
#
#     options = sbatch_options(Path("a1_job.sh").read_text())    # {"ntasks": "2", ...}
#     require_slurm()                      # AssertionError saying why, when there is none
#     sbatch_test_only(Path("a1_job.sh"))  # AssertionError with Slurm's own words
#     job = run_batch_job(Path("a1_job.sh"), timeout=120)   # job.state, job.output, ...
#
# The grader finds Slurm as every Slurm client does: `sbatch` on PATH and the controller
# named by SLURM_CONF (default /etc/slurm/slurm.conf). The course's test Slurm is started
# by `.ci/slurm/start`, which prints the SLURM_CONF to export.

_SHORT_OPTIONS = {"n": "ntasks", "t": "time", "o": "output", "e": "error", "J": "job-name",
                  "N": "nodes", "c": "cpus-per-task", "p": "partition", "A": "account",
                  "G": "gpus", "q": "qos", "D": "chdir"}
_FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
             "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def sbatch_options(script: str) -> dict[str, str]:
    """The `#SBATCH` options of a batch script as sbatch reads them: {long name: value}.

    Like sbatch, reads only the comment lines before the first command (an `#SBATCH`
    line after it is an ordinary comment), several options per line, `--name=value`,
    `--name value`, `-n 2` and `-n2`; a flag without a value maps to "".
    """
    options: dict[str, str] = {}
    for line in script.splitlines()[1:] if script.startswith("#!") else script.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("#"):
            break                                  # the first command: sbatch stops here
        if not line.startswith("#SBATCH"):
            continue
        words = shlex.split(line[len("#SBATCH"):], comments=True)
        i = 0
        while i < len(words):
            word = words[i]
            if word.startswith("--"):
                name, eq, value = word[2:].partition("=")
                if not eq and i + 1 < len(words) and not words[i + 1].startswith("-"):
                    value, i = words[i + 1], i + 1
            elif word.startswith("-") and len(word) >= 2:
                name, value = _SHORT_OPTIONS.get(word[1], word[1]), word[2:]
                if not value and i + 1 < len(words) and not words[i + 1].startswith("-"):
                    value, i = words[i + 1], i + 1
            else:
                raise ValueError(f"cannot read #SBATCH line {line!r}: {word!r} is not an "
                                 "option (options start with - or --)")
            options[name] = value
            i += 1
    return options


def slurm_missing() -> str | None:
    """None when a Slurm controller answers this machine's clients; else why not, in words."""
    path = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
    conf = path if "SLURM_CONF" in os.environ else f"{path} (the default; SLURM_CONF unset)"
    if shutil.which("sbatch") is None:
        return ("`sbatch` is not on PATH: this machine is no Slurm submit host. Run the "
                "notebook on a cluster's login node, or start the course's test Slurm with "
                "`.ci/slurm/start` (root) and export the SLURM_CONF it prints")
    if not os.path.isfile(path):   # Slurm's clients would retry reading it for a minute
        return (f"there is no Slurm configuration at {conf}; export SLURM_CONF=<the "
                "slurm.conf of a running Slurm> (`.ci/slurm/start` prints it)")
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True,
                              timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`scontrol ping` failed ({exc}) with SLURM_CONF={conf}"
    if "is UP" not in ping.stdout:
        said = (ping.stdout + ping.stderr).strip().splitlines()
        return (f"no Slurm controller answers with SLURM_CONF={conf} (scontrol ping: "
                f"{said[0] if said else f'exit code {ping.returncode}'}); start the test "
                "Slurm with `.ci/slurm/start` and export the SLURM_CONF it prints")
    return None


def require_slurm() -> None:
    """Raise AssertionError, saying why and what to do, when there is no Slurm to grade with:
    a job script that was never submitted earns no points, it is not passed unchecked."""
    why = slurm_missing()
    if why is not None:
        raise AssertionError(f"no Slurm to check the job script with: {why}. The script was "
                             "NOT submitted, so this test gives no points.")


def sbatch_test_only(path: Path) -> str:
    """Ask Slurm whether it would accept the batch script (`sbatch --test-only`, nothing
    runs); Slurm's answer on success, AssertionError with its error otherwise."""
    require_slurm()
    path = Path(path)
    proc = subprocess.run(["sbatch", "--test-only", path.name], cwd=path.parent,
                          capture_output=True, text=True, timeout=60, check=False)
    said = (proc.stderr + proc.stdout).strip()
    if proc.returncode != 0:
        raise AssertionError(f"sbatch --test-only rejects {path.name}: {said}")
    return said


@dataclass
class BatchJob:
    """A finished batch job as Slurm recorded it (`scontrol show job`)."""
    id: str
    state: str
    exit_code: str
    fields: dict[str, str]
    output_path: Path
    output: str


def _job_fields(job_id: str) -> dict[str, str]:
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                          text=True, timeout=30, check=False)
    return dict(word.split("=", 1) for word in proc.stdout.split() if "=" in word)


def run_batch_job(path: Path, timeout: float = 120.0) -> BatchJob:
    """Submit the batch script with sbatch (from its folder), wait for the job to end and
    read its output file (where its --output option put it). A job still pending or
    running after `timeout` seconds is cancelled and reported, with Slurm's reason."""
    require_slurm()
    path = Path(path)
    proc = subprocess.run(["sbatch", "--parsable", path.name], cwd=path.parent,
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"sbatch rejects {path.name}: {(proc.stderr + proc.stdout).strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    deadline = time.monotonic() + timeout
    fields = _job_fields(job_id)
    while fields.get("JobState") not in _FINISHED:
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], timeout=30, check=False)
            raise AssertionError(
                f"job {job_id} ({path.name}) did not finish within {timeout:g} s: state "
                f"{fields.get('JobState', '?')}, reason {fields.get('Reason', '?')}; it was "
                "cancelled. A job that pends asks for more than the partition has "
                "(`sinfo`), one that runs too long may wait for input.")
        time.sleep(0.2)
        fields = _job_fields(job_id)
    out = Path(fields.get("StdOut", ""))
    out = out if out.is_absolute() else path.parent / out
    for _ in range(50):       # the output file may be flushed a moment after the state
        if out.exists():
            break
        time.sleep(0.1)
    output = out.read_text() if out.is_file() else ""
    return BatchJob(job_id, fields["JobState"], fields.get("ExitCode", "?"), fields, out, output)
