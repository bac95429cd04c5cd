"""Submissions of d1_bucket: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

SUBMISSIONS = {
    # right averages, one all-reduce per gradient: the latency alpha paid per tensor
    "one_all_reduce_per_tensor": ([(
        ("    bucket = flatten_bucket(grads)\n"
         "    dist.all_reduce(bucket)\n"
         "    bucket /= ctx.world_size\n"
         "    for g, averaged in zip(grads, unflatten_bucket(bucket, grads)):\n"
         "        g.copy_(averaged)\n"),
        ("    for g in grads:\n"
         "        dist.all_reduce(g)\n"
         "        g /= ctx.world_size\n"))], "test_ddp"),
    # the sum, not the average: p times DDP's gradients
    "sum_not_average": ([("    bucket /= ctx.world_size\n", "")], "test_ddp"),
    # all_reduce imported by name, a flatten by torch.cat of views, split back with split
    "equivalent": ([("def flatten_bucket(tensors):",
                     "from torch.distributed import all_reduce\n\n\ndef flatten_bucket(tensors):"),
                    ("    dist.all_reduce(bucket)\n", "    all_reduce(bucket, op=dist.ReduceOp.SUM)\n"),
                    ("    bucket /= ctx.world_size\n", "    bucket.div_(dist.get_world_size())\n"),
                    (("    out, offset = [], 0\n"
                      "    for t in like:\n"
                      "        out.append(flat[offset:offset + t.numel()].view_as(t))\n"
                      "        offset += t.numel()\n"
                      "    return out\n"),
                     ("    pieces = flat.split([t.numel() for t in like])\n"
                      "    return [piece.view(t.shape) for piece, t in zip(pieces, like)]\n"))],
                   None),
}
