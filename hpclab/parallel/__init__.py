"""hpclab.parallel: training one model on many processes.

Data parallel (lecture D1-D4):

    NaiveDataParallel         naive_dp.py  the first step: one hook per parameter, all-reduce, / p
    DistributedDataParallel   ddp.py       our DDP: broadcast, bucketed all-reduce in backward
                                           hooks, no_sync, register_comm_hook
    DistributedSampler        sampler.py   disjoint per-rank shards, resumable mid-epoch
    Trainer, TrainerConfig    trainer.py   data-parallel training on engines from a notebook
    Job                       job.py       wait / stop / history / subscribe (live metrics)
    DistributedOptimizer      horovod.py   Horovod-style: wrap the optimizer, average in step()
    save_checkpoint, ...      checkpoint.py  atomic checkpoints, RNG states

Other modules of this package (compression, model parallel, mixed precision) are imported
by their own module names, e.g. `hpclab.parallel.pipeline`.
"""

from hpclab.parallel.checkpoint import (
                                        checkpoint_path,
                                        latest_checkpoint,
                                        list_checkpoints,
                                        load_checkpoint,
                                        rng_state,
                                        save_checkpoint,
                                        set_rng_state,
)
from hpclab.parallel.ddp import DistributedDataParallel
from hpclab.parallel.horovod import DistributedOptimizer, broadcast_parameters
from hpclab.parallel.job import Job
from hpclab.parallel.naive_dp import NaiveDataParallel
from hpclab.parallel.sampler import DistributedSampler
from hpclab.parallel.trainer import Trainer, TrainerConfig

__all__ = [
                                        "DistributedDataParallel",
                                        "DistributedOptimizer",
                                        "DistributedSampler",
                                        "Job",
                                        "NaiveDataParallel",
                                        "Trainer",
                                        "TrainerConfig",
                                        "broadcast_parameters",
                                        "checkpoint_path",
                                        "latest_checkpoint",
                                        "list_checkpoints",
                                        "load_checkpoint",
                                        "rng_state",
                                        "save_checkpoint",
                                        "set_rng_state",
]
