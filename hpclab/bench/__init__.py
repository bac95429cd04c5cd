"""Benchmarks: `hpclab bench NAME`.

Every benchmark measures its reference (torch.optim, gloo, torch DDP ...) in the same run
and prints ratios, never absolute targets: a ratio survives a busy or different machine.
Each benchmark is a module here (`optim.py`, `comm.py`, `dp.py` ...) with `main(argv)`.
"""

from __future__ import annotations

import pkgutil
import sys
from importlib import import_module


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: hpclab bench NAME [ARGS...]\n\nbenchmarks: " + ", ".join(names))
        return 0
    if argv[0] not in names:
        print(f"hpclab bench: unknown benchmark {argv[0]!r}; choose one of {names}",
              file=sys.stderr)
        return 2
    return int(import_module(f"hpclab.bench.{argv[0]}").main(argv[1:]) or 0)
