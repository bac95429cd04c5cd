"""Checkpoint and resume: a run restarted from its last checkpoint continues bit-identically.

The reference is the same run without interruption: after resuming, every loss and every
final parameter must be *equal* (torch.equal, no tolerance) — the checkpoint holds the
model, optimizer (momentum), sampler position (mid-epoch) and every rank's RNG state
(the model uses dropout, so a wrong RNG state would show).
"""

import pytest
import torch

from hpclab.cluster.spawn import run_local
from hpclab.parallel import TrainerConfig, latest_checkpoint, load_checkpoint
from hpclab.parallel.worker import RankJob, train_rank

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]

# The first torch.optim optimizer imports torch._dynamo (seconds); do it once here, before
# run_local forks, instead of once in every forked rank.
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def model_fn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                               torch.nn.Linear(16, 4))


def data_fn():
    g = torch.Generator().manual_seed(2)
    return torch.randn(40, 6, generator=g), torch.randint(0, 4, (40,), generator=g)


def optimizer_fn(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def run(folder, steps, resume=None, world_size=2, algorithm="ring"):
    cfg = TrainerConfig(batch_size=8, algorithm=algorithm, checkpoint_dir=str(folder),
                        checkpoint_every=4, stop_check_every=3)
    spec = RankJob(model_fn, data_fn, optimizer_fn, cfg, steps, resume=resume,
                   return_params=True)
    return run_local(train_rank, world_size, spec, timeout=120)


@pytest.mark.parametrize("algorithm", ["ring", "torch"])
def test_resume_is_bit_identical(tmp_path, algorithm):
    full = run(tmp_path / "full", 13, algorithm=algorithm)
    run(tmp_path / "part", 10, algorithm=algorithm)      # "crashes" after step 10
    ckpt = latest_checkpoint(tmp_path / "part")
    assert ckpt.name == "ckpt-000008.pt"                  # steps 9, 10 are lost, 8 is safe
    state = load_checkpoint(ckpt)
    assert state["step"] == 8 and len(state["rng"]) == 2
    assert state["sampler"]["epoch"] == 1 and state["sampler"]["position"] == 12  # mid-epoch
    resumed = run(tmp_path / "part", 13, resume="latest", algorithm=algorithm)
    for rank in range(2):
        steps = [r["step"] for r in resumed[rank]["records"]]
        assert steps == list(range(9, 14)), "resume must start right after the checkpoint"
        ref_losses = [r["loss"] for r in full[rank]["records"][8:]]
        assert [r["loss"] for r in resumed[rank]["records"]] == ref_losses
        for name, value in full[rank]["params"].items():
            assert (torch.as_tensor(resumed[rank]["params"][name])
                    .equal(torch.as_tensor(value))), f"rank {rank}: {name} differs"


def test_resume_latest_without_checkpoint_starts_fresh(tmp_path):
    out = run(tmp_path / "empty", 3, resume="latest", world_size=1)
    assert [r["step"] for r in out[0]["records"]] == [1, 2, 3]
