"""Submissions of d2_loss_scaling: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

SUBMISSIONS = {
    "good_steps_kept_on_overflow": ([(("            self.scale *= self.backoff_factor\n"
                                      "            self.good_steps = 0\n"),
                                      "            self.scale *= self.backoff_factor\n")],
                                    "test_rule"),
    "nan_not_detected": ([("not bool(torch.isfinite(g).all())", "bool(torch.isinf(g).any())")],
                         "test_rule"),
    "grows_one_step_late": ([("if self.good_steps == self.growth_interval:",
                              "if self.good_steps > self.growth_interval:")], "test_rule"),
    "equivalent": ([(("    found_inf = False\n"
                     "    for g in grads:\n"
                     "        g /= scale\n"
                     "        found_inf = found_inf or not bool(torch.isfinite(g).all())\n"
                     "    return found_inf"),
                     ("    for g in grads:\n"
                     "        g.div_(scale)\n"
                     "    return any(not torch.isfinite(g).all().item() for g in grads)"))],
                   None),
}
