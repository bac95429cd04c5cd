"""Data-parallel training on the engines, driven from a notebook.

    import hpclab
    from hpclab.parallel import Trainer, TrainerConfig

    def model_fn():      return hpclab.problems.make_mlp(64, (128,), 10, seed=0)
    def data_fn():       s = hpclab.problems.load_digits_split(); return s.X_train, s.y_train
    def optimizer_fn(ps): return torch.optim.SGD(ps, lr=0.1)

    with hpclab.connect(n=2) as cluster:
        trainer = Trainer(cluster, model_fn, data_fn, optimizer_fn,
                          TrainerConfig(batch_size=64, checkpoint_dir="runs/digits",
                                        checkpoint_every=50))
        job = trainer.fit(steps=300)                 # returns at once
        job.subscribe(print)                         # live StepRecords, every rank
        history = job.wait()
        job = trainer.fit(steps=600, resume="latest")   # continue from the last checkpoint

Each rank calls `data_fn()` (the whole data set as tensors X, Y: it must give the same
tensors everywhere, e.g. a fixed seed), `model_fn()` and `optimizer_fn(parameters)`, wraps
the model in our DistributedDataParallel and runs worker.train_rank. The three functions
travel to the engines pickled, so define them in the notebook or import them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hpclab.parallel.job import Job
from hpclab.parallel.live import LiveReceiver
from hpclab.parallel.worker import RankJob, train_on_engine

LOSSES = ("cross_entropy", "mse")


@dataclass
class TrainerConfig:
    batch_size: int = 64             # global batch B, split as B/p per rank
    accumulation: int = 1            # micro-batches per step (no_sync on all but the last)
    algorithm: str = "auto"          # hpclab.comm algorithm ("auto": the model picks), or "torch"
    bucket_cap_mb: float = 25.0      # torch DDP's default; see buckets.py
    loss: str = "cross_entropy"      # or "mse"
    seed: int = 0                    # data order and each rank's RNG stream
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0        # steps between checkpoints; 0 = only on stop
    keep_checkpoints: int = 3
    publish_interval: float = 0.1    # seconds between live batches (latency <= this + ~1 ms)
    stop_check_every: int = 10       # steps between the ranks' stop / NaN agreement
    mfu: bool = True                 # model FLOPs utilisation in the records (hpclab.flops)

    def validate(self, world_size: int) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.accumulation < 1:
            raise ValueError(f"accumulation must be >= 1, got {self.accumulation}")
        if self.batch_size % (world_size * self.accumulation):
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by world size "
                             f"x accumulation ({world_size} x {self.accumulation})")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.checkpoint_every and not self.checkpoint_dir:
            raise ValueError("checkpoint_every > 0 needs checkpoint_dir")
        if self.stop_check_every < 1:
            raise ValueError(f"stop_check_every must be >= 1, got {self.stop_check_every}")
        if self.publish_interval < 0:
            raise ValueError(f"publish_interval must be >= 0, got {self.publish_interval}")


class Trainer:
    def __init__(self, cluster, model_fn: Callable, data_fn: Callable, optimizer_fn: Callable,
                 config: TrainerConfig | None = None):
        for name, fn in (("model_fn", model_fn), ("data_fn", data_fn),
                         ("optimizer_fn", optimizer_fn)):
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        self.cluster = cluster
        self.model_fn, self.data_fn, self.optimizer_fn = model_fn, data_fn, optimizer_fn
        self.config = config or TrainerConfig()
        self.config.validate(cluster.world_size)

    def fit(self, steps: int, resume: str | None = None, live: bool = True,
            return_params: bool = False) -> Job:
        """Start training to global step `steps` on every engine; returns a Job at once.

        resume: a checkpoint path, "latest" (newest in config.checkpoint_dir, or a fresh
        start if there is none) or None. live=False turns the metric stream off (to
        measure its overhead).
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        receiver = None
        if live:
            receiver = LiveReceiver()
        spec = RankJob(None, None, None, self.config, steps,
                       resume=resume, return_params=return_params,
                       push_address=receiver.push_address if receiver else None,
                       control_address=receiver.control_address if receiver else None)
        # the handle's own timeout only applies to handle.get(); Job.wait polls instead
        handle = self.cluster.run_async(train_on_engine, spec, self.model_fn, self.data_fn,
                                        self.optimizer_fn, timeout=self.cluster.timeout)
        return Job(handle, receiver, steps)
