"""Atomic checkpoints and random-number state: what a restarted run needs to continue.

A checkpoint that is half written when the node dies is worse than none, so a write is

    1. torch.save(...) into   ckpt-000120.pt.tmp   (same folder: same file system)
    2. flush + os.fsync       (the bytes are on disk, not in the page cache)
    3. os.replace(tmp, final) (atomic on POSIX: readers see the old file or the new one)
    4. fsync the folder       (the rename itself survives a crash)

and `latest_checkpoint(folder)` only ever sees complete files. Rank 0 writes; the
contents (model, optimizer, sampler position, every rank's RNG state, step) are enough to
continue *bit-identically* to a run that was never interrupted.

    save_checkpoint(folder / "ckpt-000120.pt", {"step": 120, "model": ..., ...})
    path = latest_checkpoint(folder)             # None if there is none yet
    state = load_checkpoint(path)
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoint_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:06d}.pt"


def save_checkpoint(path: str | os.PathLike, state: dict, keep: int | None = None) -> Path:
    """Write `state` to `path` atomically; keep only the newest `keep` checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)   # the previous checkpoint stays the latest
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    if keep is not None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        for old in list_checkpoints(path.parent)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `folder`, oldest first (temporary files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; list the folder with "
                                "hpclab.parallel.list_checkpoints(folder)")
    # weights_only=False: the state holds RNG states and plain Python objects we wrote
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    """The state of every generator a training step may draw from on this process."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
