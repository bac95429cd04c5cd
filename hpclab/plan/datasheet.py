"""A GPU cluster on paper: compute from FLOPs and a data-sheet peak, links from published
bandwidths — the planner applied to published setups, predicted only.

Compute of one block's shard on b sequences of s tokens, forward + backward (3× the
forward: ∂J/∂X and ∂J/∂W, one matmul each; hpclab.flops), on one of t tensor ranks:

    FLOPs_block = 3 · (2·b·s·Ψ_matrices/t + 4·b·s²·h/t)        (QKᵀ and AV: 2·2·s·h per token)
    FLOPs_head  = 3 · 2·b·s·h·v/t                               (vocabulary-parallel head)
    t = FLOPs / (peak · MFU)

MFU 0.5 by default: Megatron-LM trained a 1T-parameter GPT on 3072 A100s at 502
PFLOP/s, 52% of their peak (Narayanan et al. 2021, "Efficient Large-Scale Language Model
Training on GPU Clusters Using Megatron-LM", abstract). The
embedding lookup and the optimizer step (memory-bound, O(Ψ) bytes at HBM speed) are
counted as HBM traffic: t = bytes / HBM bandwidth.

Links (a cost_model.TwoLevel, 8 GPUs per node, one flow per GPU between nodes):

    A100 (DGX A100)   NVLink 3: 600 GB/s total, 300 GB/s per direction;
                      HDR InfiniBand 200 Gb/s = 25 GB/s per GPU (8 HCAs per node);
                      HBM2e 2.0 TB/s          (NVIDIA DGX A100 and A100 80GB data sheets)
    H100 (DGX H100)   NVLink 4: 900 GB/s total, 450 GB/s per direction;
                      NDR InfiniBand 400 Gb/s = 50 GB/s per GPU; HBM3 3.35 TB/s
                      (NVIDIA DGX H100 and H100 SXM data sheets)

α, which no data sheet states, is taken as 5 µs inside a node and 10 µs between nodes,
the order of NCCL's small-message all-reduce latencies (nccl-tests); γ = 3 bytes moved
per byte reduced at HBM speed. Ranks are placed as Megatron-LM and hpclab's Mesh place
them: the t tensor ranks of a group adjacent (inside a node when t ≤ 8), then the d
replicas, the pipeline stages outermost — so a group talks over NVLink when all its
members fit in one node:

    TP group   span t            DP group   span d·t            PP neighbours  span pp·d·t
"""

from __future__ import annotations

from dataclasses import dataclass

from hpclab.comm.cost_model import Params
from hpclab.memory import GB


@dataclass(frozen=True)
class GPU:
    name: str
    peak_flops: float            # dense bf16 FLOP/s
    memory_bytes: float          # HBM capacity
    hbm_bandwidth: float         # bytes/s
    nvlink: float                # bytes/s per direction, per GPU
    network: float               # bytes/s per GPU between nodes
    ranks_per_node: int = 8
    alpha_intra: float = 5e-6
    alpha_inter: float = 10e-6


A100 = GPU("A100 80GB", 312e12, 80 * GB, 2.0e12, 300e9, 25e9)
H100 = GPU("H100 80GB", 989e12, 80 * GB, 3.35e12, 450e9, 50e9)
GPUS = {"a100": A100, "h100": H100}


@dataclass(frozen=True)
class DatasheetCompute:
    """The Compute the predictor reads (predict.py), from FLOPs at peak · MFU."""
    gpu: GPU
    shape: object                # TransformerShape
    mfu: float = 0.5
    bytes_per_parameter_step: float = 16.0   # optimizer step: read/write θ, g, m, v

    def __post_init__(self):
        if not 0 < self.mfu <= 1:
            raise ValueError(f"mfu must be in (0, 1], got {self.mfu}")

    @property
    def where(self) -> str:
        return f"{self.gpu.name} at {self.mfu:.0%} of {self.gpu.peak_flops / 1e12:g} TFLOP/s"

    def _seconds(self, flops: float) -> float:
        return flops / (self.gpu.peak_flops * self.mfu)

    def block(self, b: int, s: int, t: int) -> float:
        sh = self.shape
        return self._seconds(3 * (2 * b * s * sh.layer_matrices() / t
                                  + 4 * b * s * s * sh.hidden / t))

    def embedding(self, b: int, s: int) -> float:
        return 2 * b * s * self.shape.hidden * 2 / self.gpu.hbm_bandwidth

    def head(self, b: int, s: int, t: int) -> float:
        return self._seconds(3 * 2 * b * s * self.shape.hidden * self.shape.vocab / t)

    def optimizer(self, n_parameters: float) -> float:
        return n_parameters * self.bytes_per_parameter_step / self.gpu.hbm_bandwidth


def link_costs(gpu: GPU, span: int) -> Params:
    """α, β, γ of a group whose ranks lie within `span` consecutive ranks: NVLink when
    they fit in one node, InfiniBand otherwise."""
    gamma = 3 / gpu.hbm_bandwidth
    if span <= gpu.ranks_per_node:
        return Params(gpu.alpha_intra, 1 / gpu.nvlink, gamma)
    return Params(gpu.alpha_inter, 1 / gpu.network, gamma)
