"""Submissions of d3_bubble: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

SUBMISSIONS = {
    # idle time over busy time: (p − 1)/m instead of (p − 1)/(m + p − 1)
    "idle_over_busy": ([("    return [(span - busy[r]) / span for r in range(p)]",
                         "    return [(span - busy[r]) / busy[r] for r in range(p)]")],
                       "test_bubble"),
    # the drain forgotten: a backward starts without the next stage's gradient
    "backward_does_not_wait_for_the_drain": ([(
        '            start = max(free[r], ready.get(("B", r + 1, i), 0.0))',
        "            start = free[r]")], "test_schedule"),
    # each stage's idle time counted from time 0: right on the simulation, whose events start
    # at 0, wrong on measured traces, which start at perf_counter() values
    "step_starts_at_zero": ([("    span = max(e[4] for e in events) - min(e[3] for e in events)",
                              "    span = max(e[4] for e in events)")], "test_measured"),
    # start times as a recurrence over two tables, idle time as the sum of gaps
    "equivalent": ([(("    events, free = [], [0.0] * p          # free[r]: when stage r finishes its last operation\n"
                     "    ready = {}                            # (kind, stage, micro) -> end time\n"
                     "    for i in range(m):\n"
                     "        for r in range(p):\n"
                     '            start = max(free[r], ready.get(("F", r - 1, i), 0.0))\n'
                     '            free[r] = ready[("F", r, i)] = start + t_f[r]\n'
                     '            events.append((r, "F", i, start, free[r]))\n'
                     "    for i in reversed(range(m)):\n"
                     "        for r in reversed(range(p)):\n"
                     '            start = max(free[r], ready.get(("B", r + 1, i), 0.0))\n'
                     '            free[r] = ready[("B", r, i)] = start + t_b[r]\n'
                     '            events.append((r, "B", i, start, free[r]))\n'
                     "    return events"),
                     ("    F = [[0.0] * m for _ in range(p)]     # F[r][i]: end of forward i on stage r\n"
                     "    B = [[0.0] * m for _ in range(p)]\n"
                     "    out = []\n"
                     "    for r in range(p):\n"
                     "        for i in range(m):\n"
                     "            s = max(F[r][i - 1] if i else 0.0, F[r - 1][i] if r else 0.0)\n"
                     "            F[r][i] = s + t_f[r]\n"
                     "            out.append((r, 'F', i, s, F[r][i]))\n"
                     "    for r in range(p - 1, -1, -1):\n"
                     "        for i in range(m - 1, -1, -1):\n"
                     "            s = max(B[r][i + 1] if i < m - 1 else F[r][m - 1],\n"
                     "                    B[r + 1][i] if r < p - 1 else 0.0)\n"
                     "            B[r][i] = s + t_b[r]\n"
                     "            out.append((r, 'B', i, s, B[r][i]))\n"
                     "    return out")),
                    (("    busy = [0.0] * p\n"
                     "    for stage, _, _, start, end in events:\n"
                     "        busy[stage] += end - start\n"
                     "    return [(span - busy[r]) / span for r in range(p)]"),
                     ("    t0, t1 = min(e[3] for e in events), max(e[4] for e in events)\n"
                     "    fractions = []\n"
                     "    for r in range(p):\n"
                     "        mine = sorted((e[3], e[4]) for e in events if e[0] == r)\n"
                     "        gaps = mine[0][0] - t0 + t1 - mine[-1][1]\n"
                     "        gaps += sum(b[0] - a[1] for a, b in zip(mine, mine[1:]))\n"
                     "        fractions.append(gaps / (t1 - t0))\n"
                     "    return fractions"))], None),
}
