"""Submissions of c2_choose_allreduce: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

SUBMISSIONS = {
    # every step sending the whole chunk count's worth: no 2(p-1)/p bandwidth factor
    "ring_without_bandwidth_factor": ([("2 * (p - 1) / p * n * beta", "2 * (p - 1) * n * beta")],
                                      "test_naive_and_ring"),
    # ceil instead of floor: one level too many for every full tree
    "tree_ceil_log2": ([("d = math.floor(math.log2(p))", "d = math.ceil(math.log2(p))")],
                       "test_tree"),
    "most_expensive": ([("return min(costs, key=costs.get)", "return max(costs, key=costs.get)")],
                       "test_choice"),
    # the ring as its schedule of steps, the tree's depth from bit_length, the choice sorted
    "equivalent": ([("    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta + (p - 1) / p * n * gamma",
                     ("    chunk = n / p\n"
                      "    reduce_scatter = (p - 1) * (alpha + chunk * beta + chunk * gamma)\n"
                      "    all_gather = (p - 1) * (alpha + chunk * beta)\n"
                      "    return reduce_scatter + all_gather")),
                    ("d = math.floor(math.log2(p))", "d = p.bit_length() - 1"),
                    ("return min(costs, key=costs.get)",
                     "return sorted(costs.items(), key=lambda kv: kv[1])[0][0]")], None),
}
