"""Atomic checkpoints: complete files only, the newest wins, RNG states round-trip."""

import os
import random

import numpy as np
import pytest
import torch

from hpclab.parallel import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

pytestmark = [pytest.mark.unit_d]


def test_round_trip_and_latest(tmp_path):
    model = torch.nn.Linear(3, 2)
    for step in (10, 20, 30):
        save_checkpoint(checkpoint_path(tmp_path, step),
                        {"step": step, "model": model.state_dict()}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000020.pt", "ckpt-000030.pt"]
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 30
    for k, v in model.state_dict().items():
        assert torch.equal(state["model"][k], v)


def test_no_temporary_file_is_left_and_partial_files_are_ignored(tmp_path):
    save_checkpoint(checkpoint_path(tmp_path, 1), {"step": 1})
    # a crash during a later write leaves only the .tmp file: readers must not see it
    (tmp_path / "ckpt-000002.pt.tmp").write_bytes(b"half a checkpoint")
    assert latest_checkpoint(tmp_path).name == "ckpt-000001.pt"
    assert sorted(os.listdir(tmp_path)) == ["ckpt-000001.pt", "ckpt-000002.pt.tmp"]


def test_a_write_that_fails_keeps_the_previous_checkpoint(tmp_path):
    path = checkpoint_path(tmp_path, 5)
    save_checkpoint(path, {"step": 5})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full (simulated by an object that cannot be saved)")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"step": 6, "bad": Unpicklable()})
    assert load_checkpoint(path)["step"] == 5


def test_rng_state_round_trip():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_missing_checkpoint_and_empty_folder(tmp_path):
    assert latest_checkpoint(tmp_path / "nothing") is None
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "ckpt-000001.pt")
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(checkpoint_path(tmp_path, 1), {}, keep=0)
