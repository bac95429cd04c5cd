"""The `hpclab` command.

    hpclab demo [--out DIR]        headless: train on a local cluster, write plots
    hpclab lab                     JupyterLab on the course notebooks
    hpclab bench NAME [...]        benchmarks (optim, comm, dp, ...): ratios vs a reference
    hpclab doctor                  check this machine / cluster, one pass/fail line each
    hpclab grade ...               exercises with nbgrader: release, collect, autograde, feedback
    hpclab vcluster up|status|down virtual nodes (namespaces + slurmd) on shaped links
    hpclab plan [--world 4 ...]    configurations ranked by predicted step time and memory

Each sub-command lives in its own module with a `main(argv) -> int`; this file only
dispatches, so adding a command is one line in COMMANDS.
"""

from __future__ import annotations

import sys
from importlib import import_module

COMMANDS = {
    "demo": ("hpclab.demo", "headless demo: train single-process and data-parallel, write plots"),
    "lab": ("hpclab.lab", "start JupyterLab on the course notebooks"),
    "bench": ("hpclab.bench", "run a benchmark: hpclab bench {optim,comm,dp,...}"),
    "doctor": ("hpclab.cluster.doctor", "check versions, GPUs, Slurm, network, a 2-engine all-reduce"),
    "grade": ("hpclab.grading.cli", "exercises with nbgrader: generate, release, collect, autograde, feedback"),
    "vcluster": ("hpclab.cluster.vcluster", "a Slurm cluster of N nodes on this machine: up, status, down"),
    "plan": ("hpclab.plan.cli", "rank every DP × TP × PP × ZeRO configuration, predicted (and measured)"),
}


def usage() -> str:
    lines = ["usage: hpclab COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name in ("-V", "--version"):
        from hpclab import __version__
        print(__version__)
        return 0
    if name not in COMMANDS:
        print(f"hpclab: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
