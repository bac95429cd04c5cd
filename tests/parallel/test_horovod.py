"""The Horovod-style DistributedOptimizer against single-process training.

p = 2 ranks with global batch B (and with accumulation over 2 backward passes) must give
the parameters of one process with batch B after K momentum-SGD steps, to 1e-5.
"""

import pytest
import torch

from hpclab.cluster.spawn import run_local
from hpclab.parallel.horovod import DistributedOptimizer, broadcast_parameters

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]

# import torch's lazy optimizer machinery once, before run_local forks (seconds otherwise)
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

B, K = 8, 4


def model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(B * K, 4, generator=g), torch.randint(0, 2, (B * K,), generator=g)


def single():
    X, Y = data()
    net = model(0)
    opt = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9)
    for s in range(K):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X[s * B:(s + 1) * B]), Y[s * B:(s + 1) * B]).backward()
        opt.step()
    return [p.detach() for p in net.parameters()]


def on_rank(ctx, algorithm, passes):
    X, Y = data()
    net = model(ctx.rank)                         # different start, fixed by the broadcast
    broadcast_parameters(net.state_dict(), root_rank=0)
    opt = DistributedOptimizer(torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9),
                               named_parameters=net.named_parameters(), algorithm=algorithm,
                               backward_passes_per_step=passes)
    for s in range(K):
        idx = list(range(s * B, (s + 1) * B))[ctx.rank::ctx.world_size]
        m = len(idx) // passes
        opt.zero_grad()
        for k in range(passes):
            sub = idx[k * m:(k + 1) * m]
            (torch.nn.functional.cross_entropy(net(X[sub]), Y[sub]) / passes).backward()
        opt.step()
    opt.close()
    return max((a - b).abs().max().item() for a, b in zip(net.parameters(), single()))


@pytest.mark.parametrize("algorithm", ["torch", "ring"])
@pytest.mark.parametrize("passes", [1, 2])
def test_distributed_optimizer_equals_single_process(algorithm, passes):
    errors = run_local(on_rank, 2, algorithm, passes)
    assert max(errors) < 1e-5, errors
