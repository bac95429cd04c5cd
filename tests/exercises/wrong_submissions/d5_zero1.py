"""Submissions of d5_zero1: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

RS = '    comm.reduce_scatter(grad_shard, flat_grad, op="avg", timeout=TIMEOUT)\n'
AG = "    comm.all_gather(flat_param, shard, timeout=TIMEOUT)"

SUBMISSIONS = {
    # data parallelism's all-reduce, then this rank's shard of the average: the right
    # numbers by the wrong method (twice the traffic, and not ZeRO's reduce-scatter)
    "all_reduce_then_own_shard": ([(RS, (
        '    comm.all_reduce(flat_grad, op="avg", timeout=TIMEOUT)\n'
        "    r, m = torch.distributed.get_rank(), shard.numel()\n"
        "    grad_shard.copy_(flat_grad[r * m:(r + 1) * m])\n"))], "test_zero1_messages"),
    # the same detour through torch.distributed, which hpclab.comm's trace does not see
    "torch_all_reduce": ([(RS, (
        "    torch.distributed.all_reduce(flat_grad)\n"
        "    flat_grad /= torch.distributed.get_world_size()\n"
        "    r, m = torch.distributed.get_rank(), shard.numel()\n"
        "    grad_shard.copy_(flat_grad[r * m:(r + 1) * m])\n"))], "test_zero1_messages"),
    # the process group's own all-reduce: no torch.distributed function called by name
    "process_group_allreduce": ([(RS, (
        "    torch.distributed.distributed_c10d._get_default_group().allreduce([flat_grad]).wait()\n"
        "    flat_grad /= torch.distributed.get_world_size()\n"
        "    r, m = torch.distributed.get_rank(), shard.numel()\n"
        "    grad_shard.copy_(flat_grad[r * m:(r + 1) * m])\n"))], "test_zero1_messages"),
    # the sum of the p gradients instead of their mean: a p times larger step for SGD
    "sum_not_average": ([('op="avg"', 'op="sum"')], "test_zero1_training"),
    # the shard is stepped but never sent: the other shards of flat_param stay old
    "no_all_gather": ([(AG, "    pass")], "test_zero1_training"),
    # the list forms of both collectives, and the average taken by hand
    "equivalent": ([(RS + "    shard.grad = grad_shard\n", (
        "    p = torch.distributed.get_world_size()\n"
        "    comm.reduce_scatter(grad_shard, list(flat_grad.chunk(p)), op=\"sum\",\n"
        "                        timeout=TIMEOUT)\n"
        "    shard.grad = grad_shard / p\n")),
        (AG, "    comm.all_gather(list(flat_param.chunk(p)), shard, timeout=TIMEOUT)")], None),
}
