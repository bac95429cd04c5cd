"""Submissions of b2_momentum: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

SUBMISSIONS = {
    "averaged_buffer": ([("momentum * buf + grad", "momentum * buf + (1 - momentum) * grad")],
                        "test_momentum"),
    "nesterov_ignored": ([("    direction = grad + momentum * buf if nesterov else buf",
                           "    direction = buf")], "test_momentum"),
    "equivalent": ([(("    buf = grad.clone() if buf is None else momentum * buf + grad\n"
                     "    direction = grad + momentum * buf if nesterov else buf\n"
                     "    return param - lr * direction, buf"),
                     ("    if buf is None:\n"
                     "        buf = torch.clone(grad)\n"
                     "    else:\n"
                     "        buf = torch.add(grad, buf, alpha=momentum)\n"
                     "    step = torch.add(grad, buf, alpha=momentum) if nesterov else buf\n"
                     "    return torch.sub(param, step, alpha=lr), buf"))], None),
}
