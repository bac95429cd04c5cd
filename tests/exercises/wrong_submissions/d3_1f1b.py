"""Submissions of d3_1f1b: name -> (replacements in the solution cell, the test that must
fail, or None for a correct submission in another form).

- gpipe_order: all forwards, then the backwards in reverse. The gradients are right;
  the messages are GPipe's, not 1F1B's.
- warmup_r_deadlocks: warm-up r instead of p − r − 1. Rank r + 1 needs more activations
  before its first backward than rank r sends before its own: the ranks wait for each
  other, and the receive that passes TIMEOUT fails naming the rank (the grader does not
  hang).
- counting (correct): a forward while fewer than p − r micro-batches are in flight and
  forwards remain, otherwise a backward.
"""

SOLUTION = ("    warmup = min(p - r - 1, m)\n"
            "    order = [(\"F\", i) for i in range(warmup)]\n"
            "    for k in range(m - warmup):\n"
            "        order += [(\"F\", warmup + k), (\"B\", k)]\n"
            "    order += [(\"B\", i) for i in range(m - warmup, m)]\n"
            "    return order\n")

SUBMISSIONS = {
    "gpipe_order": ([(SOLUTION, ("    return [(\"F\", i) for i in range(m)] + "
                                 "[(\"B\", i) for i in reversed(range(m))]\n"))],
                    "test_order"),
    "warmup_r_deadlocks": ([("warmup = min(p - r - 1, m)", "warmup = min(r, m)")],
                           "test_gradients"),
    "counting": ([(SOLUTION, ("    order, forwards, backwards = [], 0, 0\n"
                              "    while backwards < m:\n"
                              "        if forwards < m and forwards - backwards < p - r:\n"
                              "            order.append((\"F\", forwards))\n"
                              "            forwards += 1\n"
                              "        else:\n"
                              "            order.append((\"B\", backwards))\n"
                              "            backwards += 1\n"
                              "    return order\n"))],
                 None),
}
