"""Sharded checkpoints: each rank saves only its shard, and a run resumes at any size.

Under ZeRO no rank holds the whole model state, so no rank can write a single file
without first gathering Ψ + KΨ elements. Each rank writes its own shard instead:

    folder/ckpt-000120/rank-00000-of-00002.pt     rank 0's parameter and state shards
    folder/ckpt-000120/rank-00001-of-00002.pt

each atomically (hpclab.parallel.checkpoint.save_checkpoint: temporary file, fsync,
rename), then the ranks meet in a barrier; a step is complete when all N_d files exist,
so `latest_sharded(folder)` never returns a half-written step.

    save_sharded(folder, opt, step=120, extra={"sampler": ...})   # collective
    info = load_sharded(latest_sharded(folder), opt)              # {"step", "extra"}

Resuming at another world size N_d' (or another stage): the N_d files are consolidated
into every parameter and its optimizer state in full (`consolidate`: concatenate the
shards of each flat buffer, cut out the tensors, drop the padding), then re-sharded by
the new layout. Concatenating and slicing copies bits, so the resumed parameters and
state equal the saved ones exactly. State tensors shaped like the shard (m, v, momentum)
are elementwise and re-sharded; others (the step counter) are the same on every shard.
Each rank reads all N_d files: Ψ elements of temporary memory per rank at load time.
`extra` comes back only on the rank that saved it, and only at the same world size.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from hpclab import comm
from hpclab.parallel.checkpoint import load_checkpoint, save_checkpoint
from hpclab.parallel.zero.base import ShardedOptimizer
from hpclab.parallel.zero.shard import FlatLayout, is_allocated

_STEP = re.compile(r"^ckpt-(\d+)$")
_RANK = re.compile(r"^rank-(\d+)-of-(\d+)\.pt$")


def sharded_path(folder: str | os.PathLike, step: int, rank: int, world_size: int) -> Path:
    return Path(folder) / f"ckpt-{step:06d}" / f"rank-{rank:05d}-of-{world_size:05d}.pt"


def save_sharded(folder: str | os.PathLike, opt: ShardedOptimizer, step: int,
                 extra: dict | None = None) -> Path:
    """Every rank writes its shard of step `step`; returns the step's folder. Collective."""
    state = {
        "step": step, "rank": opt.rank, "world_size": opt.world_size, "stage": opt.stage,
        "shapes": [tuple(p.shape) for p in opt.params],
        "groups": [g.indices for g in opt.groups],
        "shards": [g.shard.detach().clone() for g in opt.groups],
        "optimizer": opt.optimizer.state_dict(),
        "extra": extra,
    }
    path = save_checkpoint(sharded_path(folder, step, opt.rank, opt.world_size), state)
    _barrier(opt)                                 # every rank's file is on disk
    if opt.rank == 0:
        _fsync_dir(Path(folder))                  # the step folder's entry survives a crash
    return path.parent


def latest_sharded(folder: str | os.PathLike) -> Path | None:
    """The newest step folder in which all N_d rank files exist (None if there is none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    steps = sorted((int(m.group(1)), d) for d in folder.iterdir()
                   if d.is_dir() and (m := _STEP.match(d.name)))
    for _, d in reversed(steps):
        if _complete(d):
            return d
    return None


def consolidate(states: list[dict]) -> dict:
    """The rank files of one step → {"params": [tensor per parameter], "state": [dict per
    parameter], "sharded_keys": the state keys that are elementwise, "param_groups": the
    optimizer's hyperparameters, "step": ...}."""
    states = sorted(states, key=lambda s: s["rank"])
    world_size = states[0]["world_size"]
    if [s["rank"] for s in states] != list(range(world_size)):
        raise ValueError(f"a checkpoint of world size {world_size} needs the files of ranks "
                         f"0..{world_size - 1}, got ranks {[s['rank'] for s in states]}")
    shapes = [torch.Size(s) for s in states[0]["shapes"]]
    params: list[torch.Tensor | None] = [None] * len(shapes)
    per_param: list[dict] = [{} for _ in shapes]
    sharded_keys: set[str] = set()
    for k, indices in enumerate(states[0]["groups"]):
        layout = FlatLayout.of([torch.empty(shapes[i], device="meta") for i in indices],
                               world_size)
        flat = torch.cat([s["shards"][k] for s in states])
        for i, view in zip(indices, layout.views(flat)):
            params[i] = view.clone()
        group_state = [s["optimizer"]["state"].get(k, {}) for s in states]
        for key, value in group_state[0].items():
            if isinstance(value, torch.Tensor) and value.shape == (layout.shard_numel,):
                full = torch.cat([gs[key] for gs in group_state])   # elementwise: m, v, ...
                sharded_keys.add(key)
                for i, view in zip(indices, layout.views(full)):
                    per_param[i][key] = view.clone()
            else:                                                     # e.g. the step t
                for i in indices:
                    per_param[i][key] = value.clone() if isinstance(value, torch.Tensor) \
                        else value
    hyper = {k: v for k, v in states[0]["optimizer"]["param_groups"][0].items() if k != "params"}
    return {"params": params, "state": per_param, "sharded_keys": sharded_keys,
            "param_groups": hyper, "step": states[0]["step"]}


@torch.no_grad()
def load_sharded(path: str | os.PathLike, opt: ShardedOptimizer) -> dict:
    """Load the step folder `path` (written at any world size, by any stage) into `opt`:
    this rank's shards of the parameters and of the optimizer state. Returns {"step",
    "extra"}. Every rank reads every file."""
    path = Path(path)
    files = _rank_files(path)
    if not files:
        raise FileNotFoundError(f"no rank files in {path}; find a complete step with "
                                "hpclab.parallel.zero.latest_sharded(folder)")
    states = [load_checkpoint(f) for f in files]
    full = consolidate(states)
    shapes = [tuple(p.shape) for p in opt.params]
    if [tuple(s) for s in states[0]["shapes"]] != shapes:
        raise ValueError(f"the checkpoint in {path} holds parameters of shapes "
                         f"{states[0]['shapes']}, this model's are {shapes}: build the same "
                         "model before loading")
    new_state: dict[int, dict] = {}
    for k, g in enumerate(opt.groups):
        flat = g.layout.flatten([full["params"][i] for i in g.indices])
        g.shard.copy_(flat[g.layout.shard_slice(opt.rank)])
        if is_allocated(g.flat):                  # stages 1-2 hold the full parameters
            g.flat.copy_(flat)
        keys = full["state"][g.indices[0]].keys()
        entry = {}
        for key in keys:
            first = full["state"][g.indices[0]][key]
            if key in full["sharded_keys"]:
                parts = [full["state"][i][key] for i in g.indices]
                entry[key] = g.layout.flatten(parts)[g.layout.shard_slice(opt.rank)].clone()
            else:
                entry[key] = first
        if entry:
            new_state[k] = entry
    opt.optimizer.load_state_dict({"state": new_state, "param_groups": [
        {**full["param_groups"], "params": list(range(len(opt.groups)))}]})
    mine = [s for s in states if s["rank"] == opt.rank and s["world_size"] == opt.world_size]
    return {"step": full["step"], "extra": mine[0]["extra"] if mine else None}


def _rank_files(path: Path) -> list[Path]:
    found = [(int(m.group(1)), int(m.group(2)), f) for f in path.glob("rank-*-of-*.pt")
             if (m := _RANK.match(f.name))] if path.is_dir() else []
    sizes = {n for _, n, _ in found}
    if len(sizes) > 1:
        raise ValueError(f"{path} mixes rank files of world sizes {sorted(sizes)}")
    return [f for _, _, f in sorted(found)]


def _complete(step_dir: Path) -> bool:
    files = _rank_files(step_dir)
    if not files:
        return False
    n = int(_RANK.match(files[0].name).group(2))
    return len(files) == n


def _barrier(opt: ShardedOptimizer) -> None:
    """A barrier made of one of our collectives, so it times out and names the rank."""
    comm.all_reduce(torch.zeros(1), group=opt.group, timeout=opt.timeout)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

