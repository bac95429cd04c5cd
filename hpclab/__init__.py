"""hpclab: train a model on one process, then on a cluster of GPU nodes.

    import hpclab
    with hpclab.connect(n=2) as cluster:          # ipyparallel engines + torch.distributed
        print(cluster.info())

Sub-packages (nothing imports "upwards"):

    hpclab.optim      optimizers written from scratch (drop-in for torch.optim)
    hpclab.problems   teaching problems and data (2-D functions, regression, digits, text)
    hpclab.train      the single-process training loop
    hpclab.comm       collectives from send/recv, traces, the alpha-beta-gamma cost model
    hpclab.parallel   data/model parallel training, compression, checkpoints
    hpclab.cluster    ipyparallel engines, process groups, Slurm, health checks
    hpclab.widgets    live dashboard, playground, visualisers (the only ipywidgets importer)
    hpclab.bench      benchmarks printing ratios against a reference measured in the same run
"""

from importlib import import_module

__version__ = "0.1.0"

# Attributes resolved on first use, so `import hpclab` stays fast and a notebook that only
# needs the optimizers never starts importing ipyparallel.
_LAZY = {
    "connect": ("hpclab.cluster", "connect"),
    "Cluster": ("hpclab.cluster", "Cluster"),
    "fit": ("hpclab.train", "fit"),
}
_SUBMODULES = {"optim", "problems", "train", "comm", "parallel", "cluster", "widgets", "bench",
               "metrics"}


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    if name in _SUBMODULES:
        return import_module(f"hpclab.{name}")
    raise AttributeError(f"module 'hpclab' has no attribute {name!r}")


__all__ = ["Cluster", "bench", "cluster", "comm", "connect", "fit", "metrics", "optim",
           "parallel", "problems", "train", "widgets"]
